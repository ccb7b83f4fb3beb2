"""Signing in with Google, LinkedIn and Facebook, end to end over HTTP: the site's calls
through the API, the provider a real one on loopback (tests/oauth_provider.py) that the
service talks to over real HTTP, and the person's browser played by following the
provider's redirect. What a site and a person would check: the tokens, the record, the
identities, the mails; and that every attack is refused with nothing joined."""

import pytest

from identity.composition import build
from tests.api.problems import assert_problem
from tests.api.test_accounts import BROWSER, PASSWORD, as_user, login, mails, sign_up
from tests.api.test_second_factor import claims
from tests.oauth_provider import Provider
from tests.outbox import mailed
from tests.sites import site_key_for

REDIRECT = "https://www.copernica.com/sign-in/callback"
OTHER_REDIRECT = "https://www.smtpeter.com/sign-in/callback"
IP = {"client_ip": "203.0.113.7"}
ANNA = {"email": "anna@example.com", "given_name": "Anna", "family_name": "Jansen"}


@pytest.fixture(scope="module")
def provider():
    with Provider() as started:
        yield started


@pytest.fixture
def social(app, provider, conn):
    """The app with the three providers pointed at the loopback provider (timeouts short,
    so a slow provider is a quick test); the provider forgets the last test."""
    from identity.api.guards import SERVICES
    from identity.db import EXTENSION

    provider.reset()
    settings = {
        name.removeprefix("IDENTITY_"): value for name, value in provider.settings().items()
    }
    config = {**app.config["IDENTITY"], **settings, "SOCIAL_TIMEOUT_SECONDS": 1.0}
    app.extensions[SERVICES] = build(config, app.extensions[EXTENSION].connection)
    return provider


@pytest.fixture
def copernica(app, conn):
    key = site_key_for(conn, "copernica.com", redirect_uris=[REDIRECT])
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


