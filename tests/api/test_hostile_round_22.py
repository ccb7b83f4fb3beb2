"""Hostile round on issue 22 ("Social login"): what broke, each a failing test marked
xfail(strict) until it is fixed; and what held, where no test of tests/api/
test_social_login.py shows it. The provider is the real one on loopback
(tests/oauth_provider.py); an ID token it cannot make is signed here with its own key."""

import base64
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc.jwk import OctKey, RSAKey

from identity import create_app
from identity.db import Database
from tests.api import test_social_login as _social_login
from tests.api.problems import assert_problem
from tests.api.test_accounts import BROWSER, PASSWORD, as_user, login, register, sign_up
from tests.api.test_social_login import ANNA, IP, REDIRECT, begin, finish, identities
from tests.oauth_provider import Provider, _json
from tests.outbox import mailed
from tests.settings import CHEAP
from tests.sites import site_key_for

# The fixtures of the social sign-in tests: the provider on loopback, the app pointed at it,
# and a site with its registered redirect URI.
provider = _social_login.provider
social = _social_login.social
copernica = _social_login.copernica

STRANGER_PASSWORD = "a stranger's own 42 passphrase"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signing_input(header: dict, claims: dict) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def _rs256(key: RSAKey, header: dict, claims: dict) -> str:
    """A compact JWS signed as written: headers and claims joserfc would refuse to make."""
    signing = _signing_input(header, claims)
    signature = key.private_key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing}.{_b64(signature)}"


def _hs256(secret: bytes, header: dict, claims: dict) -> str:
    signing = _signing_input(header, claims)
    mac = crypto_hmac.HMAC(secret, hashes.SHA256())
    mac.update(signing.encode())
    return f"{signing}.{_b64(mac.finalize())}"


def _claims(social, shape: str, grant: dict) -> dict:
    sub, person = grant["person"]
    now = int(time.time())
    return {
        "iss": social.issuer(shape),
        "aud": grant["client_id"],
        "sub": sub,
        "iat": now,
        "exp": now + 300,
        "nonce": grant["nonce"],
        **person,
    }


def _id_tokens(monkeypatch, social, make):
    """The provider's token endpoint answers with the ID token `make(claims)` builds."""
    monkeypatch.setattr(
        social, "_id_token", lambda shape, grant, knobs: make(_claims(social, shape, grant))
    )


def _nothing_joined(conn):
    assert identities(conn) == []


def _thief_moves_the_account(app, conn, site):
    """Anna's account, moved by a thief with her password to the thief's mailbox; the undo
    link mailed to Anna."""
    account = sign_up(site, conn)
    thief = as_user(app, login(site).get_json()["access_token"])
    body = {"new_email": "thief@evil.example", "current_password": PASSWORD, **BROWSER}
    assert thief.post("/v1/me/email", json=body).status_code == 202
    confirm = mailed(conn, "thief@evil.example", "email_change_confirm")["token"]
    assert site.post("/v1/auth/verify-email", json={"token": confirm}).status_code == 200
    return account, mailed(conn, "anna@example.com", "email_changed")["token"]


# --- findings ---------------------------------------------------------------------------


def test_a_join_link_mailed_to_the_thiefs_address_dies_with_the_undo(app, conn, copernica, social):
    account, undo = _thief_moves_the_account(app, conn, copernica)
    social.next_person("facebook", "thief-fb", email="thief@evil.example")
    assert finish(copernica, social, "facebook").status_code == 202
    link = mailed(conn, "thief@evil.example", "social_join_confirm")["token"]
    assert copernica.post("/v1/auth/email-change/undo", json={"token": undo}).status_code == 200
    clicked = copernica.post("/v1/auth/verify-email", json={"token": link})
    signed_in = finish(copernica, social, "facebook")
    assert (signed_in.get_json().get("user") or {}).get("id") != account["id"]
    _nothing_joined(conn)
    assert_problem(clicked, 422, "token")


