"""Accounts through the HTTP API: register, prove, claim, log in, refresh, reset, /v1/me."""

import base64
import itertools
import json
import urllib.parse
import uuid

import pytest

from identity.services.mailed_tokens import MAILS_AN_HOUR_FROM_NEW_NETWORKS
from tests.api.problems import assert_problem
from tests.outbox import mailed

PASSWORD = "plum tractor quietly 83 violins"
OTHER_PASSWORD = "seven amber kites over Delft"
BROWSER = {"client_ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11; Test)"}


def mails(conn, to: str) -> list[str]:
    rows = conn.execute("select template from outbox where recipient = %s order by id", (to,))
    return [row["template"] for row in rows]


def register(site, email="anna@example.com", password=PASSWORD, **fields):
    body = {"email": email, "password": password, **BROWSER, **fields}
    return site.post("/v1/auth/register", json=body)


def sign_up(site, conn, email="anna@example.com", password=PASSWORD, **fields) -> dict:
    assert register(site, email, password, **fields).status_code == 202
    verified = site.post(
        "/v1/auth/verify-email", json={"token": mailed(conn, email, "verify_email")["token"]}
    )
    assert verified.status_code == 200, verified.get_data(as_text=True)
    return verified.get_json()


def login(site, email="anna@example.com", password=PASSWORD, **browser):
    return site.post(
        "/v1/auth/login", json={"email": email, "password": password, **(browser or BROWSER)}
    )


def as_user(app, access_token):
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {access_token}"
    return client


# --- register and prove ---------------------------------------------------------------------


def test_registration_answers_the_same_whatever_the_address(site, conn):
    site.post("/v1/profiles", json={"email": "minimal@example.com", "source": "webinar"})
    sign_up(site, conn, "taken@example.com")
    answers = [
        register(site, email)
        for email in ("new@example.com", "minimal@example.com", "taken@example.com")
    ]
    assert {a.status_code for a in answers} == {202}
    assert len({a.get_data() for a in answers}) == 1
    assert len({tuple(sorted(set(a.headers.keys()) - {"X-Request-ID"})) for a in answers}) == 1
    assert mails(conn, "new@example.com") == ["verify_email"]
    assert mails(conn, "minimal@example.com") == ["verify_email"]
    assert mails(conn, "taken@example.com") == ["verify_email", "registration_attempt"]


def test_a_new_address_becomes_an_account_once_proven(site, conn, app):
    assert login(site).status_code == 401  # not before
    register(site, first_name="Anna", language="nl")
    token = mailed(conn, "anna@example.com", "verify_email")
    assert token["language"] == "nl"
    assert login(site).status_code == 401  # not before the proof either
    user = site.post("/v1/auth/verify-email", json={"token": token["token"]}).get_json()
    assert user["status"] == "registered" and user["registered_at"]
    assert user["first_name"] == "Anna" and user["language"] == "nl"
    assert user["field_sources"]["first_name"]["source"] == "person"
    tokens = login(site).get_json()
    assert tokens["user"]["id"] == user["id"] and tokens["expires_in"] > 800
    me = as_user(app, tokens["access_token"]).get("/v1/me")
    assert me.status_code == 200 and me.get_json()["email"] == "anna@example.com"


def test_a_claim_keeps_earlier_data_the_persons_own_fields_winning(site, conn):
    made = site.post(
        "/v1/profiles",
        json={
            "email": "anna@example.com",
            "source": "webinar",
            "first_name": "Ann",
            "phone": "+31201234567",
        },
    ).get_json()
    register(site, first_name="Anna", last_name="Berg")
    # Before the proof, the record shows nothing of the registration.
    before = site.get(f"/v1/users/{made['id']}").get_json()
    assert before["first_name"] == "Ann" and before["last_name"] is None
    token = mailed(conn, "anna@example.com", "verify_email")["token"]
    after = site.post("/v1/auth/verify-email", json={"token": token}).get_json()
    assert after["id"] == made["id"]
    assert (after["first_name"], after["last_name"], after["phone"]) == (
        "Anna",
        "Berg",
        "+31201234567",
    )
    assert after["field_sources"]["first_name"]["source"] == "person"
    assert after["field_sources"]["phone"]["source"] == "webinar"


def test_a_claim_ends_every_earlier_sign_in_and_pending_change(site, conn, app):
    sign_up(site, conn)
    tokens = login(site).get_json()
    user = as_user(app, tokens["access_token"])
    assert (
        user.post(
            "/v1/me/email",
            json={**BROWSER, "current_password": PASSWORD, "new_email": "anna@new.example"},
        ).status_code
        == 202
    )
    change = mailed(conn, "anna@new.example", "email_change_confirm")["token"]
    # A second registration of the same (verified) address changes nothing...
    register(site, password=OTHER_PASSWORD)
    assert login(site).status_code == 200
    # ...but an unverified account claimed by its owner voids whatever came before.
    conn.execute("update users set email_verified_at = null where email = 'anna@example.com'")
    conn.execute("delete from account_tokens where purpose = 'verify_email'")
    register(site, password=OTHER_PASSWORD)
    token = mailed(conn, "anna@example.com", "verify_email")["token"]
    assert site.post("/v1/auth/verify-email", json={"token": token}).status_code == 200
    assert_problem(user.get("/v1/me"), 401)
    assert_problem(
        site.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401
    )
    assert_problem(site.post("/v1/auth/verify-email", json={"token": change}), 422)
    assert login(site, password=PASSWORD).status_code == 401
    assert login(site, password=OTHER_PASSWORD).status_code == 200