@pytest.fixture
def smtpeter(app, conn):
    key = site_key_for(conn, "smtpeter.com", redirect_uris=[OTHER_REDIRECT])
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def begin(site, shape, redirect_uri=REDIRECT):
    answer = site.get(
        f"/v1/auth/social/{shape}/authorize",
        query_string={"redirect_uri": redirect_uri, **IP},
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def finish(site, provider, shape, redirect_uri=REDIRECT, **extra):
    """The whole flow: authorize, the browser at the provider, the callback."""
    begun = begin(site, shape, redirect_uri)
    back = provider.authorize(begun["authorization_url"])
    assert back["state"] == begun["state"]
    return site.post(f"/v1/auth/social/{shape}/callback", json={**back, **BROWSER, **extra})


def record(conn, email="anna@example.com"):
    return conn.execute("select * from users where email = %s", (email,)).fetchone()


def identities(conn):
    return [
        (row["provider"], row["subject"])
        for row in conn.execute("select provider, subject from social_identities order by 1")
    ]


# --- the flow ---------------------------------------------------------------------------


def test_authorize_gives_the_providers_url_with_pkce_nonce_and_the_state(copernica, social):
    begun = begin(copernica, "google")
    url = begun["authorization_url"]
    assert url.startswith(social.issuer("google") + "/")
    for part in ("code_challenge_method=S256", "code_challenge=", "nonce=", "response_type=code"):
        assert part in url
    assert f"state={begun['state']}" in url and "scope=openid+email+profile" in url


def test_a_new_address_vouched_for_by_google_becomes_an_account(app, conn, copernica, social):
    social.next_person("google", "g-1", email_verified=True, **ANNA)
    answer = finish(copernica, social, "google")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    tokens = answer.get_json()
    assert tokens["user"]["email"] == "anna@example.com"
    assert tokens["user"]["status"] == "registered"
    me = as_user(app, tokens["access_token"]).get("/v1/me").get_json()
    assert (me["first_name"], me["last_name"]) == ("Anna", "Jansen")
    assert record(conn)["email_verified_at"] is not None
    assert record(conn)["password_hash"] is None
    assert identities(conn) == [("google", "g-1")]
    # The join is told to the address, in the site's brand.
    assert mailed(conn, "anna@example.com", "social_joined")["provider"] == "Google"
    # The token says how the person signed in: a federated sign-in.
    assert claims(tokens["access_token"])["amr"] == ["fed"]
    # What the service sent the provider: the code with its verifier and redirect URI.
    exchange = [r for r in social.requests if r["path"].endswith("/token")][-1]["form"]
    assert exchange["redirect_uri"] == REDIRECT and len(exchange["code_verifier"]) >= 43


def test_the_next_sign_in_signs_the_same_record_in_without_another_join(conn, copernica, social):
    social.next_person("google", "g-1", email_verified=True, **ANNA)
    first = finish(copernica, social, "google").get_json()
    joins = len(mails(conn, "anna@example.com"))
    again = finish(copernica, social, "google")
    assert again.status_code == 200
    assert again.get_json()["user"]["id"] == first["user"]["id"]
    assert len(mails(conn, "anna@example.com")) == joins
    assert conn.execute("select count(*) from users").fetchone()["count"] == 1


def test_a_minimal_profile_joined_keeps_its_data_the_provider_fills_blanks(conn, copernica, social):
    made = copernica.post(
        "/v1/profiles",
        json={
            "email": "anna@example.com",
            "source": "webinar",
            "first_name": "Annie",
            "phone": "+31201234567",
        },
    )
    assert made.status_code == 201
    social.next_person("linkedin", "li-1", email_verified=True, **ANNA)
    answer = finish(copernica, social, "linkedin")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    user = answer.get_json()["user"]
    assert user["id"] == made.get_json()["id"]
    assert (user["first_name"], user["last_name"], user["phone"]) == (
        "Annie",
        "Jansen",
        "+31201234567",
    )
    assert user["status"] == "registered"
    assert record(conn)["field_sources"]["last_name"]["source"] == "social"


def test_an_account_with_a_proven_address_is_joined_when_the_provider_vouches(
    conn, copernica, social
):
    account = sign_up(copernica, conn, first_name="Anna")
    social.next_person(
        "google",
        "g-1",
        email_verified=True,
        email="anna@example.com",
        given_name="Someone",
        family_name="Else",
    )
    answer = finish(copernica, social, "google")
    assert answer.status_code == 200
    user = answer.get_json()["user"]
    assert user["id"] == account["id"] and user["first_name"] == "Anna"
    assert user["last_name"] == "Else"  # a blank filled
    assert login(copernica).status_code == 200  # the password still signs in too


def test_an_unverified_address_matching_an_account_does_not_join_before_the_mail(
    app, conn, copernica, social
):
    sign_up(copernica, conn)
    social.next_person("google", "thief", email_verified=False, email="anna@example.com")
    answer = finish(copernica, social, "google")
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert answer.get_json() == {"verification_required": True}
    assert identities(conn) == []
    # Signing in with it again still joins nothing and gives no tokens.
    assert finish(copernica, social, "google").status_code == 202
    assert identities(conn) == []
    # Only the address's owner can join it: with the mailed link.
    link = mailed(conn, "anna@example.com", "social_join_confirm")
    assert link["provider"] == "Google"
    proven = copernica.post("/v1/auth/verify-email", json={"token": link["token"]})
    assert proven.status_code == 200, proven.get_data(as_text=True)
    assert identities(conn) == [("google", "thief")]
    assert finish(copernica, social, "google").status_code == 200


def test_facebook_vouches_for_no_address_a_new_one_proves_itself_first(conn, copernica, social):
    social.next_person(
        "facebook", "1000123", email="bob@example.com", first_name="Bob", last_name="Smit"
    )
    answer = finish(copernica, social, "facebook")
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert record(conn, "bob@example.com")["status"] == "minimal"
    token = mailed(conn, "bob@example.com", "social_join_confirm")["token"]
    assert copernica.post("/v1/auth/verify-email", json={"token": token}).status_code == 200
    bob = record(conn, "bob@example.com")
    assert (bob["status"], bob["first_name"], bob["last_name"]) == ("registered", "Bob", "Smit")
    signed_in = finish(copernica, social, "facebook")
    assert signed_in.status_code == 200
    assert signed_in.get_json()["user"]["email"] == "bob@example.com"
    # The Graph API was asked for only what is taken, with the app's proof.
    me = [r for r in social.requests if r["path"] == "/facebook/me"][-1]["query"]
    assert me["fields"] == "id,first_name,last_name,email" and len(me["appsecret_proof"]) == 64


def test_a_second_factor_still_asks_for_its_code(app, conn, copernica, social):
    import pyotp

    social.next_person("google", "g-1", email_verified=True, **ANNA)
    tokens = finish(copernica, social, "google").get_json()
    me = as_user(app, tokens["access_token"])
    # A social-only account re-authenticates with a password: it chooses one first.
    copernica.post("/v1/auth/password-reset", json={"email": "anna@example.com", **BROWSER})
    reset = mailed(conn, "anna@example.com", "password_reset")["token"]
    body = {"token": reset, "new_password": PASSWORD, **BROWSER}
    assert copernica.post("/v1/auth/password-reset/confirm", json=body).status_code == 204
    me = as_user(app, login(copernica).get_json()["access_token"])
    secret = me.post("/v1/me/second-factor/totp", json={"current_password": PASSWORD, **BROWSER})
    app_ = pyotp.TOTP(secret.get_json()["secret"])
    assert (
        me.post("/v1/me/second-factor/totp/confirm", json={"code": app_.now()}).status_code == 200
    )
    conn.execute("update second_factors set last_step = null")
    step = finish(copernica, social, "google").get_json()
    assert step["mfa_required"] is True and "access_token" not in step
    done = copernica.post(
        "/v1/auth/login/second-factor",
        json={"mfa_token": step["mfa_token"], "code": app_.now(), **BROWSER},
    )
    assert done.status_code == 200, done.get_data(as_text=True)
    assert claims(done.get_json()["access_token"])["amr"] == ["fed", "otp", "mfa"]


# --- managing identities ----------------------------------------------------------------


def test_the_identities_are_listed_and_the_last_way_in_cannot_go(app, conn, copernica, social):
    social.next_person("google", "g-1", email_verified=True, **ANNA)
    me = as_user(app, finish(copernica, social, "google").get_json()["access_token"])
    listed = me.get("/v1/me/identities").get_json()
    assert [(i["provider"], i["joined_site"]) for i in listed] == [("google", "copernica.com")]
    assert set(listed[0]) == {"provider", "joined_at", "joined_site", "last_used_at"}
    assert_problem(me.delete("/v1/me/identities/google"), 409)
    assert identities(conn) == [("google", "g-1")]
    assert_problem(me.delete("/v1/me/identities/facebook"), 404)
    assert me.delete("/v1/me/identities/nosuch").status_code == 404
    social.next_person("linkedin", "li-1", email_verified=True, **ANNA)
    assert finish(copernica, social, "linkedin").status_code == 200
    assert me.delete("/v1/me/identities/google").status_code == 204
    assert identities(conn) == [("linkedin", "li-1")]


# --- attacks and failures: each refused, nothing joined ----------------------------------


def _nothing_joined(conn):
    assert identities(conn) == []
    assert conn.execute("select count(*) from users").fetchone()["count"] == 0


def test_a_replayed_state_is_refused(conn, copernica, social):
    social.next_person("google", "g-1", email_verified=True, **ANNA)
    begun = begin(copernica, "google")
    back = social.authorize(begun["authorization_url"])
    assert (
        copernica.post("/v1/auth/social/google/callback", json={**back, **BROWSER}).status_code
        == 200
    )
    replay = copernica.post("/v1/auth/social/google/callback", json={**back, **BROWSER})
    assert_problem(replay, 401)


def test_a_state_of_another_site_or_provider_is_refused_and_left_for_its_own(
    conn, copernica, smtpeter, social
):
    social.next_person("google", "g-1", email_verified=True, **ANNA)
    begun = begin(copernica, "google")
    back = social.authorize(begun["authorization_url"])
    assert_problem(smtpeter.post("/v1/auth/social/google/callback", json={**back, **BROWSER}), 401)
    assert_problem(
        copernica.post("/v1/auth/social/linkedin/callback", json={**back, **BROWSER}), 401
    )
    _nothing_joined(conn)
    answer = copernica.post("/v1/auth/social/google/callback", json={**back, **BROWSER})
    assert answer.status_code == 200


def test_an_unknown_or_expired_state_is_refused(conn, copernica, social):
    assert_problem(
        copernica.post(
            "/v1/auth/social/google/callback",
            json={"state": "made-up", "code": "x", **BROWSER},
        ),
        401,
    )
    begun = begin(copernica, "google")
    back = social.authorize(begun["authorization_url"])
    conn.execute("update social_flows set expires_at = now() - interval '1 second'")
    assert_problem(copernica.post("/v1/auth/social/google/callback", json={**back, **BROWSER}), 401)
    _nothing_joined(conn)


def test_a_swapped_code_is_refused(conn, copernica, social):
    """A code of another flow (an attacker's, injected into the victim's callback): its
    PKCE verifier is not this flow's, and the provider refuses the exchange."""
    social.next_person("google", "attacker", email_verified=True, email="eve@example.com")
    attackers = social.authorize(begin(copernica, "google")["authorization_url"])
    victims = begin(copernica, "google")
    swapped = {"code": attackers["code"], "state": victims["state"], **BROWSER}
    assert_problem(copernica.post("/v1/auth/social/google/callback", json=swapped), 401)
    _nothing_joined(conn)


@pytest.mark.parametrize(
    "knobs",
    [
        {"id_token_claims": {"aud": "another-client"}},
        {"id_token_claims": {"aud": ["google-client", "another"], "azp": "another"}},
        {"id_token_claims": {"iss": "https://accounts.evil.example"}},
        {"id_token_claims": {"iat": 1_000_000_000, "exp": 4_000_000_000}},
        {"id_token_claims": {"exp": 1_000_000_000}},
        {"id_token_claims": {"nonce": None}},
        {"id_token_claims": {"nonce": "another-sign-ins-nonce"}},
        {"bad_signature": True},
        {"alg_none": True},
        {"other_key": True},
    ],
    ids=[
        "aud",
        "aud-azp",
        "iss",
        "old-iat",
        "expired",
        "no-nonce",
        "wrong-nonce",
        "bad-signature",
        "alg-none",
        "other-key",
    ],
)
def test_an_id_token_that_does_not_hold_is_refused(conn, copernica, social, knobs):
    social.next_person("google", "g-1", email_verified=True, **ANNA)
    social.misbehave("google", **knobs)
    assert_problem(finish(copernica, social, "google"), 401)
    _nothing_joined(conn)


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://www.copernica.com/sign-in/callback/",
        "https://www.copernica.com/sign-in/callback?x=1",
        "https://WWW.copernica.com/sign-in/callback",
        "http://www.copernica.com/sign-in/callback",
        "https://www.copernica.com.evil.example/sign-in/callback",
        OTHER_REDIRECT,
    ],
)
def test_an_unregistered_or_look_alike_redirect_uri_is_refused(copernica, social, redirect_uri):
    answer = copernica.get(
        "/v1/auth/social/google/authorize",
        query_string={"redirect_uri": redirect_uri, **IP},
    )
    assert_problem(answer, 422, "redirect_uri")