def test_a_join_link_mailed_to_an_old_address_dies_with_the_change(app, conn, copernica, social):
    sign_up(copernica, conn)
    social.next_person("facebook", "stranger", email="anna@example.com")
    assert finish(copernica, social, "facebook").status_code == 202
    link = mailed(conn, "anna@example.com", "social_join_confirm")["token"]
    me = as_user(app, login(copernica).get_json()["access_token"])
    body = {"new_email": "anna@new.example", "current_password": PASSWORD, **BROWSER}
    assert me.post("/v1/me/email", json=body).status_code == 202
    confirm = mailed(conn, "anna@new.example", "email_change_confirm")["token"]
    assert copernica.post("/v1/auth/verify-email", json={"token": confirm}).status_code == 200
    # Whoever reads anna@example.com now (her old employer, a recycled mailbox) clicks.
    clicked = copernica.post("/v1/auth/verify-email", json={"token": link})
    _nothing_joined(conn)
    assert_problem(clicked, 422, "token")


def test_a_pending_registration_is_void_once_a_provider_proves_the_address(conn, copernica, social):
    assert register(copernica, password=STRANGER_PASSWORD).status_code == 202
    strangers_link = mailed(conn, "anna@example.com", "verify_email")["token"]
    social.next_person("google", "anna-g", email_verified=True, **ANNA)
    joined = finish(copernica, social, "google")
    assert joined.get_json()["user"]["status"] == "registered"
    # Anna, having just made her account with Google, clicks the "confirm" mail she has.
    copernica.post("/v1/auth/verify-email", json={"token": strangers_link})
    assert login(copernica, password=STRANGER_PASSWORD).status_code == 401


def test_a_vouched_address_joins_only_the_account_of_that_address(conn, copernica, social):
    account = sign_up(copernica, conn, email="strasse@example.com")
    social.next_person("google", "other", email_verified=True, email="straße@example.com")
    finish(copernica, social, "google")
    joined = conn.execute("select user_id from social_identities").fetchall()
    assert account["id"] not in [str(row["user_id"]) for row in joined]


@pytest.mark.parametrize(
    "shape, subject", [("google", "g\x00"), ("facebook", "\ud800")], ids=["nul", "surrogate"]
)
def test_a_subject_postgresql_cannot_store_is_a_502(conn, copernica, social, shape, subject):
    social.next_person(shape, subject, email_verified=True, **ANNA)
    assert_problem(finish(copernica, social, shape), 502)


def test_a_callback_with_neither_code_nor_error_is_a_422(conn, copernica, social):
    begun = begin(copernica, "google")
    answer = copernica.post(
        "/v1/auth/social/google/callback", json={"state": begun["state"], **BROWSER}
    )
    assert_problem(answer, 422)
    assert conn.execute("select count(*) from social_flows").fetchone()["count"] == 1


def test_one_browser_cannot_fill_the_flows_table(conn, copernica, social):
    answers = [
        copernica.get(
            "/v1/auth/social/google/authorize",
            query_string={"redirect_uri": REDIRECT, **IP},
        ).status_code
        for _ in range(70)
    ]
    assert set(answers[:60]) == {200} and set(answers[-8:]) == {429}
    flows = conn.execute("select count(*) from social_flows").fetchone()["count"]
    assert flows == answers.count(200) < 70
    # Without the browser's address, nothing begins.
    refused = copernica.get(
        "/v1/auth/social/google/authorize", query_string={"redirect_uri": REDIRECT}
    )
    assert refused.status_code == 422


def _document():
    return json.loads(Path("openapi/openapi.json").read_text())


def test_verify_email_documents_the_join_link():
    described = _document()["paths"]["/v1/auth/verify-email"]["post"]["description"]
    assert "provider" in described or "social" in described


def test_the_callbacks_state_is_described():
    state = _document()["components"]["schemas"]["Callback"]["properties"]["state"]
    assert state.get("description")


