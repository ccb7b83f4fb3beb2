import base64
import json
from contextlib import nullcontext

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from identity.api.guards import SERVICES
from identity.composition import build
from identity.db import EXTENSION
from identity.security.access_tokens import (
    RELOAD_SECONDS,
    KeyRing,
    issue_access_token,
    publish_seconds,
    rotate_signing_key,
    signs_in_seconds,
)
from tests.api.test_accounts import as_user, login, sign_up

ISSUER = "http://127.0.0.1:8000"


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_the_key_set_is_public_cacheable_and_holds_only_public_parts(client, conn):
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.mimetype == "application/json"
    (key,) = response.get_json()["keys"]
    assert set(key) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("EC", "P-256", "ES256", "sig")
    # Asked before any token was signed, it already holds the key that will sign them.
    assert conn.execute("select kid from signing_keys").fetchone()["kid"] == key["kid"]


def test_a_site_can_check_a_token_with_the_published_key_alone(app, client):
    """As a site would, with nothing of this service but the key set."""
    token, _ = issue_access_token(
        app.extensions[SERVICES].key_ring, user_id="u-1", site="smtpeter.com", issuer=ISSUER
    )
    keys = {key["kid"]: key for key in client.get("/.well-known/jwks.json").get_json()["keys"]}
    header, payload, signature = token.split(".")
    named = json.loads(_b64decode(header))
    jwk = keys[named["kid"]]
    assert named["alg"] == jwk["alg"] == "ES256"
    x, y = (int.from_bytes(_b64decode(jwk[c]), "big") for c in ("x", "y"))
    public = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    raw = _b64decode(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))  # or raises
    assert json.loads(_b64decode(payload))["aud"] == "smtpeter.com"


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _ring_on_a_clock(app, conn) -> tuple[Clock, str]:
    """The app's key ring on the test's connection and a clock the test moves."""
    clock = Clock(float(conn.execute("select extract(epoch from now()) as t").fetchone()["t"]))
    secret = app.config["IDENTITY"]["SECRET_KEY"]
    app.extensions[SERVICES].key_ring = KeyRing(lambda: nullcontext(conn), secret, clock=clock)
    return clock, secret


def _kids(client) -> list[str]:
    return sorted(key["kid"] for key in client.get("/.well-known/jwks.json").get_json()["keys"])


def _token_kid(app) -> str:
    token, _ = issue_access_token(
        app.extensions[SERVICES].key_ring, user_id="u-1", site="smtpeter.com", issuer=ISSUER
    )
    return json.loads(_b64decode(token.split(".")[0]))["kid"]


def test_after_a_rotation_the_set_holds_the_new_key_before_it_signs(app, client, conn):
    clock, secret = _ring_on_a_clock(app, conn)
    (old,) = _kids(client)
    rotation = rotate_signing_key(conn, secret, access_token_seconds=900)
    assert rotation.retired == [old]

    clock.now += RELOAD_SECONDS
    assert _kids(client) == sorted([old, rotation.kid])
    assert _token_kid(app) == old  # a site's cached set may not hold the new one yet

    assert rotation.signs_from.timestamp() >= clock.now + signs_in_seconds() - RELOAD_SECONDS
    clock.now = rotation.signs_from.timestamp() + 1
    assert _token_kid(app) == rotation.kid
    assert _kids(client) == sorted([old, rotation.kid])

    clock.now += publish_seconds(900)
    assert _kids(client) == [rotation.kid]


def test_a_revoked_key_leaves_the_set_within_seconds(app, client, conn):
    clock, secret = _ring_on_a_clock(app, conn)
    (old,) = _kids(client)
    rotation = rotate_signing_key(conn, secret, access_token_seconds=900, revoke_previous=True)
    assert rotation.revoked == [old]
    clock.now += RELOAD_SECONDS
    assert _kids(client) == [rotation.kid]
    assert _token_kid(app) == rotation.kid


def test_the_key_set_is_documented_as_public(client):
    operation = client.get("/openapi.json").get_json()["paths"]["/.well-known/jwks.json"]["get"]
    assert operation["security"] == []
    assert operation["summary"] == "The keys that sign access tokens"
    ok = operation["responses"]["200"]
    assert "Cache-Control" in ok["headers"]
    assert ok["content"]["application/json"]["example"]["keys"][0]["alg"] == "ES256"


def test_after_revoke_previous_a_replica_refuses_the_old_access_tokens_on_v1_me(app, site, conn):
    """A replica reading the keys now: the one that served the token would within
    RELOAD_SECONDS (tests/security/test_access_tokens.py moves its clock)."""
    sign_up(site, conn)
    tokens = login(site).get_json()
    assert as_user(app, tokens["access_token"]).get("/v1/me").status_code == 200
    secret = app.config["IDENTITY"]["SECRET_KEY"]
    rotate_signing_key(conn, secret, access_token_seconds=900, revoke_previous=True)

    app.extensions[SERVICES] = build(app.config["IDENTITY"], app.extensions[EXTENSION].connection)
    assert as_user(app, tokens["access_token"]).get("/v1/me").status_code == 401
    # The sign-in itself holds: the site's refresh gets a token of the new key.
    refreshed = site.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    assert as_user(app, refreshed.get_json()["access_token"]).get("/v1/me").status_code == 200