def test_a_declined_consent_is_refused_and_spends_the_state(conn, copernica, social):
    social.deny_next("google")
    begun = begin(copernica, "google")
    back = social.authorize(begun["authorization_url"])
    assert back["error"] == "access_denied"
    assert_problem(copernica.post("/v1/auth/social/google/callback", json={**back, **BROWSER}), 401)
    assert conn.execute("select count(*) from social_flows").fetchone()["count"] == 0
    _nothing_joined(conn)


@pytest.mark.parametrize(
    "knobs",
    [{"token_status": 500}, {"token_garbage": True}, {"delay": 1.5}],
    ids=["500", "garbage", "slow"],
)
def test_a_provider_that_fails_is_a_502(conn, copernica, social, knobs):
    social.next_person("google", "g-1", email_verified=True, **ANNA)
    social.misbehave("google", **knobs)
    assert_problem(finish(copernica, social, "google"), 502)
    _nothing_joined(conn)


def test_a_facebook_me_that_fails_is_a_502(conn, copernica, social):
    social.next_person("facebook", "1000123", email="bob@example.com")
    social.misbehave("facebook", userinfo_status=500)
    assert_problem(finish(copernica, social, "facebook"), 502)
    _nothing_joined(conn)


def test_a_discovery_document_that_fails_is_a_502_at_authorize(copernica, social):
    social.misbehave("linkedin", discovery_status=500)
    answer = copernica.get(
        "/v1/auth/social/linkedin/authorize",
        query_string={"redirect_uri": REDIRECT, **IP},
    )
    assert_problem(answer, 502)


