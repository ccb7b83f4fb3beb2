import pytest

from identity import create_app
from identity.api.guards import SERVICES
from identity.db import PinnedDatabase
from identity.security.site_keys import site_key_label
from identity.services.sites import revoke_site_keys
from identity.store.transactions import UnitOfWork
from tests.api.problems import assert_problem
from tests.sites import site_key_for

PROFILE = {"email": "anna@example.com", "source": "webinar"}
ENDPOINTS = [
    ("post", "/v1/profiles", {"json": PROFILE}),
    ("post", "/v1/profiles/import", {"data": "", "content_type": "application/x-ndjson"}),
    ("get", "/v1/users?email=anna@example.com", {}),
    ("get", "/v1/users/7d5c3f0e-2b1a-4c8e-9f6d-0a1b2c3d4e5f", {}),
]


def _revoke(conn, name, prefix=None):
    uow = UnitOfWork.of(conn)
    return uow.run(lambda: revoke_site_keys(uow, name, prefix))


def call(client, method, path, kwargs, key=None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return getattr(client, method)(path, headers=headers, **kwargs)


@pytest.mark.parametrize(("method", "path", "kwargs"), ENDPOINTS)
def test_every_endpoint_wants_a_site_key(client, method, path, kwargs):
    response = call(client, method, path, kwargs)
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "kwargs"), ENDPOINTS)
def test_a_made_up_key_is_refused(client, method, path, kwargs, site_key):
    forged = site_key[:-4] + ("AAAA" if not site_key.endswith("AAAA") else "BBBB")
    assert_problem(call(client, method, path, kwargs, forged), 401)


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "idsk_x"])
def test_other_authorization_schemes_are_refused(client, header):
    response = client.get("/v1/users?email=a@example.com", headers={"Authorization": header})
    assert_problem(response, 401)


def test_a_revoked_key_is_refused_and_other_keys_of_the_site_still_work(client, conn):
    first = site_key_for(conn, "smtpeter.com")
    second = site_key_for(conn, "smtpeter.com")
    assert _revoke(conn, "smtpeter.com", site_key_label(first)) == 1
    assert_problem(call(client, *ENDPOINTS[2], first), 401)
    assert call(client, *ENDPOINTS[2], second).status_code == 404


def test_revoking_a_site_revokes_all_its_keys(client, conn):
    keys = [site_key_for(conn, "mailerq.com") for _ in range(2)]
    assert _revoke(conn, "mailerq.com") == 2
    for key in keys:
        assert_problem(call(client, *ENDPOINTS[2], key), 401)


def test_a_key_without_the_scope_is_forbidden(client, conn):
    reader = site_key_for(conn, "mailerq.com", ["users:read"])
    writer = site_key_for(conn, "mailerq.com", ["profiles:write"])
    body = assert_problem(call(client, *ENDPOINTS[0], reader), 403)
    assert "profiles:write" in body["detail"]
    assert_problem(call(client, *ENDPOINTS[2], writer), 403)
    assert call(client, *ENDPOINTS[0], writer).status_code == 201
    assert call(client, *ENDPOINTS[2], reader).status_code == 200


def test_a_key_is_stored_only_as_a_hash_and_records_its_last_use(client, conn, site_key):
    stored = conn.execute("select * from site_keys").fetchone()
    assert site_key.encode() not in bytes(stored["key_hash"])
    assert site_key not in str(stored)
    assert stored["last_used_at"] is None
    call(client, *ENDPOINTS[2], site_key)
    used = conn.execute("select last_used_at from site_keys").fetchone()["last_used_at"]
    assert used is not None


def test_an_unknown_scope_is_refused_when_the_key_is_made(conn):
    from identity.errors import InvalidInput

    with pytest.raises(InvalidInput, match="admin:everything"):
        site_key_for(conn, "copernica.com", ["admin:everything"])


def test_a_revoked_key_stops_working_within_the_cache_time(conn, database_url):
    app = create_app(
        {"DATABASE_URL": database_url, "SITE_KEY_CACHE_SECONDS": 5},
        database=PinnedDatabase(conn),
    )
    now = [1000.0]
    app.extensions[SERVICES].clock = lambda: now[0]
    client = app.test_client()
    key = site_key_for(conn, "smtpeter.com")
    assert call(client, *ENDPOINTS[2], key).status_code == 404
    _revoke(conn, "smtpeter.com")
    now[0] += 4.9
    assert call(client, *ENDPOINTS[2], key).status_code == 404  # still kept
    now[0] += 0.2
    assert_problem(call(client, *ENDPOINTS[2], key), 401)


def test_with_no_cache_time_a_revoked_key_stops_at_once(conn, database_url):
    app = create_app(
        {"DATABASE_URL": database_url, "SITE_KEY_CACHE_SECONDS": 0}, database=PinnedDatabase(conn)
    )
    client = app.test_client()
    key = site_key_for(conn, "smtpeter.com")
    assert call(client, *ENDPOINTS[2], key).status_code == 404
    _revoke(conn, "smtpeter.com")
    assert_problem(call(client, *ENDPOINTS[2], key), 401)


def test_a_kept_key_still_has_only_its_own_scopes(conn, client):
    reader = site_key_for(conn, "mailerq.com", ["users:read"])
    assert call(client, *ENDPOINTS[2], reader).status_code == 404
    assert_problem(call(client, *ENDPOINTS[0], reader), 403)


PUBLIC = {
    "/health/live",
    "/health/ready",
    "/.well-known/jwks.json",
    "/openapi.json",
    "/docs",
    "/docs/assets/<name>",
}


def test_every_route_but_the_public_ones_wants_credentials(app, client):
    """Walks the app's routes, so a new endpoint without a guard cannot slip in."""
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.rule in PUBLIC or rule.endpoint == "static":
            continue
        path = rule.rule.replace("<uuid:user_id>", "7d5c3f0e-2b1a-4c8e-9f6d-0a1b2c3d4e5f").replace(
            "<uuid:session_id>", "3f2a9c1e-8b7d-4e6f-a5c4-b3a2f1e0d9c8"
        )
        path = path.replace("<key>", "copernica")
        path = path.replace("<any(google, linkedin, facebook):provider>", "google")
        for name in ("company_id", "invitation_id"):
            path = path.replace(f"<uuid:{name}>", "5c4b3a29-1807-4f6e-8d5c-4b3a29180706")
        # An unsubscribe link's token is its credential: one not signed here is a 404.
        unsubscribe = "<string(length=44):token>" in path
        path = path.replace("<string(length=44):token>", "A" * 44)
        assert "<" not in path, f"give {rule.rule} a sample value here"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(path, method=method, data=b"{}", content_type="text/plain")
            assert_problem(response, 404 if unsubscribe else 401)
            checked += 1
    assert checked >= 4