def _reset_with(site, conn, template, password=PASSWORD):
    token = mailed(conn, "anna@example.com", template)["token"]
    confirm = {"token": token, "new_password": password, **BROWSER}
    assert site.post("/v1/auth/password-reset/confirm", json=confirm).status_code == 204


@pytest.mark.parametrize("clicked", ["the stranger's link", "the owner's link"])
@pytest.mark.parametrize("first", ["the stranger", "the owner"])
def test_competing_registrations_give_nobody_a_password(site, conn, first, clicked):
    """The pre-hijack attack: a stranger registers the owner's address too (before or
    after the owner), hoping the owner clicks the stranger's link, which carries the
    stranger's password and name. Whichever link is clicked, the address is proven, no
    registration's password or fields are taken, and the owner chooses one by mail."""
    links = {}
    for who in (
        ("the stranger", "the owner") if first == "the stranger" else ("the owner", "the stranger")
    ):
        if who == "the stranger":
            register(site, password=OTHER_PASSWORD, first_name="Mallory")
        else:
            register(site, first_name="Anna")
        links[who] = mailed(conn, "anna@example.com", "verify_email")["token"]
    proven = site.post("/v1/auth/verify-email", json={"token": links[clicked.split("'")[0]]})
    assert proven.status_code == 200 and proven.get_json()["status"] == "registered"
    assert proven.get_json()["first_name"] is None
    assert login(site, password=OTHER_PASSWORD).status_code == 401
    assert login(site, password=PASSWORD).status_code == 401
    for token in links.values():  # every other link is void now
        assert_problem(site.post("/v1/auth/verify-email", json={"token": token}), 422)
    _reset_with(site, conn, "choose_password")
    assert login(site, password=PASSWORD).status_code == 200


def test_a_stranger_who_used_up_the_mails_still_cannot_set_the_password(site, conn):
    # From as many networks as it takes to spend the cap for networks not known.
    for n in range(MAILS_AN_HOUR_FROM_NEW_NETWORKS):
        register(site, password=OTHER_PASSWORD, client_ip=f"192.0.2.{n}")
    register(site)  # the owner's own: over the hourly limit, so no mail, but it counts
    assert mails(conn, "anna@example.com").count("verify_email") == 10
    newest = mailed(conn, "anna@example.com", "verify_email")["token"]  # the stranger's
    assert site.post("/v1/auth/verify-email", json={"token": newest}).status_code == 200
    assert login(site, password=OTHER_PASSWORD).status_code == 401
    _reset_with(site, conn, "choose_password")
    assert login(site).status_code == 200


def test_one_registration_sets_its_password_and_fields_marked_with_its_site(site, conn):
    proven = sign_up(site, conn, first_name="Anna")
    assert proven["first_name"] == "Anna"
    assert proven["field_sources"]["first_name"]["source"] == "person"
    assert "choose_password" not in mails(conn, "anna@example.com")
    assert login(site).status_code == 200


@pytest.mark.parametrize("token", ["", "x" * 201, "nope", "\x00", "a\ud800"])
def test_a_bad_verification_token_is_refused(site, token):
    response = site.post("/v1/auth/verify-email", json={"token": token})
    assert response.status_code == 422
    assert_problem(response, 422)


def test_a_verification_link_works_once(site, conn):
    register(site)
    token = mailed(conn, "anna@example.com", "verify_email")["token"]
    assert site.post("/v1/auth/verify-email", json={"token": token}).status_code == 200
    assert_problem(site.post("/v1/auth/verify-email", json={"token": token}), 422)


def test_a_site_that_sends_no_client_ip_where_limits_count_it_is_told_so(site, conn, app):
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    without_ip = {"user_agent": "Mozilla/5.0"}
    asked = {
        "register": register(site, "new@example.com", client_ip=None),
        "login": site.post(
            "/v1/auth/login", json={"email": "anna@example.com", "password": PASSWORD}
        ),
        "reset": site.post(
            "/v1/auth/password-reset", json={"email": "anna@example.com", **without_ip}
        ),
        "confirm": site.post(
            "/v1/auth/password-reset/confirm",
            json={"token": "x" * 40, "new_password": OTHER_PASSWORD, **without_ip},
        ),
        "change": me.put(
            "/v1/me/password", json={"current_password": PASSWORD, "new_password": OTHER_PASSWORD}
        ),
        "address": me.post(
            "/v1/me/email", json={"new_email": "anna@new.example", "current_password": PASSWORD}
        ),
    }
    for name, answer in asked.items():
        problem = assert_problem(answer, 422, "client_ip")
        assert "per client IP" in problem["errors"]["client_ip"][0], name
    assert mails(conn, "new@example.com") == [] and mails(conn, "anna@new.example") == []
    assert "password_reset" not in mails(conn, "anna@example.com")
    assert login(site).status_code == 200  # the password is as it was


