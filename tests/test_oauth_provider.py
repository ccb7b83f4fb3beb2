"""The test provider itself, driven over HTTP as a client of it would."""

import base64
import hashlib
import secrets
from urllib.parse import urlencode

import pytest
import requests
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import KeySet

from tests.oauth_provider import Provider

REDIRECT_URI = "http://127.0.0.1:9/signin/google/done"


@pytest.fixture(scope="module")
def provider():
    with Provider() as provider:
        yield provider


@pytest.fixture
def google(provider):
    provider.reset()
    return provider, requests.get(provider.discovery_url("google"), timeout=5).json()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_in(provider, meta, nonce="n-0S6"):
    """A code and its verifier from the authorize endpoint, with PKCE and a nonce."""
    verifier, challenge = pkce()
    query = {
        "response_type": "code",
        "client_id": provider.client("google")[0],
        "redirect_uri": REDIRECT_URI,
        "scope": "openid email profile",
        "state": "st-1",
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    back = provider.authorize(f"{meta['authorization_endpoint']}?{urlencode(query)}")
    assert back["state"] == "st-1"
    return back["code"], verifier


def exchange(provider, meta, code, verifier):
    return requests.post(
        meta["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=provider.client("google"),
        timeout=5,
    )


def test_discovery(google):
    provider, meta = google
    assert meta["issuer"] == provider.issuer("google")
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]
    assert set(provider.settings()) >= {
        "IDENTITY_LINKEDIN_DISCOVERY_URL",
        "IDENTITY_FACEBOOK_USERINFO_URL",
    }


def test_code_flow_gives_an_id_token_that_verifies_against_the_jwks(google):
    provider, meta = google
    provider.next_person("google", "108", email="ann@example.com", email_verified=True)
    code, verifier = sign_in(provider, meta)

    answer = exchange(provider, meta, code, verifier)

    assert answer.status_code == 200, answer.text
    keys = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=5).json())
    token = jwt.decode(answer.json()["id_token"], keys, algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": meta["issuer"]},
        aud={"essential": True, "value": "google-client"},
        nonce={"essential": True, "value": "n-0S6"},
    ).validate(token.claims)
    assert token.claims["sub"] == "108" and token.claims["email"] == "ann@example.com"
    assert "given_name" not in token.claims
    userinfo = requests.get(
        meta["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {answer.json()['access_token']}"},
        timeout=5,
    )
    assert userinfo.json() == {"sub": "108", "email": "ann@example.com", "email_verified": True}
    sent = next(r for r in provider.requests if r["path"] == "/google/token")
    assert sent["form"]["code_verifier"] == verifier


def test_a_code_is_refused_the_second_time(google):
    provider, meta = google
    code, verifier = sign_in(provider, meta)
    assert exchange(provider, meta, code, verifier).status_code == 200

    again = exchange(provider, meta, code, verifier)

    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_a_wrong_verifier_is_refused(google):
    provider, meta = google
    code, _ = sign_in(provider, meta)

    answer = exchange(provider, meta, code, pkce()[0])

    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("knob", "error"),
    [
        ("bad_signature", BadSignatureError),
        ("other_key", BadSignatureError),
        ("alg_none", JoseError),
    ],
)
def test_a_forged_id_token_does_not_verify(google, knob, error):
    provider, meta = google
    provider.misbehave("google", **{knob: True})
    code, verifier = sign_in(provider, meta)
    id_token = exchange(provider, meta, code, verifier).json()["id_token"]
    keys = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=5).json())

    with pytest.raises(error):
        jwt.decode(id_token, keys, algorithms=["RS256"])


def test_a_refusal_comes_back_with_the_state(google):
    provider, meta = google
    provider.deny_next("google")

    query = {
        "response_type": "code",
        "client_id": "google-client",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "st-2",
        "code_challenge": pkce()[1],
        "code_challenge_method": "S256",
    }
    back = provider.authorize(f"{meta['authorization_endpoint']}?{urlencode(query)}")

    assert back["error"] == "access_denied" and back["state"] == "st-2"


def test_facebook_me_gives_the_fields_asked_for(provider):
    provider.reset()
    provider.next_person("facebook", "10223", first_name="Ann", last_name="Lee", email="a@x.nl")
    client_id, secret = provider.client("facebook")
    redirect_uri = "https://example.com/signin/facebook/done"
    query = {"client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code"}
    code = provider.authorize(f"{provider.facebook_authorize_url}?{urlencode(query)}")["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        "client_secret": secret,
    }
    tokens = requests.post(provider.facebook_token_url, data=form, timeout=5).json()
    assert "id_token" not in tokens

    me = requests.get(
        provider.facebook_userinfo_url,
        params={"fields": "id,first_name,email", "access_token": tokens["access_token"]},
        timeout=5,
    )

    assert me.json() == {"id": "10223", "first_name": "Ann", "email": "a@x.nl"}
    unknown = requests.get(provider.facebook_userinfo_url, params={"access_token": "x"}, timeout=5)
    assert unknown.status_code == 401