# --- what held --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "how", ["unknown-kid", "jku", "crit", "hs256-client-secret", "kid-list", "x5u-own-key"]
)
def test_id_token_headers_pick_no_key_but_the_providers(monkeypatch, conn, copernica, social, how):
    attacker = RSAKey.generate_key(2048, parameters={"kid": "evil"})
    own = {"alg": "RS256", "kid": social._key.kid}
    tokens = {
        "unknown-kid": lambda c: _rs256(attacker, {"alg": "RS256", "kid": "evil"}, c),
        "jku": lambda c: _rs256(
            attacker, {"alg": "RS256", "kid": "evil", "jku": f"{social.url}/evil/jwks"}, c
        ),
        "crit": lambda c: _rs256(social._key, {**own, "crit": ["urn:x:must"], "urn:x:must": 1}, c),
        "hs256-client-secret": lambda c: _hs256(
            social.client("google")[1].encode(), {"alg": "HS256", "kid": social._key.kid}, c
        ),
        "kid-list": lambda c: _rs256(social._key, {**own, "kid": [social._key.kid]}, c),
        "x5u-own-key": lambda c: _rs256(social._key, {**own, "x5u": "https://evil.example"}, c),
    }
    _id_tokens(monkeypatch, social, tokens[how])
    social.next_person("google", "g-1", email_verified=True, **ANNA)
    answer = finish(copernica, social, "google")
    if how == "x5u-own-key":  # the provider's own signature: x5u is simply not read
        assert answer.status_code == 200
        return
    assert_problem(answer, 401)
    _nothing_joined(conn)


@pytest.mark.parametrize("alg", ["RS256", "HS256"])
def test_an_oct_key_in_the_jwks_signs_nothing(monkeypatch, conn, copernica, social, alg):
    oct_key = OctKey.generate_key(256, parameters={"kid": "k-oct"})

    def jwks(self, shape, request, knobs):
        keys = [oct_key.as_dict(private=True), self._key.as_dict(private=False)]
        return _json({"keys": keys})

    monkeypatch.setitem(Provider._OIDC_ROUTES, "jwks", (("GET",), jwks))
    header = {"alg": alg, "kid": "k-oct"}
    if alg == "HS256":
        _id_tokens(monkeypatch, social, lambda c: _hs256(oct_key.raw_value, header, c))
    else:
        _id_tokens(monkeypatch, social, lambda c: _rs256(social._key, header, c))
    social.next_person("google", "g-1", email_verified=True, **ANNA)
    assert_problem(finish(copernica, social, "google"), 401)
    _nothing_joined(conn)


@pytest.mark.parametrize("subject", [["g-1"], {"id": 1}, True, 1.5, "x" * 10_000], ids=repr)
def test_an_odd_subject_is_a_502(conn, copernica, social, subject):
    social.next_person("google", subject, email_verified=True, **ANNA)
    assert_problem(finish(copernica, social, "google"), 502)
    _nothing_joined(conn)


def test_a_numeric_subject_is_the_same_identity_as_its_digits(conn, copernica, social):
    social.next_person("facebook", 1000123, email="bob@example.com")
    assert finish(copernica, social, "facebook").status_code == 202
    token = mailed(conn, "bob@example.com", "social_join_confirm")["token"]
    assert copernica.post("/v1/auth/verify-email", json={"token": token}).status_code == 200
    social.next_person("facebook", "1000123", email="bob@example.com")
    assert finish(copernica, social, "facebook").status_code == 200
    assert identities(conn) == [("facebook", "1000123")]


@pytest.mark.parametrize("verified", ["false", "1", 1, "TRUE", None, [True]], ids=repr)
def test_only_a_true_email_verified_vouches(conn, copernica, social, verified):
    sign_up(copernica, conn)
    social.next_person("google", "g-1", email_verified=verified, email="anna@example.com")
    assert finish(copernica, social, "google").status_code == 202
    _nothing_joined(conn)