def test_the_browser_is_taken_by_every_endpoint_a_site_calls_for_a_person(site, conn, app):
    sign_up(site, conn)
    tokens = login(site).get_json()
    me = as_user(app, tokens["access_token"])
    refreshed = site.post(
        "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"], **BROWSER}
    )
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    assert me.patch("/v1/me", json={"first_name": "Anne", **BROWSER}).status_code == 200
    settings = me.put("/v1/me/notifications", json={"smtpeter": {"invoice": []}, **BROWSER})
    assert settings.status_code == 200, settings.get_data(as_text=True)
    assert "client_ip" not in settings.get_json()
    assert me.get("/v1/me").get_json()["first_name"] == "Anne"
    logged_out = site.post(
        "/v1/auth/logout", json={"refresh_token": refreshed.get_json()["refresh_token"], **BROWSER}
    )
    assert logged_out.status_code == 204
    register(site, "bob@example.com")
    token = mailed(conn, "bob@example.com", "verify_email")["token"]
    proven = site.post("/v1/auth/verify-email", json={"token": token, **BROWSER})
    assert proven.status_code == 200, proven.get_data(as_text=True)


def test_a_client_ip_that_is_no_ip_address_is_refused_by_name(site, conn):
    sign_up(site, conn)
    for ip in ("203.0.113", "fe80::1%eth0", "localhost", ""):
        body = {"email": "anna@example.com", "client_ip": ip}
        assert_problem(site.post("/v1/auth/password-reset", json=body), 422, "client_ip")


def test_registrations_from_one_client_ip_are_limited_before_hashing(site, conn):
    browser = {"client_ip": "192.0.2.44", "user_agent": "x"}
    statuses = [register(site, f"person{n}@example.com", **browser).status_code for n in range(23)]
    assert statuses[:21] == [202] * 21 and statuses[-1] == 429
    assert int(register(site, "late@example.com", **browser).headers["Retry-After"]) >= 1


def test_registering_again_with_the_same_password_is_not_a_contest(site, conn):
    register(site, first_name="Anna")
    register(site, first_name="Anna")  # "the mail did not come"
    first_link = conn.execute(
        "select mail_values from outbox where template = 'verify_email' order by id limit 1"
    ).fetchone()["mail_values"]["token"]
    assert_problem(site.post("/v1/auth/verify-email", json={"token": first_link}), 422)
    proven = site.post(
        "/v1/auth/verify-email",
        json={"token": mailed(conn, "anna@example.com", "verify_email")["token"]},
    )
    assert proven.status_code == 200 and proven.get_json()["first_name"] == "Anna"
    assert login(site).status_code == 200
    assert "choose_password" not in mails(conn, "anna@example.com")


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short", "8"),
        ("x" * 1001, "Use at most 1,000 characters."),
        ("x" * 100_000, "Use at most 1,000 characters."),  # past the schema's bound: alike
        ("", "Send the password."),
        ("password1", ""),
        ("anna.berg2026", ""),
        ("Copernica2026!", ""),
    ],
)
def test_a_weak_password_is_refused_with_a_reason(site, conn, password, why):
    response = register(site, "anna.berg@example.com", password, first_name="Anna")
    body = assert_problem(response, 422, "password")
    assert why in " ".join(body["errors"]["password"])
    assert mails(conn, "anna.berg@example.com") == []


def test_a_long_unicode_password_is_accepted_whole(site, conn, app):
    password = "ﬁve ｆｕｌｌｗｉｄｔｈ words 🦜 " + "ü" * 900
    sign_up(site, conn, password=password)
    assert login(site, password=password).status_code == 200
    # NFKC: the same password typed with plain letters is the same password.
    assert login(site, password="five fullwidth words 🦜 " + "ü" * 900).status_code == 200
    assert login(site, password=password[:-1]).status_code == 401


# --- log in -------------------------------------------------------------------------------------


def test_wrong_password_unknown_and_unproven_address_look_the_same(site, conn):
    sign_up(site, conn, "known@example.com")
    register(site, "unproven@example.com")
    answers = [
        login(site, "known@example.com", OTHER_PASSWORD),
        login(site, "nobody@example.com", PASSWORD),
        login(site, "unproven@example.com", PASSWORD),
    ]
    for answer in answers:
        assert_problem(answer, 401)
    assert len({a.get_data() for a in answers}) == 1
    assert len({tuple((k, v) for k, v in a.headers if k != "X-Request-ID") for a in answers}) == 1


def test_every_attempt_is_recorded_and_the_person_sees_their_own(site, conn, app):
    sign_up(site, conn)
    login(site, password=OTHER_PASSWORD)
    tokens = login(site).get_json()
    attempts = as_user(app, tokens["access_token"]).get("/v1/me/login-attempts").get_json()
    assert [a["outcome"] for a in attempts] == ["success", "wrong_password"]
    assert attempts[0]["client_ip"] == BROWSER["client_ip"]
    assert attempts[0]["user_agent"] == BROWSER["user_agent"]
    assert attempts[0]["site"] == "copernica.com"


def test_login_attempts_come_a_page_at_a_time_with_a_link_to_the_next(site, conn, app):
    sign_up(site, conn)
    for _ in range(3):
        login(site, password=OTHER_PASSWORD)
        login(site)
    me = as_user(app, login(site).get_json()["access_token"])
    every = me.get("/v1/me/login-attempts").get_json()
    assert len(every) == 7 and "Link" not in me.get("/v1/me/login-attempts").headers
    pages = _pages(me, "/v1/me/login-attempts?limit=3")
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [a["id"] for page in pages for a in page] == [a["id"] for a in every]
    assert [a["outcome"] for a in every] == ["success", *["success", "wrong_password"] * 3]
    # The last id of a page is the next one's cursor; the last page has no Link.
    again = me.get(f"/v1/me/login-attempts?limit=3&after={pages[0][-1]['id']}")
    assert again.get_json() == pages[1]


