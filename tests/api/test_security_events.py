"""Security events through the HTTP API: one JSON line with an `event` for each
authentication decision and sensitive change, saying who and from where, and never an
address, a password, a token or a code (docs/events.md)."""

import base64
import json
import time
import uuid

import pytest

from identity.api.guards import SERVICES
from identity.security.access_tokens import issue_access_token
from tests.api.problems import assert_problem
from tests.api.test_accounts import BROWSER, OTHER_PASSWORD, PASSWORD, as_user, login, sign_up
from tests.outbox import mailed
from tests.sites import site_key_for

ADDRESS = "zebedee.quux-7731@example.org"
NEW_ADDRESS = "quux.zebedee-1377@example.net"
IP = BROWSER["client_ip"]


class Events:
    """The JSON lines written to stderr since the last look, and what none may hold."""

    def __init__(self, capsys):
        self.capsys = capsys
        self.secrets = {ADDRESS, ADDRESS.split("@")[0], NEW_ADDRESS, PASSWORD, OTHER_PASSWORD}

    def keep_out(self, *secrets: str) -> None:
        self.secrets.update(secrets)

    def __call__(self, *names: str) -> list[dict]:
        """The events since the last call (of `names`, when given), each line searched
        whole for every secret seen so far."""
        lines = [line for line in self.capsys.readouterr().err.splitlines() if line]
        for line in lines:
            for secret in self.secrets:
                assert secret not in line, f"{secret!r} in {line}"
        found = [event for event in map(json.loads, lines) if "event" in event]
        return [event for event in found if not names or event["event"] in names]

    def one(self, name: str) -> dict:
        (event,) = self(name)
        assert event["logger"] == "identity.security" and event["message"] == name
        return event


@pytest.fixture
def events(capsys):
    return Events(capsys)


def _tokens(answer, events: Events) -> dict:
    """A login's or refresh's tokens, kept out of every line from now on."""
    tokens = answer.get_json()
    events.keep_out(tokens["access_token"], tokens["refresh_token"])
    return tokens


def _sid(access_token: str) -> str:
    """The sign-in an access token belongs to."""
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=="))["sid"]


def _mailed_token(conn, to: str, template: str, events: Events) -> str:
    token = mailed(conn, to, template)["token"]
    events.keep_out(token)
    return token


def test_registration_and_login_say_who_from_where_under_the_request_id(
    site, site_key, conn, events
):
    events.keep_out(site_key)
    user = sign_up(site, conn, ADDRESS)
    asked, proven = events("registration.requested", "registration.proven")
    assert asked["user_id"] == proven["user_id"] == user["id"]
    assert proven["contested"] is False
    for event in (asked, proven):
        assert event["site"] == "copernica.com" and event["key_prefix"] == site_key[:11]

    wrong = login(site, ADDRESS, OTHER_PASSWORD)
    assert_problem(wrong, 401)
    unknown = login(site, "nobody-" + ADDRESS, PASSWORD)
    assert_problem(unknown, 401)
    failed, no_account = events("login.failed")
    assert failed["user_id"] == user["id"] and no_account["user_id"] is None
    assert failed["request_id"] == wrong.headers["X-Request-ID"]

    good = site.post(
        "/v1/auth/login",
        json={"email": ADDRESS, "password": PASSWORD, **BROWSER},
        headers={"X-Request-ID": "req-login-1"},
    )
    tokens = _tokens(good, events)
    succeeded = events.one("login.succeeded")
    assert succeeded == {
        "time": succeeded["time"],
        "level": "info",
        "logger": "identity.security",
        "message": "login.succeeded",
        "request_id": "req-login-1",
        "event": "login.succeeded",
        "site": "copernica.com",
        "key_prefix": site_key[:11],
        "user_id": user["id"],
        "session_id": _sid(tokens["access_token"]),
        "client_ip": IP,
    }


def test_failures_past_the_limit_are_throttled(site, conn, events):
    user = sign_up(site, conn, ADDRESS)
    statuses = [login(site, ADDRESS, OTHER_PASSWORD).status_code for _ in range(7)]
    assert statuses[-1] == 429
    throttled = events("login.throttled")
    assert throttled and all(e["user_id"] == user["id"] for e in throttled)
    assert {e["client_ip"] for e in throttled} == {IP}


def test_refresh_reuse_ends_the_family_and_logout_ends_a_sign_in(site, conn, app, events):
    user = sign_up(site, conn, ADDRESS)
    first = _tokens(login(site, ADDRESS), events)
    _tokens(site.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}), events)
    session_id = _sid(first["access_token"])
    again = site.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_problem(again, 401)
    reused = events.one("refresh_token.reused")
    assert reused["family_ended"] is True
    assert (reused["user_id"], reused["session_id"]) == (user["id"], session_id)
    assert reused["site"] == "copernica.com"

    assert_problem(site.post("/v1/auth/refresh", json={"refresh_token": "idrt_nothing"}), 401)
    assert events.one("refresh_token.refused")["user_id"] is None

    third = _tokens(login(site, ADDRESS), events)
    logout = site.post("/v1/auth/logout", json={"refresh_token": third["refresh_token"]})
    assert logout.status_code == 204
    out = events.one("session.logged_out")
    assert (out["user_id"], out["session_id"]) == (user["id"], _sid(third["access_token"]))
    # An unknown token ends nothing, and says nothing.
    site.post("/v1/auth/logout", json={"refresh_token": "idrt_nothing"})
    assert events("session.logged_out") == []