@pytest.mark.parametrize(
    "email",
    ["anna\x00@example.com", "anna\u202e@example.com", "an\udc00na@example.com", "a" * 400],
    ids=["nul", "bidi", "surrogate", "long"],
)
def test_an_address_the_record_cannot_hold_is_a_422(monkeypatch, conn, copernica, social, email):
    # Signed here: the provider's own JSON encoder cannot put a lone surrogate in a JWT.
    _id_tokens(monkeypatch, social, lambda c: _rs256(social._key, {"alg": "RS256"}, c))
    social.next_person("google", "g-1", email_verified=True, email=email)
    assert_problem(finish(copernica, social, "google"), 422)
    assert conn.execute("select count(*) from users").fetchone()["count"] == 0


def test_names_with_controls_or_too_long_are_left_out(app, conn, copernica, social):
    social.next_person(
        "google",
        "g-1",
        email_verified=True,
        email="anna@example.com",
        given_name="Anna\x00\u202eevil",
        family_name="J" * 10_000,
    )
    answer = finish(copernica, social, "google")
    assert answer.status_code == 200
    user = answer.get_json()["user"]
    assert (user["first_name"], user["last_name"]) == (None, None)


def test_a_known_subject_whose_address_changed_signs_in_its_own_record(conn, copernica, social):
    anna = sign_up(copernica, conn)
    social.next_person("google", "eve", email_verified=True, email="eve@evil.example")
    eve = finish(copernica, social, "google").get_json()["user"]["id"]
    social.next_person("google", "eve", email_verified=True, email="anna@example.com")
    again = finish(copernica, social, "google").get_json()["user"]
    assert again["id"] == eve != anna["id"] and again["email"] == "eve@evil.example"


def test_a_join_link_of_a_provider_the_record_meanwhile_has_is_a_409(conn, copernica, social):
    sign_up(copernica, conn)
    social.next_person("facebook", "stranger", email="anna@example.com")
    assert finish(copernica, social, "facebook").status_code == 202
    strangers = mailed(conn, "anna@example.com", "social_join_confirm")["token"]
    social.next_person("facebook", "annas-own", email="anna@example.com")
    assert finish(copernica, social, "facebook").status_code == 202
    own = mailed(conn, "anna@example.com", "social_join_confirm")["token"]
    assert copernica.post("/v1/auth/verify-email", json={"token": own}).status_code == 200
    assert_problem(copernica.post("/v1/auth/verify-email", json={"token": strangers}), 409)
    assert identities(conn) == [("facebook", "annas-own")]


@pytest.mark.parametrize(
    "body",
    [
        '{"state": 5, "code": "x", %s}',
        '{"state": "s", "code": ["x"], %s}',
        '{"state": "s", "code": {"a": 1}, %s}',
        '{"state": null, "code": "x", %s}',
        '{"state": "s", "code": "' + "x" * 2001 + '", %s}',
        '{"state": "' + "s" * 100_000 + '", "code": "x", %s}',
        '{"code": "x", %s}',
        '{"state": "s", "code": "x", "scope": "openid", %s}',
        '{"state": "s\\u0000", "code": "x", %s}',
        '{"state": "s", "code": "x\\ud800", %s}',
        "[1, 2]",
        '{"state": "s", "code": "x", %s',
    ],
    ids=[
        "state-int",
        "code-list",
        "code-object",
        "state-null",
        "code-huge",
        "state-huge",
        "no-state",
        "unknown-field",
        "nul",
        "lone-surrogate",
        "array",
        "broken-json",
    ],
)
def test_a_callback_body_that_does_not_fit_is_a_4xx_problem(copernica, social, body):
    raw = body % '"client_ip": "203.0.113.7"' if "%s" in body else body
    answer = copernica.post(
        "/v1/auth/social/google/callback", data=raw.encode(), content_type="application/json"
    )
    assert answer.status_code in (400, 413, 422), answer.get_data(as_text=True)
    assert_problem(answer, answer.status_code)


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://www.copernica.com/sign-in/%63allback",
        "https://www.copernica.com/sign-in%2Fcallback",
        "https://www.copern\u0456ca.com/sign-in/callback",  # a Cyrillic i
        "https://www.copernica.com\uff0fsign-in/callback",  # fullwidth solidus
        "https://www.copernica.com/sign-in/callback#x",
        "https://www.copernica.com/sign-in/callback\u200b",
        "https://user@www.copernica.com/sign-in/callback",
    ],
)
def test_an_encoded_or_look_alike_redirect_uri_is_refused(copernica, social, redirect_uri):
    answer = copernica.get(
        "/v1/auth/social/google/authorize",
        query_string={"redirect_uri": redirect_uri, **IP},
    )
    assert_problem(answer, 422, "redirect_uri")