@pytest.mark.parametrize("listing", ["login-attempts", "sessions"])
@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "limit=x", "after=0", "after=abc", "page=2", "offset=3"]
)
def test_paged_lists_refuse_an_unknown_or_bad_query(site, conn, app, listing, query):
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    assert_problem(me.get(f"/v1/me/{listing}?{query}"), 422)


def test_repeated_failures_make_logins_wait_and_a_reset_lifts_it(site, conn):
    sign_up(site, conn)
    statuses = [login(site, password=OTHER_PASSWORD).status_code for _ in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[-1] == 429
    waiting = login(site)  # even the right password waits
    assert_problem(waiting, 429)
    assert int(waiting.headers["Retry-After"]) >= 1
    site.post("/v1/auth/password-reset", json={**BROWSER, "email": "anna@example.com"})
    token = mailed(conn, "anna@example.com", "password_reset")["token"]
    confirmed = site.post(
        "/v1/auth/password-reset/confirm",
        json={**BROWSER, "token": token, "new_password": OTHER_PASSWORD},
    )
    assert confirmed.status_code == 204
    assert login(site, password=OTHER_PASSWORD).status_code == 200


def test_failures_from_one_client_ip_over_many_accounts_make_it_wait(site):
    statuses = [
        login(site, f"p{n}@example.com", PASSWORD, client_ip="198.51.100.9").status_code
        for n in range(22)
    ]
    assert statuses[:20] == [401] * 20 and statuses[-1] == 429
    assert login(site, "p0@example.com", PASSWORD, client_ip="198.51.100.10").status_code == 401


# --- tokens -----------------------------------------------------------------------------------


def test_a_refresh_token_is_spent_on_use_and_its_reuse_ends_the_sign_in(site, conn, app):
    sign_up(site, conn)
    first = login(site).get_json()
    second = site.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    second = second.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert as_user(app, second["access_token"]).get("/v1/me").status_code == 200
    reused = site.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_problem(reused, 401)
    # The whole family is gone: the thief's copy and the owner's newer one alike.
    assert_problem(
        site.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}), 401
    )
    assert_problem(as_user(app, second["access_token"]).get("/v1/me"), 401)


def test_logout_ends_the_sign_in(site, conn, app):
    sign_up(site, conn)
    tokens = login(site).get_json()
    assert (
        site.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}).status_code
        == 204
    )
    assert_problem(as_user(app, tokens["access_token"]).get("/v1/me"), 401)
    assert site.post("/v1/auth/logout", json={"refresh_token": "idrt_unknown"}).status_code == 204


def _b64(data) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_forged_and_tampered_access_tokens_are_refused(site, conn, app):
    sign_up(site, conn)
    token = login(site).get_json()["access_token"]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged = [
        f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        f"{header}.{_b64(claims | {'sub': '00000000-0000-0000-0000-000000000000'})}.{signature}",
        f"{header}.{_b64(claims | {'exp': claims['exp'] + 3600})}.{signature}",
        token[:-2],
        token + "x",
        "not.a.jwt",
        "x" * 5000,
    ]
    for bad in forged:
        assert_problem(as_user(app, bad).get("/v1/me"), 401)


# --- passwords ----------------------------------------------------------------------------------


def test_a_password_change_needs_the_current_one_ends_other_sign_ins_and_tells(site, conn, app):
    sign_up(site, conn)
    here = login(site).get_json()
    elsewhere = login(site).get_json()
    me = as_user(app, here["access_token"])
    wrong = me.put(
        "/v1/me/password",
        json={**BROWSER, "current_password": "nope", "new_password": OTHER_PASSWORD},
    )
    assert_problem(wrong, 422, "current_password")
    same = me.put(
        "/v1/me/password", json={**BROWSER, "current_password": PASSWORD, "new_password": PASSWORD}
    )
    assert_problem(same, 422, "new_password")
    done = me.put(
        "/v1/me/password",
        json={**BROWSER, "current_password": PASSWORD, "new_password": OTHER_PASSWORD},
    )
    assert done.status_code == 204
    assert me.get("/v1/me").status_code == 200
    assert_problem(as_user(app, elsewhere["access_token"]).get("/v1/me"), 401)
    assert mails(conn, "anna@example.com")[-1] == "password_changed"
    assert login(site, password=OTHER_PASSWORD).status_code == 200


def test_none_of_the_last_five_passwords_comes_back(site, conn, app):
    sign_up(site, conn)
    passwords = [PASSWORD] + [f"harbour lantern number {n} glows" for n in range(5)]
    me = as_user(app, login(site).get_json()["access_token"])
    for current, new in itertools.pairwise(passwords):
        assert (
            me.put(
                "/v1/me/password",
                json={**BROWSER, "current_password": current, "new_password": new},
            ).status_code
            == 204
        )
    again = me.put(
        "/v1/me/password",
        json={**BROWSER, "current_password": passwords[-1], "new_password": passwords[2]},
    )
    assert_problem(again, 422, "new_password")
    oldest = me.put(
        "/v1/me/password",
        json={**BROWSER, "current_password": passwords[-1], "new_password": PASSWORD},
    )
    assert oldest.status_code == 204, oldest.get_json()  # six changes ago: out of the history


