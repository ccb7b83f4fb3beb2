"""What a key may do on which list: `newsletters` on every list, `newsletters:<list>` on
that one, nothing without either. A table of keys x lists x the endpoints that act on a
list (subscribe on behalf, confirm, the export, bulk links, an import line's consent):
allowed where the key may manage the list, 403 elsewhere with nothing written."""

import json

import pytest

from tests.outbox import mailed
from tests.sites import site_key_for

CONSENT = {"text": "Yes (form v3)", "client_ip": "203.0.113.7", "user_agent": "Mozilla/5.0"}
KEYS = {
    "every list": ["newsletters"],
    "copernica only": ["newsletters:copernica"],
    "copernica and smtpeter": ["newsletters:copernica", "newsletters:smtpeter"],
    "no list": ["profiles:write", "users:read"],
}
LISTS = ["copernica", "copernica-updates", "smtpeter"]


def _may(key: str, newsletter: str) -> bool:
    scopes = KEYS[key]
    return "newsletters" in scopes or f"newsletters:{newsletter}" in scopes


@pytest.fixture
def clients(app, conn):
    """A client per key, all of copernica.com (whose pages hold every list's pages), plus
    one with every scope to set the scene."""
    site_key_for(conn, "copernica.com", ["auth"], lists=LISTS)
    made = {}
    for name, scopes in {**KEYS, "setup": ["newsletters", "profiles:write"]}.items():
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = (
            f"Bearer {site_key_for(conn, 'copernica.com', scopes)}"
        )
        made[name] = client
    return made


def _count(conn, table: str) -> int:
    return conn.execute(f"select count(*) as n from {table}").fetchone()["n"]  # noqa: S608


def _forbidden(answer, newsletter: str) -> None:
    """403, naming the list, or the scope a key with no list lacks."""
    assert answer.status_code == 403, answer.get_data(as_text=True)
    assert answer.mimetype == "application/problem+json"
    detail = answer.get_json()["detail"]
    assert f"may not manage the list {newsletter!r}" in detail or "scope 'newsletters'" in detail


CASES = [(key, newsletter) for key in KEYS for newsletter in LISTS]


@pytest.mark.parametrize(("key", "newsletter"), CASES)
def test_subscribing_on_behalf(clients, conn, key, newsletter):
    answer = clients[key].post(
        f"/v1/newsletters/{newsletter}/subscriptions",
        json={"email": "anna@example.com", "consent": CONSENT},
    )
    if _may(key, newsletter):
        assert answer.status_code in (200, 201, 202), answer.get_data(as_text=True)
        assert answer.get_json()["newsletter"] == newsletter
    else:
        _forbidden(answer, newsletter)
        assert _count(conn, "users") == _count(conn, "consent_events") == 0


@pytest.mark.parametrize(("key", "newsletter"), [c for c in CASES if c[1] != "copernica-updates"])
def test_confirming_a_double_opt_in(clients, conn, key, newsletter):
    asked = clients["setup"].post(
        f"/v1/newsletters/{newsletter}/subscriptions",
        json={"email": "anna@example.com", "consent": CONSENT},
    )
    assert asked.get_json()["state"] == "pending"
    token = mailed(conn, "anna@example.com", "newsletter_confirm")["token"]
    answer = clients[key].post("/v1/newsletters/confirm", json={"token": token})
    if _may(key, newsletter):
        assert answer.status_code == 200 and answer.get_json()["state"] == "subscribed"
    else:
        _forbidden(answer, newsletter)
        # Nothing written, the token not spent: a key that may confirm still can.
        again = clients["setup"].post("/v1/newsletters/confirm", json={"token": token})
        assert again.status_code == 200 and again.get_json()["state"] == "subscribed"


@pytest.mark.parametrize(("key", "newsletter"), CASES)
def test_the_export_and_links_in_bulk(clients, conn, key, newsletter):
    # A subscriber of the list: a key without users:read has links for its subscribers
    # alone (tests/api/test_newsletters.py).
    clients["setup"].post(
        f"/v1/newsletters/{newsletter}/subscriptions",
        json={"email": "anna@example.com", "consent": CONSENT},
    )
    if newsletter != "copernica-updates":  # double opt-in
        token = mailed(conn, "anna@example.com", "newsletter_confirm")["token"]
        confirmed = clients["setup"].post("/v1/newsletters/confirm", json={"token": token})
        assert confirmed.status_code == 200
    exported = clients[key].get(
        f"/v1/newsletters/{newsletter}/subscribers", headers={"Accept": "application/x-ndjson"}
    )
    linked = clients[key].post(
        f"/v1/newsletters/{newsletter}/unsubscribe-links", json={"emails": ["anna@example.com"]}
    )
    if _may(key, newsletter):
        assert exported.status_code == 200, exported.get_data(as_text=True)
        assert json.loads(exported.get_data(as_text=True).splitlines()[-1])["complete"]
        assert linked.status_code == 200 and len(linked.get_json()["links"]) == 1
    else:
        _forbidden(exported, newsletter)
        _forbidden(linked, newsletter)


@pytest.mark.parametrize("key", [key for key in KEYS if key != "no list"])
def test_an_import_line_brings_consent_over_only_for_a_list_the_key_may_manage(app, conn, key):
    scopes = [*KEYS[key], "profiles:write"]
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = (
        f"Bearer {site_key_for(conn, 'copernica.com', scopes)}"
    )
    old = {"consented_at": "2024-03-01T10:00:00Z", "consent_text": "old form"}
    lines = [{"email": f"{n}@example.com", "newsletters": {n: old}} for n in LISTS]
    body = "".join(json.dumps(line) + "\n" for line in lines)
    answer = client.post(
        "/v1/profiles/import", data=body.encode(), content_type="application/x-ndjson"
    )
    report = [json.loads(line) for line in answer.get_data(as_text=True).splitlines()][:3]
    for newsletter, line in zip(LISTS, report, strict=True):
        if _may(key, newsletter):
            assert line["status"] == "created", line
        else:
            assert line["status"] == "rejected"
            assert f"may not manage {newsletter}" in line["errors"]["newsletters"][0]
    subscribed = {
        row["key"]
        for row in conn.execute(
            "select n.key from subscriptions s join newsletters n on n.id = s.newsletter"
        )
    }
    assert subscribed == {n for n in LISTS if _may(key, n)}


@pytest.mark.parametrize("key", list(KEYS))
def test_the_catalog_is_for_any_key_with_a_list(clients, key):
    answer = clients[key].get("/v1/newsletters")
    if key == "no list":
        assert answer.status_code == 403
    else:
        assert answer.status_code == 200 and len(answer.get_json()) == 5