def test_the_persons_own_changes(site, conn, app, events):
    user = sign_up(site, conn, ADDRESS)
    here, elsewhere = _tokens(login(site, ADDRESS), events), _tokens(login(site, ADDRESS), events)
    me = as_user(app, here["access_token"])
    mine, other = _sid(here["access_token"]), _sid(elsewhere["access_token"])

    assert me.delete(f"/v1/me/sessions/{other}").status_code == 204
    revoked = events.one("session.revoked")
    assert (revoked["session_id"], revoked["ended_session_id"]) == (mine, other)
    assert revoked["user_id"] == user["id"] and revoked["key_prefix"] is None
    assert revoked["site"] == "copernica.com"

    wrong = {**BROWSER, "current_password": "nope", "new_password": OTHER_PASSWORD}
    assert_problem(me.put("/v1/me/password", json=wrong), 422)
    failed = events.one("reauthentication.failed")
    assert failed["reason"] == "password" and failed["session_id"] == mine
    right = {**BROWSER, "current_password": PASSWORD, "new_password": OTHER_PASSWORD}
    assert me.put("/v1/me/password", json=right).status_code == 204
    changed = events.one("password.changed")
    assert (changed["user_id"], changed["session_id"], changed["client_ip"]) == (
        user["id"],
        mine,
        IP,
    )

    change = {**BROWSER, "new_email": NEW_ADDRESS, "current_password": OTHER_PASSWORD}
    assert me.post("/v1/me/email", json=change).status_code == 202
    assert events.one("email_change.requested")["user_id"] == user["id"]
    token = _mailed_token(conn, NEW_ADDRESS, "email_change_confirm", events)
    assert site.post("/v1/auth/verify-email", json={"token": token}).status_code == 200
    moved = events.one("email.changed")
    assert (moved["user_id"], moved["session_id"], moved["site"]) == (
        user["id"],
        mine,
        "copernica.com",
    )


def test_a_reset_asked_for_and_done(site, conn, events):
    user = sign_up(site, conn, ADDRESS)
    for address in (ADDRESS, "nobody-" + ADDRESS):
        asked = site.post("/v1/auth/password-reset", json={**BROWSER, "email": address})
        assert asked.status_code == 202
    known, unknown = events("password_reset.requested")
    assert (known["user_id"], unknown["user_id"]) == (user["id"], None)
    token = _mailed_token(conn, ADDRESS, "password_reset", events)
    confirm = {**BROWSER, "token": token, "new_password": OTHER_PASSWORD}
    assert site.post("/v1/auth/password-reset/confirm", json=confirm).status_code == 204
    done = events.one("password_reset.completed")
    assert (done["user_id"], done["client_ip"]) == (user["id"], IP)


def test_a_refused_site_key_shows_its_prefix_only_and_why(app, conn, site_key, events):
    narrow = site_key_for(conn, "smtpeter.com", ["users:read"])
    revoked = site_key_for(conn, "mailerq.com", ["auth"])
    conn.execute("update site_keys set revoked_at = now() where key_prefix = %s", (revoked[:11],))
    refresh = "idrt_" + "Q" * 43
    events.keep_out(site_key, narrow, revoked, refresh, narrow[11:], revoked[11:])
    events()
    client = app.test_client()
    tried = {
        None: "missing",
        "Basic " + site_key: "missing",
        "Bearer " + refresh: "malformed",
        "Bearer " + revoked: "unknown",
        "Bearer idsk_" + "x" * 43: "unknown",
        "Bearer " + narrow: "scope",
    }
    for authorization, reason in tried.items():
        headers = {"Authorization": authorization} if authorization else {}
        body = {"email": ADDRESS, "password": PASSWORD, **BROWSER}
        answer = client.post("/v1/auth/login", json=body, headers=headers)
        assert answer.status_code == (403 if reason == "scope" else 401)
        refused = events.one("site_key.refused")
        assert refused["reason"] == reason, authorization
        assert refused["request_id"] == answer.headers["X-Request-ID"]
        # No site vouches for a browser: the address is the request's own.
        assert refused["client_ip"] == "127.0.0.1"
        assert refused["site"] is None and refused["user_id"] is None
        shown = authorization.split()[1][:11] if reason in ("unknown", "scope") else None
        assert refused["key_prefix"] == shown


def test_a_refused_access_token_says_why(site, conn, app, events):
    user = sign_up(site, conn, ADDRESS)
    tokens = _tokens(login(site, ADDRESS), events)
    expired, _ = issue_access_token(
        app.extensions[SERVICES].key_ring,
        user_id=user["id"],
        site="copernica.com",
        issuer=app.config["IDENTITY"]["PUBLIC_URL"],
        now=time.time() - 3600,
        extra={"sid": _sid(tokens["access_token"])},
    )
    forged = tokens["access_token"][:-4] + "AAAA"
    events.keep_out(expired, forged)
    site.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    events()
    tried = [
        (app.test_client(), "missing"),
        (as_user(app, forged), "invalid"),
        (as_user(app, str(uuid.uuid4())), "invalid"),
        (as_user(app, expired), "expired"),
        (as_user(app, tokens["access_token"]), "sign_in_ended"),
    ]
    for client, reason in tried:
        assert_problem(client.get("/v1/me"), 401)
        refused = events.one("access_token.refused")
        assert refused["reason"] == reason
        assert refused["client_ip"] == "127.0.0.1" and refused["user_id"] is None
