"""What a site that passes on its people's addresses sees of the limits per client IP on
password resets, their confirmations, password changes and changes of address: a network
that keeps asking waits, everyone else does not, and a refusal tells nothing about an
address."""

import itertools

from tests.api.problems import assert_problem
from tests.api.test_accounts import BROWSER, OTHER_PASSWORD, PASSWORD, as_user, login, sign_up
from tests.outbox import mailed

STRANGER = {"client_ip": "198.51.100.66", "user_agent": "curl/8"}
# Free requests per client IP within the window (AccountSettings.ip_free_requests).
FREE = 10


def reset_request(site, email, browser=STRANGER):
    return site.post("/v1/auth/password-reset", json={"email": email, **browser})


def without_request_id(answer) -> tuple:
    headers = sorted((k, v) for k, v in answer.headers.items() if k != "X-Request-ID")
    return answer.status_code, answer.get_data(), headers


def test_reset_requests_from_one_network_wait_whatever_the_address(site, conn):
    sign_up(site, conn)
    # The free ones, and the one past them that starts the waits, are answered.
    asked = [reset_request(site, f"nobody{n}@example.com") for n in range(FREE + 1)]
    assert [answer.status_code for answer in asked] == [202] * (FREE + 1)
    # A wait long enough that both are asked within it, however slow the machine.
    conn.execute(
        "update login_throttles set blocked_until = now() + interval '10 minutes'"
        " where key like 'password-reset-ip:%'"
    )
    known, unknown = reset_request(site, "anna@example.com"), reset_request(site, "no@example.com")
    assert_problem(known, 429)
    assert 1 <= int(known.headers["Retry-After"]) <= 900
    # The refusal is the same for an address with an account and one without.
    assert without_request_id(known) == without_request_id(unknown)
    assert "password_reset" not in [
        row["template"] for row in conn.execute("select template from outbox")
    ]
    # The owner, on their own network, is not held up by the stranger's requests.
    assert reset_request(site, "anna@example.com", BROWSER).status_code == 202
    assert mailed(conn, "anna@example.com", "password_reset")


def test_a_network_that_keeps_asking_waits_at_most_a_quarter_of_an_hour(site, conn):
    for n in range(FREE + 1):
        reset_request(site, f"nobody{n}@example.com")
    # Long after the waits began, doubling each time: they stop growing at 15 minutes.
    conn.execute("update login_throttles set failures = 500, blocked_until = null")
    reset_request(site, "again@example.com")
    waiting = reset_request(site, "again@example.com")
    assert_problem(waiting, 429)
    assert 840 <= int(waiting.headers["Retry-After"]) <= 900


def test_an_ipv6_network_counts_as_one_whatever_address_it_takes_in_its_64(site):
    for n in range(FREE + 1):
        browser = {"client_ip": f"2001:db8:1:2::{n + 1:x}"}
        assert reset_request(site, f"p{n}@example.com", browser).status_code == 202
    assert_problem(reset_request(site, "p@example.com", {"client_ip": "2001:db8:1:2::ff"}), 429)
    assert reset_request(site, "p@example.com", {"client_ip": "2001:db8:1:3::1"}).status_code == 202


def test_tries_at_a_reset_link_from_one_network_wait(site, conn):
    sign_up(site, conn)
    guess = {"new_password": OTHER_PASSWORD, **STRANGER}
    statuses = [
        site.post(
            "/v1/auth/password-reset/confirm", json={"token": f"guess-{n:02}" * 4, **guess}
        ).status_code
        for n in range(FREE + 2)
    ]
    # The free ones and the one that starts the waits are checked (422), then it waits.
    assert statuses == [422] * (FREE + 1) + [429]
    # The owner's own link, from the owner's network, works.
    reset_request(site, "anna@example.com", BROWSER)
    token = mailed(conn, "anna@example.com", "password_reset")["token"]
    confirm = {"token": token, "new_password": OTHER_PASSWORD, **BROWSER}
    assert site.post("/v1/auth/password-reset/confirm", json=confirm).status_code == 204
    assert login(site, password=OTHER_PASSWORD).status_code == 200


def test_a_reset_that_is_made_does_not_use_up_its_networks_tries(site, conn):
    sign_up(site, conn)
    password = PASSWORD
    for n in range(FREE + 2):
        # Asked for from one network after another: each request counts, made or not.
        reset_request(site, "anna@example.com", {"client_ip": f"192.0.2.{n + 1}"})
        token = mailed(conn, "anna@example.com", "password_reset")["token"]
        password = f"fresh {n} lanterns over Zwolle"
        confirm = {"token": token, "new_password": password, **BROWSER}
        answer = site.post("/v1/auth/password-reset/confirm", json=confirm)
        assert answer.status_code == 204, (n, answer.get_data(as_text=True))
        # The mail limit (five an hour) is the account's own, not this test's subject.
        conn.execute("delete from outbox")
        conn.execute("delete from account_tokens")
    assert login(site, password=password).status_code == 200


def _signed_in(site, conn, app, email):
    sign_up(site, conn, email)
    return as_user(app, login(site, email).get_json()["access_token"])


def test_wrong_current_passwords_from_one_network_wait_across_sign_ins(site, conn, app):
    people = [_signed_in(site, conn, app, f"p{n}@example.com") for n in range(3)]
    wrong = {"current_password": "not it", "new_password": OTHER_PASSWORD, **STRANGER}
    # Four wrong ones each on two sign-ins, three on the third: eleven from the network,
    # fewer than each sign-in's own five.
    for me, tries in zip(people, (4, 4, 3), strict=True):
        for _ in range(tries):
            assert_problem(me.put("/v1/me/password", json=wrong), 422, "current_password")
    assert_problem(people[2].put("/v1/me/password", json=wrong), 429)
    # The same sign-in, from another network, is not held up.
    right = {"current_password": PASSWORD, "new_password": OTHER_PASSWORD, **BROWSER}
    assert people[2].put("/v1/me/password", json=right).status_code == 204


def test_password_changes_that_are_made_do_not_use_up_the_networks_tries(site, conn, app):
    me = _signed_in(site, conn, app, "anna@example.com")
    passwords = [PASSWORD, *(f"fresh {n} lanterns over Zwolle" for n in range(FREE + 2))]
    for current, new in itertools.pairwise(passwords):
        change = {"current_password": current, "new_password": new, **STRANGER}
        answer = me.put("/v1/me/password", json=change)
        assert answer.status_code == 204, answer.get_data(as_text=True)


def test_changes_of_address_from_one_network_wait_whoever_asks(site, conn, app):
    people = [_signed_in(site, conn, app, f"p{n}@example.com") for n in range(3)]
    # Four each from two people, three from the third: eleven from the network, fewer
    # than each person's own five an hour.
    for n, (me, asks) in enumerate(zip(people, (4, 4, 3), strict=True)):
        for m in range(asks):
            body = {
                "new_email": f"new-{n}-{m}@example.com",
                "current_password": PASSWORD,
                **STRANGER,
            }
            assert me.post("/v1/me/email", json=body).status_code == 202
    asked = people[2].post(
        "/v1/me/email",
        json={"new_email": "late@example.com", "current_password": PASSWORD, **STRANGER},
    )
    assert_problem(asked, 429)
    assert int(asked.headers["Retry-After"]) >= 1
    assert (
        conn.execute(
            "select count(*) as n from outbox where recipient = 'late@example.com'"
        ).fetchone()["n"]
        == 0
    )
    # The third person, from another network, still may.
    body = {"new_email": "late@example.com", "current_password": PASSWORD, **BROWSER}
    assert people[2].post("/v1/me/email", json=body).status_code == 202