def test_a_password_reset_answers_the_same_and_mails_only_accounts(site, conn):
    sign_up(site, conn)
    answers = [
        site.post("/v1/auth/password-reset", json={**BROWSER, "email": email})
        for email in ("anna@example.com", "nobody@example.com")
    ]
    assert {a.status_code for a in answers} == {202}
    assert answers[0].get_data() == answers[1].get_data()
    assert mails(conn, "nobody@example.com") == []
    token = mailed(conn, "anna@example.com", "password_reset")["token"]
    body = {"token": token, "new_password": OTHER_PASSWORD, **BROWSER}
    assert site.post("/v1/auth/password-reset/confirm", json=body).status_code == 204
    assert_problem(site.post("/v1/auth/password-reset/confirm", json=body), 422, "token")
    assert mails(conn, "anna@example.com")[-1] == "password_changed"


# --- the signed-in person -----------------------------------------------------------------------


def test_the_persons_own_edits_win_and_are_marked_theirs(site, conn, app):
    sign_up(site, conn, first_name="Anna")
    me = as_user(app, login(site).get_json()["access_token"])
    edited = me.patch(
        "/v1/me",
        json={"last_name": "Berg", "first_name": None, "phone": "020 123 4567", "country": "NL"},
    )
    assert edited.status_code == 200, edited.get_data(as_text=True)
    body = edited.get_json()
    assert (body["first_name"], body["last_name"], body["phone"]) == (None, "Berg", "+31201234567")
    assert body["field_sources"]["last_name"]["source"] == "person"
    # A site's later submission fills blanks only: the person's value stays.
    site.post(
        "/v1/profiles", json={"email": "anna@example.com", "source": "event", "last_name": "Other"}
    )
    assert me.get("/v1/me").get_json()["last_name"] == "Berg"
    assert_problem(me.patch("/v1/me", json={"email": "x@example.com"}), 422, "email")


def test_an_address_change_happens_on_proof_and_refuses_a_taken_one(site, conn, app):
    sign_up(site, conn)
    site.post("/v1/profiles", json={"email": "taken@example.com", "source": "event"})
    me = as_user(app, login(site).get_json()["access_token"])
    taken = me.post(
        "/v1/me/email",
        json={**BROWSER, "current_password": PASSWORD, "new_email": "TAKEN@example.com"},
    )
    assert taken.status_code == 202
    assert "email_change_confirm" not in mails(conn, "taken@example.com")
    assert (
        me.post(
            "/v1/me/email",
            json={**BROWSER, "current_password": PASSWORD, "new_email": "anna@new.example"},
        ).status_code
        == 202
    )
    assert mails(conn, "anna@example.com")[-1] == "email_change_notice"
    assert me.get("/v1/me").get_json()["email"] == "anna@example.com"
    token = mailed(conn, "anna@new.example", "email_change_confirm")["token"]
    assert (
        site.post("/v1/auth/verify-email", json={"token": token}).get_json()["email"]
        == "anna@new.example"
    )
    assert login(site, "anna@new.example").status_code == 200


def test_sessions_are_listed_and_one_can_be_ended(site, conn, app):
    sign_up(site, conn)
    first = login(site).get_json()
    second = login(site, **{"client_ip": "192.0.2.1", "user_agent": "Phone"}).get_json()
    me = as_user(app, first["access_token"])
    sessions = me.get("/v1/me/sessions").get_json()
    assert {s["user_agent"] for s in sessions} == {BROWSER["user_agent"], "Phone"}
    phone = next(s for s in sessions if s["user_agent"] == "Phone")
    assert me.delete(f"/v1/me/sessions/{phone['id']}").status_code == 204
    assert_problem(as_user(app, second["access_token"]).get("/v1/me"), 401)
    assert_problem(me.delete(f"/v1/me/sessions/{phone['id']}"), 404)
    assert len(me.get("/v1/me/sessions").get_json()) == 1


def _pages(client, url: str) -> list[list[dict]]:
    """Every page of a paged list, following its `Link` headers from `url`."""
    pages = []
    while url:
        answer = client.get(url)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        pages.append(answer.get_json())
        link = answer.headers.get("Link")
        url = link and link.removeprefix("<").removesuffix('>; rel="next"')
    return pages


def test_sessions_come_a_page_at_a_time_and_using_one_does_not_move_it(site, conn, app):
    sign_up(site, conn)
    signed_in = [
        login(site, **BROWSER | {"user_agent": f"Browser {n}"}).get_json() for n in range(7)
    ]
    # A test's transaction keeps one now(): the sign-ins are spread over the last hour.
    conn.execute(
        "update sessions set created_at = now() - make_interval(mins => 9 - n),"
        " last_used_at = now() - make_interval(mins => 9 - n)"
        " from (select id, right(user_agent, 1)::int as n from sessions) s"
        " where s.id = sessions.id"
    )
    me = as_user(app, signed_in[0]["access_token"])
    every = me.get("/v1/me/sessions").get_json()
    assert [s["user_agent"] for s in every] == [f"Browser {n}" for n in reversed(range(7))]
    first = me.get("/v1/me/sessions?limit=3")
    assert [s["id"] for s in first.get_json()] == [s["id"] for s in every[:3]]
    # The oldest sign-in is used, and the one ending the first page ends, before the
    # next page is asked for: neither shows twice or goes missing.
    refreshed = site.post("/v1/auth/refresh", json={"refresh_token": signed_in[0]["refresh_token"]})
    assert refreshed.status_code == 200
    assert me.delete(f"/v1/me/sessions/{every[2]['id']}").status_code == 204
    pages = _pages(me, first.headers["Link"].removeprefix("<").removesuffix('>; rel="next"'))
    assert [len(page) for page in pages] == [3, 1]
    assert [s["id"] for page in pages for s in page] == [s["id"] for s in every[3:]]
    assert "Link" not in me.get("/v1/me/sessions").headers