def test_a_provider_that_is_off_is_a_404(app, copernica):
    # The suite's own settings set up no provider.
    answer = copernica.get(
        "/v1/auth/social/google/authorize",
        query_string={"redirect_uri": REDIRECT, **IP},
    )
    assert_problem(answer, 404)
    assert copernica.get("/v1/auth/social/myspace/authorize").status_code == 404


def test_a_callback_without_the_browsers_address_is_a_422(copernica, social):
    answer = copernica.post("/v1/auth/social/google/callback", json={"state": "s", "code": "c"})
    assert_problem(answer, 422, "client_ip")


def test_a_provider_sharing_no_address_is_a_422_and_joins_nothing(conn, copernica, social):
    social.next_person("google", "g-1", email_verified=True, given_name="Anna")
    assert_problem(finish(copernica, social, "google"), 422)
    _nothing_joined(conn)


# --- a thief's provider does not outlive the undo of a change of address -----------------


def test_an_undo_drops_a_provider_the_thief_joined_and_keeps_the_owners(
    app, conn, copernica, social
):
    sign_up(copernica, conn)
    social.next_person("linkedin", "anna-li", email_verified=True, **ANNA)
    assert finish(copernica, social, "linkedin").status_code == 200  # Anna's own, long ago
    conn.execute("update social_identities set joined_at = joined_at - interval '8 days'")
    thief = as_user(app, login(copernica).get_json()["access_token"])
    body = {"new_email": "thief@evil.example", "current_password": PASSWORD, **BROWSER}
    assert thief.post("/v1/me/email", json=body).status_code == 202
    confirm = mailed(conn, "thief@evil.example", "email_change_confirm")["token"]
    account = copernica.post("/v1/auth/verify-email", json={"token": confirm}).get_json()
    undo = mailed(conn, "anna@example.com", "email_changed")["token"]
    # The thief's Google, whose address is the thief's, vouched for: it joins the account.
    social.next_person("google", "thief-g", email_verified=True, email="thief@evil.example")
    joined = finish(copernica, social, "google")
    assert joined.get_json()["user"]["id"] == account["id"]
    assert copernica.post("/v1/auth/email-change/undo", json={"token": undo}).status_code == 200
    assert identities(conn) == [("linkedin", "anna-li")]
    # The thief's Google now signs in to nothing of Anna's.
    again = finish(copernica, social, "google")
    assert again.status_code == 200 and again.get_json()["user"]["id"] != account["id"]
    social.next_person("linkedin", "anna-li", email_verified=True, **ANNA)
    assert finish(copernica, social, "linkedin").get_json()["user"]["id"] == account["id"]


