"""The second factor through the HTTP API: a TOTP secret set up after the password, turned
on with a first code (computed here with pyotp, as the person's app would), logins that
then need a code (or a recovery code), the mfa_token's limits, the access token's `amr`,
and a stranger who cannot keep an owner with a code out."""

import base64
import json
import time
import urllib.parse

import pyotp
import pytest

from tests.api.problems import assert_problem
from tests.api.test_accounts import (
    BROWSER,
    OTHER_PASSWORD,
    PASSWORD,
    as_user,
    login,
    mails,
    sign_up,
)
from tests.outbox import mailed
from tests.sites import site_key_for

STRANGER = {"client_ip": "198.51.100.66", "user_agent": "curl"}


def claims(access_token: str) -> dict:
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def set_up(me, password=PASSWORD) -> pyotp.TOTP:
    """The person's authenticator app, given the secret the service set up."""
    answer = me.post("/v1/me/second-factor/totp", json={"current_password": password, **BROWSER})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return pyotp.TOTP(answer.get_json()["secret"])


def turn_on(me, app_: pyotp.TOTP) -> list[str]:
    answer = me.post("/v1/me/second-factor/totp/confirm", json={"code": app_.now(), **BROWSER})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()["recovery_codes"]


def next_code(app_: pyotp.TOTP, conn) -> str:
    """A code the service has not taken yet. A code is taken once, and none of its time
    step or one before after it; a test that signs in more often than every 30 s lets the
    service forget which step it took last, as if the app had moved on."""
    conn.execute("update second_factors set last_step = null")
    return app_.now()


def second_step(site, mfa_token, **proof):
    return site.post(
        "/v1/auth/login/second-factor", json={"mfa_token": mfa_token, **proof, **BROWSER}
    )


@pytest.fixture
def owner(site, conn, app):
    """Anna, signed in, with her second factor on: (her client, her app, recovery codes)."""
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    app_ = set_up(me)
    return me, app_, turn_on(me, app_)


def test_set_up_after_the_password_and_on_after_a_first_code(site, conn, app):
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    assert me.get("/v1/me/second-factor").get_json() == {
        "totp": False,
        "since": None,
        "recovery_codes_left": 0,
    }
    wrong = me.post("/v1/me/second-factor/totp", json={"current_password": "x", **BROWSER})
    assert_problem(wrong, 422, "current_password")
    answer = me.post("/v1/me/second-factor/totp", json={"current_password": PASSWORD, **BROWSER})
    setup = answer.get_json()
    uri = urllib.parse.urlsplit(setup["otpauth_uri"])
    query = urllib.parse.parse_qs(uri.query)
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert urllib.parse.unquote(uri.path) == "/copernica.com:anna@example.com"  # no brand set
    assert query == {"secret": [setup["secret"]], "issuer": ["copernica.com"]}
    stored = conn.execute("select secret_sealed from second_factors").fetchone()["secret_sealed"]
    assert setup["secret"].encode() not in bytes(stored)  # sealed at rest
    # Not on before the first code.
    assert "access_token" in login(site).get_json()
    app_ = pyotp.TOTP(setup["secret"])
    not_the_code = f"{(int(app_.now()) + 1) % 10**6:06d}"
    refused = me.post("/v1/me/second-factor/totp/confirm", json={"code": not_the_code})
    assert_problem(refused, 422, "code")
    codes = turn_on(me, app_)
    assert len(codes) == len(set(codes)) == 10
    stored = {bytes(r["code_hash"]) for r in conn.execute("select code_hash from recovery_codes")}
    assert len(stored) == 10 and not any(c.encode() in h for c in codes for h in stored)
    status = me.get("/v1/me/second-factor").get_json()
    assert status["totp"] and status["since"] and status["recovery_codes_left"] == 10
    # On: setting up another one is refused until this one is removed.
    again = me.post("/v1/me/second-factor/totp", json={"current_password": PASSWORD, **BROWSER})
    assert_problem(again, 409)


def test_the_issuer_is_the_brand_of_the_site_signed_in_through(app, conn):
    key = site_key_for(conn, "smtpeter.com", brand="SMTPeter")
    site = app.test_client()
    site.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    answer = me.post("/v1/me/second-factor/totp", json={"current_password": PASSWORD, **BROWSER})
    uri = answer.get_json()["otpauth_uri"]
    assert uri.startswith("otpauth://totp/SMTPeter:anna%40example.com?")
    assert "issuer=SMTPeter" in uri