def test_no_code_state_verifier_secret_or_token_reaches_the_log(conn, copernica, social, caplog):
    caplog.set_level(logging.DEBUG, logger="identity")
    social.next_person("google", "g-1", email_verified=True, **ANNA)
    back = social.authorize(begin(copernica, "google")["authorization_url"])
    tokens = copernica.post("/v1/auth/social/google/callback", json={**back, **BROWSER})
    refused = social.authorize(begin(copernica, "google")["authorization_url"])
    swapped = {**refused, "code": back["code"], **BROWSER}  # the provider: "already used"
    assert_problem(copernica.post("/v1/auth/social/google/callback", json=swapped), 401)
    logged = "\n".join(
        f"{record.getMessage()} {record.__dict__}"
        for record in caplog.records
        if record.name.startswith("identity")
    )
    exchange = next(r for r in social.requests if r["path"].endswith("/token"))["form"]
    for secret in (
        back["code"],
        back["state"],
        refused["state"],
        exchange["code_verifier"],
        social.client("google")[1],
        tokens.get_json()["access_token"],
        tokens.get_json()["refresh_token"],
        "already used",
    ):
        assert secret not in logged


# --- races on committed data -------------------------------------------------------------


@pytest.fixture
def pooled(database_url, committing_db, provider):
    provider.reset()
    settings = {k.removeprefix("IDENTITY_"): v for k, v in provider.settings().items()}
    database = Database(database_url, min_size=1, max_size=12, timeout=5.0)
    database.open()
    try:
        app = create_app({"DATABASE_URL": database_url, **CHEAP, **settings}, database=database)
        key = site_key_for(committing_db, "copernica.com", redirect_uris=[REDIRECT])

        def site():
            client = app.test_client()
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
            return client

        yield app, site
    finally:
        database.close()
        committing_db.execute("delete from social_flows")


def test_one_callback_sent_50_times_at_once_signs_in_once(pooled, provider):
    _, site = pooled
    provider.next_person("google", "g-anna", email_verified=True, **ANNA)
    back = provider.authorize(begin(site(), "google")["authorization_url"])

    def callback(_):
        answer = site().post("/v1/auth/social/google/callback", json={**back, **BROWSER})
        return answer.status_code, answer.mimetype

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(callback, range(50)))
    assert answers.count((200, "application/json")) == 1
    assert answers.count((401, "application/problem+json")) == 49
    assert len([r for r in provider.requests if r["path"].endswith("/token")]) == 1


def test_two_deletes_at_once_leave_a_passwordless_account_a_way_in(pooled, provider, committing_db):
    app, site = pooled
    provider.next_person("google", "g-anna", email_verified=True, **ANNA)
    access = finish(site(), provider, "google").get_json()["access_token"]
    for round_ in range(3):
        for name in ("google", "linkedin"):
            if not committing_db.execute(
                "select 1 from social_identities where provider = %s", (name,)
            ).fetchone():
                provider.next_person(name, f"{name}-{round_}", email_verified=True, **ANNA)
                assert finish(site(), provider, name).status_code == 200

        def leave(name):
            return as_user(app, access).delete(f"/v1/me/identities/{name}").status_code

        with ThreadPoolExecutor(2) as pool:
            answers = sorted(pool.map(leave, ["google", "linkedin"]))
        assert answers == [204, 409]
        left = committing_db.execute("select count(*) from social_identities").fetchone()
        assert left["count"] == 1
