import base64
import json
from contextlib import nullcontext

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from identity.api.guards import SERVICES
from identity.security.access_tokens import (
    RELOAD_SECONDS,
    KeyRing,
    issue_access_token,
    publish_seconds,
    rotate_signing_key,
)

ISSUER = "http://127.0.0.1:8000"


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_the_key_set_is_public_cacheable_and_holds_only_public_parts(client, conn):
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.mimetype == "application/json"
    (key,) = response.get_json()["keys"]
    assert set(key) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
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
    assert named["alg"] == "EdDSA"
    public = Ed25519PublicKey.from_public_bytes(_b64decode(keys[named["kid"]]["x"]))
    public.verify(_b64decode(signature), f"{header}.{payload}".encode())  # raises if not
    assert json.loads(_b64decode(payload))["aud"] == "smtpeter.com"


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_after_a_rotation_both_keys_are_published_then_only_the_new_one(app, client, conn):
    clock = Clock(float(conn.execute("select extract(epoch from now()) as t").fetchone()["t"]))
    secret = app.config["IDENTITY"]["SECRET_KEY"]
    app.extensions[SERVICES].key_ring = KeyRing(lambda: nullcontext(conn), secret, clock=clock)
    (old,) = client.get("/.well-known/jwks.json").get_json()["keys"]
    new_kid, retired = rotate_signing_key(conn, secret, access_token_seconds=900)
    assert retired == old["kid"]

    clock.now += RELOAD_SECONDS
    kids = [key["kid"] for key in client.get("/.well-known/jwks.json").get_json()["keys"]]
    assert sorted(kids) == sorted([old["kid"], new_kid])

    clock.now += publish_seconds(900)
    kids = [key["kid"] for key in client.get("/.well-known/jwks.json").get_json()["keys"]]
    assert kids == [new_kid]


def test_the_key_set_is_documented_as_public(client):
    operation = client.get("/openapi.json").get_json()["paths"]["/.well-known/jwks.json"]["get"]
    assert operation["security"] == []
    assert operation["summary"] == "The keys that sign access tokens"
    ok = operation["responses"]["200"]
    assert "Cache-Control" in ok["headers"]
    assert ok["content"]["application/json"]["example"]["keys"][0]["alg"] == "EdDSA"