def test_a_login_then_needs_a_code_and_the_token_says_how(site, conn, owner):
    _, app_, codes = owner
    first = login(site)
    assert first.status_code == 200
    answer = first.get_json()
    assert answer.keys() == {"mfa_required", "mfa_token"} and answer["mfa_required"] is True
    # The code the confirmation took is not taken again; the next one is.
    assert_problem(second_step(site, answer["mfa_token"], code=app_.now()), 401)
    later = app_.at(time.time() + app_.interval)
    tokens = second_step(site, answer["mfa_token"], code=later).get_json()
    assert claims(tokens["access_token"])["amr"] == ["pwd", "otp", "mfa"]
    assert tokens["user"]["email"] == "anna@example.com"
    refreshed = site.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert claims(refreshed.get_json()["access_token"])["amr"] == ["pwd", "otp", "mfa"]
    # Spent with its sign-in: the mfa_token works once.
    assert_problem(second_step(site, answer["mfa_token"], code=next_code(app_, conn)), 401)
    # A recovery code, in its field or in `code`, works once each.
    with_recovery = second_step(site, login(site).get_json()["mfa_token"], recovery_code=codes[0])
    assert claims(with_recovery.get_json()["access_token"])["amr"] == ["pwd", "mfa"]
    typed = codes[1].upper().replace("-", " ")
    assert second_step(site, login(site).get_json()["mfa_token"], code=typed).status_code == 200
    assert_problem(second_step(site, login(site).get_json()["mfa_token"], code=codes[0]), 401)
    outcomes = [
        row["outcome"]
        for row in conn.execute("select outcome from login_attempts order by id").fetchall()
    ]
    assert outcomes.count("second_factor_required") == 4 and outcomes.count("wrong_code") == 2


def test_a_wrong_password_answers_the_same_with_a_second_factor_or_without(site, conn, app, owner):
    sign_up(site, conn, "bob@example.com")
    answers = [
        login(site, email, "not the password")
        for email in ("anna@example.com", "bob@example.com", "nobody@example.com")
    ]
    assert {a.status_code for a in answers} == {401}
    assert len({a.get_data() for a in answers}) == 1
    assert len({tuple(sorted(set(a.headers.keys()) - {"X-Request-ID"})) for a in answers}) == 1
    # ... with a code sent beside it, too.
    with_code = login(site, "anna@example.com", "not the password", **BROWSER | {"code": "1"})
    assert with_code.get_data() == answers[0].get_data()


def test_the_mfa_token_is_the_sites_short_lived_and_dies_at_the_fifth_wrong_code(
    site, conn, app, owner
):
    _, app_, _ = owner
    mfa_token = login(site).get_json()["mfa_token"]
    other = app.test_client()
    other.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {site_key_for(conn, 'smtpeter.com')}"
    assert_problem(second_step(other, mfa_token, code=next_code(app_, conn)), 401)
    for n in range(5):
        wrong = second_step(site, mfa_token, code=f"{n:06d}")
        assert_problem(wrong, 401)
    assert_problem(second_step(site, mfa_token, code=next_code(app_, conn)), 401)
    conn.execute("delete from login_throttles")
    expired = login(site).get_json()["mfa_token"]
    conn.execute("update login_challenges set expires_at = now() - interval '1 second'")
    assert_problem(second_step(site, expired, code=next_code(app_, conn)), 401)
    # Stored hashed, never in clear.
    assert not conn.execute(
        "select 1 from login_challenges where encode(token_hash, 'escape') like %s",
        (f"%{mfa_token}%",),
    ).fetchone()


def test_wrong_codes_are_counted_and_past_a_few_the_next_waits(site, conn, owner):
    statuses = []
    for n in range(8):
        mfa_token = login(site, **BROWSER | {"client_ip": f"192.0.2.{n}"}).get_json()["mfa_token"]
        statuses.append(second_step(site, mfa_token, code=f"{n:06d}").status_code)
    assert statuses[:5] == [401] * 5 and 429 in statuses[5:]
    assert_problem(second_step(site, login(site).get_json()["mfa_token"], code="000000"), 429)


def test_removing_it_needs_the_password_and_a_code(site, conn, owner):
    me, app_, codes = owner
    body = {"current_password": PASSWORD, **BROWSER}
    assert_problem(me.delete("/v1/me/second-factor/totp", json=body), 422, "code")
    wrong = {"current_password": "nope", "code": next_code(app_, conn), **BROWSER}
    assert_problem(me.delete("/v1/me/second-factor/totp", json=wrong), 422, "current_password")
    assert_problem(
        me.delete("/v1/me/second-factor/totp", json=body | {"code": "000000"}), 422, "code"
    )
    removed = me.delete("/v1/me/second-factor/totp", json=body | {"recovery_code": codes[3]})
    assert removed.status_code == 204, removed.get_data(as_text=True)
    assert "access_token" in login(site).get_json()
    assert conn.execute("select count(*) as n from recovery_codes").fetchone()["n"] == 0
    assert_problem(me.delete("/v1/me/second-factor/totp", json=body), 404)


def test_a_password_reset_keeps_the_second_factor(site, conn, owner):
    site.post("/v1/auth/password-reset", json={"email": "anna@example.com", **BROWSER})
    token = mailed(conn, "anna@example.com", "password_reset")["token"]
    confirm = {"token": token, "new_password": OTHER_PASSWORD, **BROWSER}
    assert site.post("/v1/auth/password-reset/confirm", json=confirm).status_code == 204
    assert login(site, password=OTHER_PASSWORD).get_json()["mfa_required"] is True