@pytest.mark.parametrize(
    "listing, unknown", [("login-attempts", "999999999"), ("sessions", str(uuid.UUID(int=1)))]
)
def test_paged_lists_refuse_a_cursor_that_is_not_the_persons(site, conn, app, listing, unknown):
    sign_up(site, conn)
    sign_up(site, conn, email="bob@example.com")
    bobs = as_user(app, login(site, "bob@example.com").get_json()["access_token"])
    bobs_cursor = bobs.get(f"/v1/me/{listing}").get_json()[0]["id"]
    me = as_user(app, login(site).get_json()["access_token"])
    assert_problem(me.get(f"/v1/me/{listing}?after={bobs_cursor}"), 422, "after")
    assert_problem(me.get(f"/v1/me/{listing}?after={unknown}"), 422, "after")


def test_a_site_key_is_not_a_user_token(site):
    assert_problem(site.get("/v1/me"), 401)


# --- found by the hostile round ---------------------------------------------------------------


def test_a_burst_of_failures_waits_a_second_not_the_longest_block(site, conn):
    sign_up(site, conn)
    statuses = [login(site, password=f"wrong {n}").status_code for n in range(16)]
    assert statuses.count(401) == 6  # five free checks, and the one that starts the waits
    waiting = assert_problem(login(site, password="wrong again"), 429)
    assert waiting["status"] == 429
    retry = int(login(site).headers["Retry-After"])
    assert 1 <= retry <= 2


def test_the_owner_on_an_ip_they_logged_in_from_is_not_locked_out_by_a_stranger(site, conn):
    sign_up(site, conn)
    assert login(site).status_code == 200  # the owner's own IP, known from now on
    stranger = {"client_ip": "198.51.100.9", "user_agent": "curl"}
    for n in range(10):
        login(site, password=f"wrong {n}", **stranger)
    assert login(site, **stranger).status_code == 429  # from the stranger's IP it waits
    assert login(site).status_code == 200  # from the owner's it does not


def test_wrong_current_passwords_are_counted_against_the_sign_in(site, conn, app):
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    change = {"new_password": OTHER_PASSWORD, **BROWSER}
    statuses = [
        me.put("/v1/me/password", json=change | {"current_password": f"guess {n}"}).status_code
        for n in range(8)
    ]
    assert statuses[:6] == [422] * 6 and statuses[-1] == 429
    counted = conn.execute(
        "select failures from login_throttles where key like 'reauthenticate:%'"
    ).fetchone()["failures"]
    assert counted == 6  # a stolen access token guesses no faster than a login would


def test_a_strangers_failed_logins_do_not_keep_the_owner_from_changing_the_password(
    site, conn, app
):
    """From the third hostile round: the owner's change was refused (429) after bursts of
    wrong logins from elsewhere, for up to a quarter of an hour."""
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    for n in range(20):
        login(site, password=f"wrong {n}", client_ip=f"198.51.100.{n}", user_agent="curl")
    assert login(site, client_ip="198.51.100.99", user_agent="curl").status_code == 429
    changed = me.put(
        "/v1/me/password",
        json={**BROWSER, "current_password": PASSWORD, "new_password": OTHER_PASSWORD},
    )
    assert changed.status_code == 204, changed.get_data(as_text=True)


def test_a_client_ip_with_a_zone_is_a_422_and_a_mapped_ipv4_counts_as_itself(site, conn):
    sign_up(site, conn)
    zoned = login(site, client_ip="fe80::1%eth0", user_agent="x")
    assert_problem(zoned, 422, "client_ip")
    login(site, password="wrong", client_ip="::ffff:192.0.2.77", user_agent="x")
    keys = [row["key"] for row in conn.execute("select key from login_throttles")]
    assert "ip:192.0.2.77" in keys


def test_ipv6_clients_are_throttled_by_their_64(site, conn):
    for n in range(25):  # many accounts, one /64, a new address each time
        login(
            site,
            f"nobody{n}@example.com",
            "wrong",
            client_ip=f"2001:db8:1:2::{n:x}",
            user_agent="x",
        )
    waiting = login(
        site, "anna@example.com", "wrong", client_ip="2001:db8:1:2::ffff", user_agent="x"
    )
    assert_problem(waiting, 429)


def test_a_refresh_token_works_only_for_the_site_it_was_issued_to(site, conn, app):
    from tests.sites import site_key_for

    sign_up(site, conn)
    tokens = login(site).get_json()
    other = app.test_client()
    other.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {site_key_for(conn, 'smtpeter.com')}"
    assert_problem(
        other.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401
    )
    assert (
        other.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}).status_code
        == 204
    )
    refreshed = site.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200  # neither spent nor ended by the other site