# --- racing first sign-ins --------------------------------------------------------------


def test_racing_first_sign_ins_of_one_new_address_make_one_record(
    database_url, committing_db, provider
):
    from concurrent.futures import ThreadPoolExecutor

    from identity import create_app
    from identity.db import Database
    from tests.settings import CHEAP

    provider.reset()
    settings = {k.removeprefix("IDENTITY_"): v for k, v in provider.settings().items()}
    database = Database(database_url, min_size=1, max_size=12, timeout=5.0)
    database.open()
    try:
        app = create_app({"DATABASE_URL": database_url, **CHEAP, **settings}, database=database)
        key = site_key_for(committing_db, "copernica.com", redirect_uris=[REDIRECT])
        site = app.test_client()
        site.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        backs = []
        for i in range(12):  # one person, signing in at two providers, many tabs at once
            shape = ("google", "linkedin")[i % 2]
            provider.next_person(shape, f"{shape}-anna", email_verified=True, **ANNA)
            back = provider.authorize(begin(site, shape)["authorization_url"])
            backs.append((shape, back))

        def callback(flow):
            shape, back = flow
            client = app.test_client()
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
            answer = client.post(f"/v1/auth/social/{shape}/callback", json={**back, **BROWSER})
            return answer.status_code, (answer.get_json().get("user") or {}).get("id")

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(callback, backs))
        assert {status for status, _ in answers} == {200}, answers
        assert len({user_id for _, user_id in answers}) == 1
        users = committing_db.execute("select count(*) from users").fetchone()["count"]
        assert users == 1
        joined = committing_db.execute(
            "select provider from social_identities order by 1"
        ).fetchall()
        assert [row["provider"] for row in joined] == ["google", "linkedin"]
        # One notice per join, not one per tab.
        notices = committing_db.execute(
            "select count(*) from outbox where template = 'social_joined'"
        ).fetchone()["count"]
        assert notices == 2
    finally:
        database.close()
        committing_db.execute("delete from social_flows")