def test_a_stranger_cannot_keep_an_owner_with_a_code_out(site, conn, owner):
    """Item 5 of issue 21: a stranger's wrong passwords, one each time a wait ends, keep the
    account's logins waiting from every network the owner has not used. A login that
    brings the code with the password still signs in; what else such a login sends fails
    as a wrong password does, so the stranger learns nothing more and tests passwords no
    faster."""
    _, app_, _ = owner
    for n in range(12):  # from many networks, past the account's free failures
        login(site, password=f"wrong {n}", client_ip=f"198.51.100.{n}", user_agent="curl")
    owner_elsewhere = {"client_ip": "203.0.113.200", "user_agent": "Mozilla/5.0"}
    waiting = login(site, **owner_elsewhere)
    assert_problem(waiting, 429)
    # The stranger, guessing with a code beside the password: the same 429 as without.
    guess = login(site, password="wrong again", **STRANGER | {"code": "123456"})
    assert_problem(guess, 429)
    assert guess.get_json()["detail"] == waiting.get_json()["detail"]
    # A right password with a wrong code: the same.
    assert_problem(login(site, **owner_elsewhere | {"code": "000000"}), 429)
    # The owner, with the app's code: signed in, as a second factor's sign-in.
    code = {"code": next_code(app_, conn)}
    tokens = login(site, **owner_elsewhere | code)
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    assert claims(tokens.get_json()["access_token"])["amr"] == ["pwd", "otp", "mfa"]
    outcomes = [r["outcome"] for r in conn.execute("select outcome from login_attempts").fetchall()]
    assert "wrong_code" in outcomes and outcomes[-1] == "success"


def test_a_code_beside_the_password_of_an_account_without_one_is_not_needed(site, conn):
    sign_up(site, conn)
    answer = login(site, **BROWSER | {"code": "123456"})
    assert claims(answer.get_json()["access_token"])["amr"] == ["pwd"]


def test_a_code_with_the_password_signs_in_at_once(site, conn, owner):
    _, app_, _ = owner
    assert login(site, **BROWSER | {"code": "000000"}).status_code == 401
    answer = login(site, **BROWSER | {"code": next_code(app_, conn)})
    assert claims(answer.get_json()["access_token"])["amr"] == ["pwd", "otp", "mfa"]


def test_ending_the_other_sign_ins_needs_the_password_and_the_code(site, conn, app, owner):
    me, app_, _ = owner
    mfa_token = login(site, **STRANGER).get_json()["mfa_token"]
    other = second_step(site, mfa_token, code=next_code(app_, conn)).get_json()
    body = {"current_password": PASSWORD, **BROWSER}
    assert_problem(me.delete("/v1/me/sessions", json=body), 422, "code")
    assert_problem(me.delete("/v1/me/sessions", json=body | {"current_password": "x"}), 422)
    ended = me.delete("/v1/me/sessions", json=body | {"code": next_code(app_, conn)})
    assert ended.status_code == 204, ended.get_data(as_text=True)
    assert me.get("/v1/me").status_code == 200  # the calling sign-in stays
    assert_problem(as_user(app, other["access_token"]).get("/v1/me"), 401)


def test_without_a_second_factor_the_password_is_enough(site, conn, app):
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    other = as_user(app, login(site, **STRANGER).get_json()["access_token"])
    assert_problem(me.delete("/v1/me/sessions", json=BROWSER), 422, "current_password")
    ended = me.delete("/v1/me/sessions", json={"current_password": PASSWORD, **BROWSER})
    assert ended.status_code == 204
    assert_problem(other.get("/v1/me"), 401)


def test_wrong_current_passwords_count_against_the_sign_in_wherever_they_are_sent(site, conn, app):
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    wrong = {"current_password": "a guess", **BROWSER}
    statuses = [
        me.delete("/v1/me/sessions", json=wrong).status_code,
        me.post("/v1/me/email", json=wrong | {"new_email": "x@example.com"}).status_code,
        me.post("/v1/me/second-factor/totp", json=wrong).status_code,
        me.put("/v1/me/password", json=wrong | {"new_password": OTHER_PASSWORD}).status_code,
        me.delete("/v1/me/sessions", json=wrong).status_code,
        me.delete("/v1/me/sessions", json=wrong).status_code,
        me.delete("/v1/me/sessions", json=wrong).status_code,
    ]
    assert statuses[:5] == [422] * 5 and statuses[-1] == 429
    assert mails(conn, "x@example.com") == []


def test_a_change_of_address_needs_the_code_when_a_second_factor_is_on(site, conn, owner):
    me, app_, _ = owner
    body = {"new_email": "anna@work.example", "current_password": PASSWORD, **BROWSER}
    assert_problem(me.post("/v1/me/email", json=body), 422, "code")
    asked = me.post("/v1/me/email", json=body | {"code": next_code(app_, conn)})
    assert asked.status_code == 202
    assert mails(conn, "anna@work.example") == ["email_change_confirm"]


def test_wrong_first_codes_are_counted_against_the_sign_in(site, conn, app):
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    app_ = set_up(me)
    not_the_code = f"{(int(app_.now()) + 500_000) % 10**6:06d}"
    statuses = [
        me.post("/v1/me/second-factor/totp/confirm", json={"code": not_the_code}).status_code
        for _ in range(7)
    ]
    assert statuses[:5] == [422] * 5 and statuses[-1] == 429