def test_a_pending_address_change_dies_with_a_password_reset(site, conn, app):
    sign_up(site, conn)
    thief = as_user(app, login(site).get_json()["access_token"])
    assert (
        thief.post(
            "/v1/me/email",
            json={**BROWSER, "current_password": PASSWORD, "new_email": "thief@evil.example"},
        ).status_code
        == 202
    )
    token = mailed(conn, "thief@evil.example", "email_change_confirm")["token"]
    assert (
        site.post(
            "/v1/auth/password-reset", json={**BROWSER, "email": "anna@example.com"}
        ).status_code
        == 202
    )
    _reset_with(site, conn, "password_reset", password=OTHER_PASSWORD)
    assert_problem(site.post("/v1/auth/verify-email", json={"token": token}), 422)
    assert login(site, password=OTHER_PASSWORD).get_json()["user"]["email"] == "anna@example.com"


@pytest.mark.parametrize("holder", ["account", "minimal profile"])
def test_an_address_change_tells_no_one_signed_in_whether_an_address_is_known(
    site, conn, app, holder
):
    """Seen from the account asking (its answers, its own mailbox, its earlier link), a
    taken address and a free one are alike; the taken one's holder hears of it, and the
    record with that address and the asking account stay as they were."""
    sign_up(site, conn)
    if holder == "account":
        sign_up(site, conn, email="taken@example.com")
    else:
        site.post("/v1/profiles", json={"email": "taken@example.com", "source": "event"})
    me = as_user(app, login(site).get_json()["access_token"])
    answers, earlier_links = {}, {}
    for case, address in (("free", "free@example.com"), ("taken", "Taken@Example.com")):
        me.post(
            "/v1/me/email",
            json={**BROWSER, "current_password": PASSWORD, "new_email": f"own-{case}@example.com"},
        )
        earlier_links[case] = mailed(conn, f"own-{case}@example.com", "email_change_confirm")
        before = mails(conn, "anna@example.com")
        answers[case] = me.post(
            "/v1/me/email", json={**BROWSER, "current_password": PASSWORD, "new_email": address}
        )
        assert mails(conn, "anna@example.com")[len(before) :] == ["email_change_notice"]
    free, taken = answers["free"], answers["taken"]
    assert (
        (free.status_code, free.get_json())
        == (taken.status_code, taken.get_json())
        == (202, {"status": "accepted", "detail": free.get_json()["detail"]})
    )
    assert {name for name, _ in free.headers if name != "X-Request-ID"} == {
        name for name, _ in taken.headers if name != "X-Request-ID"
    }
    # The link of the change asked before is void in both cases.
    for case, earlier in earlier_links.items():
        verified = site.post("/v1/auth/verify-email", json={"token": earlier["token"]})
        assert verified.status_code == 422, case
        assert_problem(verified, 422)
    assert mails(conn, "free@example.com") == ["email_change_confirm"]
    assert "email_change_confirm" not in mails(conn, "taken@example.com")
    assert mails(conn, "taken@example.com")[-1] == "email_change_attempt"
    # The notice's advice fits its holder: an account signs in, a record signs up.
    notice = mailed(conn, "taken@example.com", "email_change_attempt")
    assert notice["account"] is (holder == "account")
    assert me.get("/v1/me").get_json()["email"] == "anna@example.com"
    held = site.get("/v1/users", query_string={"email": "taken@example.com"}).get_json()
    assert held["email"] == "taken@example.com"


def test_no_number_of_accounts_sends_one_address_more_than_five_notices_an_hour(site, conn, app):
    site.post("/v1/profiles", json={"email": "held@example.com", "source": "event"})
    for n in range(3):
        sign_up(site, conn, email=f"asker{n}@example.com")
        me = as_user(app, login(site, f"asker{n}@example.com").get_json()["access_token"])
        for _ in range(3):
            asked = me.post(
                "/v1/me/email",
                json={**BROWSER, "current_password": PASSWORD, "new_email": "held@example.com"},
            )
            assert asked.status_code == 202
    assert mails(conn, "held@example.com") == ["email_change_attempt"] * 5


def test_a_pending_address_change_dies_with_the_sign_in_that_asked(site, conn, app):
    sign_up(site, conn)
    tokens = login(site).get_json()
    me = as_user(app, tokens["access_token"])
    assert (
        me.post(
            "/v1/me/email",
            json={**BROWSER, "current_password": PASSWORD, "new_email": "anna@new.example"},
        ).status_code
        == 202
    )
    token = mailed(conn, "anna@new.example", "email_change_confirm")["token"]
    site.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert_problem(site.post("/v1/auth/verify-email", json={"token": token}), 422)


def test_address_changes_asked_for_are_limited_refused_ones_too(site, conn, app):
    sign_up(site, conn)
    site.post("/v1/profiles", json={"email": "known@example.com", "source": "event"})
    me = as_user(app, login(site).get_json()["access_token"])
    statuses = [
        me.post(
            "/v1/me/email",
            json={**BROWSER, "current_password": PASSWORD, "new_email": "known@example.com"},
        ).status_code
        for _ in range(5)
    ]
    assert statuses == [202] * 5
    waiting = me.post(
        "/v1/me/email",
        json={**BROWSER, "current_password": PASSWORD, "new_email": "unknown@example.com"},
    )
    assert assert_problem(waiting, 429) and waiting.headers["Retry-After"]


@pytest.mark.timing
def test_a_password_reset_answers_no_sooner_for_an_unknown_address(site, conn):
    import time

    sign_up(site, conn)
    for address in ("anna@example.com", "nobody@example.com"):
        started = time.monotonic()
        assert (
            site.post("/v1/auth/password-reset", json={**BROWSER, "email": address}).status_code
            == 202
        )
        assert time.monotonic() - started >= 0.1


def test_a_person_may_change_only_the_case_of_their_address(site, conn, app):
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    assert (
        me.post(
            "/v1/me/email",
            json={**BROWSER, "current_password": PASSWORD, "new_email": "Anna@Example.com"},
        ).status_code
        == 202
    )
    token = mailed(conn, "Anna@example.com", "email_change_confirm")["token"]
    proven = site.post("/v1/auth/verify-email", json={"token": token})
    assert proven.status_code == 200 and proven.get_json()["email"] == "Anna@example.com"


def test_the_waits_keep_doubling_after_a_long_one_ends(site, conn):
    # As if 30 checks had been made and a wait of over a window (1024 s) just ended.
    conn.execute(
        "insert into login_throttles (key, failures, last_failure_at, blocked_until)"
        " values ('ip:192.0.2.250', 30, now() - interval '1025 seconds', now() - interval '1 s')"
    )
    browser = {"client_ip": "192.0.2.250", "user_agent": "x"}
    assert login(site, "nobody@example.com", "wrong", **browser).status_code == 401
    waiting = login(site, "nobody@example.com", "wrong", **browser)
    assert int(assert_problem(waiting, 429) and waiting.headers["Retry-After"]) > 1000


def test_attempts_an_account_refuses_do_not_count_against_the_clients_ip(site, conn):
    sign_up(site, conn)
    for n in range(8):  # a stranger keeps the account waiting
        login(site, password=f"wrong {n}", client_ip=f"192.0.2.{10 + n}", user_agent="x")
    office = {"client_ip": "198.18.0.1", "user_agent": "x"}
    for _ in range(25):  # the owner, from a new IP, keeps trying
        assert login(site, **office).status_code == 429
    sign_up(site, conn, "colleague@example.com")
    assert login(site, "colleague@example.com", **office).status_code == 200


def test_the_owners_ipv6_network_is_known_whatever_address_the_device_takes(site, conn):
    sign_up(site, conn)
    assert login(site, client_ip="2001:db8:77::1", user_agent="x").status_code == 200
    for n in range(8):
        login(site, password=f"wrong {n}", client_ip=f"192.0.2.{10 + n}", user_agent="x")
    renewed = login(site, client_ip="2001:db8:77::abcd:1234", user_agent="x")
    assert renewed.status_code == 200


def test_ending_a_sign_in_that_has_expired_is_a_404_as_one_ended_is(site, conn, app):
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    login(site, **BROWSER | {"user_agent": "Phone"})
    expired = conn.execute(
        "update sessions set expires_at = now() - interval '1 second'"
        " where user_agent = 'Phone' returning id"
    ).fetchone()["id"]
    assert [s["user_agent"] for s in me.get("/v1/me/sessions").get_json()] == [
        BROWSER["user_agent"]
    ]
    assert_problem(me.delete(f"/v1/me/sessions/{expired}"), 404)


def test_ending_a_sign_in_answers_204_with_no_body_and_no_type(site, conn, app):
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    login(site)
    sessions = me.get("/v1/me/sessions").get_json()
    answer = me.delete(f"/v1/me/sessions/{sessions[0]['id']}")
    assert answer.status_code == 204 and answer.get_data() == b""
    assert "Content-Type" not in answer.headers


@pytest.mark.parametrize(
    "spelling",
    [
        "{%s}",
        "urn:uuid:%s",
        "urn:urn:uuid:uuid:%s",
        "%s-nodash",
        "%s-digits",
        "%s-dashes",
    ],
)
@pytest.mark.parametrize("listing", ["/v1/me/sessions", "/v1/newsletters/copernica/subscribers"])
def test_a_cursor_is_a_uuid_as_the_service_writes_one(site, conn, app, spelling, listing):
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    client = me if listing == "/v1/me/sessions" else site
    (session,) = me.get("/v1/me/sessions").get_json()
    plain = session["id"]
    assert client.get(f"{listing}?after={plain.upper()}").status_code == 200
    if spelling == "%s-nodash":
        odd = plain.replace("-", "")
    elif spelling == "%s-digits":  # full-width digits, which Python's UUID() reads
        odd = plain.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
    elif spelling == "%s-dashes":
        odd = "-".join(plain.replace("-", ""))
    else:
        odd = spelling % plain
    assert_problem(client.get(f"{listing}?after={urllib.parse.quote(odd)}"), 422, "after")


@pytest.mark.parametrize("listing", ["/v1/me/sessions", "/v1/me/login-attempts"])
def test_a_negative_limit_is_told_the_range(site, conn, app, listing):
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    problem = assert_problem(me.get(f"{listing}?limit=-1"), 422, "limit")
    assert "greater than or equal to 1" in json.dumps(problem)


@pytest.mark.parametrize("method, path", [("PATCH", "/v1/me"), ("PUT", "/v1/me/notifications")])
@pytest.mark.parametrize("content_type", ["application/json", None])
def test_an_empty_body_is_not_taken_for_an_empty_object(
    site, conn, app, method, path, content_type
):
    """Found by a hostile round: an empty body was read as `{}`, a change of nothing."""
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    answer = me.open(path, method=method, data=b"", content_type=content_type)
    assert "empty" in assert_problem(answer, 400)["detail"]
