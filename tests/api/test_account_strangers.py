"""What a stranger cannot do to the owner of an address, as an outside attack tried it
(issue 21): pile up registrations, spend the mails, void the owner's links."""

from collections import Counter

import pytest

from identity.api.guards import SERVICES
from identity.services.mailed_tokens import MAILS_AN_HOUR_FROM_NEW_NETWORKS
from tests.api.test_accounts import OTHER_PASSWORD, PASSWORD, login, mails, register, sign_up
from tests.outbox import mailed

OWNER = {"client_ip": "198.51.100.20", "user_agent": "Anna's laptop"}


def _stranger(n: int) -> dict:
    """The stranger's n-th network: a new IPv6 /64 each time, so no limit per client IP
    stops them."""
    return {"client_ip": f"2001:db8:bad:{n:x}::1", "user_agent": "curl"}


@pytest.fixture
def argon2(app, monkeypatch) -> Counter:
    """How many argon2 hashes and checks the service makes, counted where they run
    (the Passwords object's offload): `hash` and `_verify`."""
    passwords = app.extensions[SERVICES].accounts.registration.passwords
    calls = Counter()
    offload = passwords._offload

    def counting(fn, *args):
        calls[getattr(fn, "func", fn).__name__] += 1  # check_password comes as a partial
        return offload(fn, *args)

    monkeypatch.setattr(passwords, "_offload", counting)
    return calls


def _argon2(calls: Counter) -> dict:
    return {name: calls[name] for name in ("hash", "_verify")}


def test_a_hundred_pending_registrations_do_not_keep_the_owner_out(site, conn, argon2):
    """Strangers register the owner's address from 100 networks. Each registration, the
    owner's too, costs one argon2 hash and three checks, however many are pending; the
    owner's still gets its mail; proving the address costs no argon2 at all, and hands
    the owner a link to choose the password (the registrations were contested)."""
    for n in range(100):
        argon2.clear()
        stranger = register(site, password=f"{OTHER_PASSWORD} {n}", **_stranger(n))
        assert stranger.status_code == 202
        assert _argon2(argon2) == {"hash": 1, "_verify": 3}, n
    mailed_before = mails(conn, "anna@example.com").count("verify_email")
    argon2.clear()
    assert register(site, first_name="Anna", **OWNER).status_code == 202
    assert _argon2(argon2) == {"hash": 1, "_verify": 3}
    # The owner's registration was mailed, and its link is the owner's.
    assert mails(conn, "anna@example.com").count("verify_email") == mailed_before + 1
    link = mailed(conn, "anna@example.com", "verify_email")["token"]
    argon2.clear()
    proven = site.post("/v1/auth/verify-email", json={"token": link, **OWNER})
    assert proven.status_code == 200 and proven.get_json()["status"] == "registered"
    assert _argon2(argon2) == {"hash": 0, "_verify": 0}
    # Contested: no registration's password is taken; the owner chooses one by mail.
    assert login(site, password=f"{OTHER_PASSWORD} 7", **OWNER).status_code == 401
    chosen = mailed(conn, "anna@example.com", "choose_password")["token"]
    confirm = {"token": chosen, "new_password": PASSWORD, **OWNER}
    assert site.post("/v1/auth/password-reset/confirm", json=confirm).status_code == 204
    signed_in = login(site, **OWNER)
    assert signed_in.status_code == 200
    assert signed_in.get_json()["user"]["id"] == proven.get_json()["id"]
    # Every stranger's link died with the proof.
    pending = conn.execute(
        "select count(*) as n from account_tokens where purpose = 'verify_email'"
        " and used_at is null and expires_at > now()"
    ).fetchone()["n"]
    assert pending == 0


def _reset(site, browser, email="anna@example.com"):
    answer = site.post("/v1/auth/password-reset", json={"email": email, **browser})
    assert answer.status_code in (202, 429), answer.get_data(as_text=True)
    return answer


def _live(conn, token: str) -> bool:
    row = conn.execute(
        "select used_at is null and expires_at > now() as live from account_tokens"
        " where token_hash = sha256(convert_to(%s, 'UTF8'))",
        (token,),
    ).fetchone()
    return row["live"]


def _an_hour_passes(conn) -> None:
    """Every time the limits read moves an hour into the past: the tokens' (the hourly
    mail limits, their links' expiry), the throttles' and the login attempts'."""
    conn.execute(
        "update account_tokens set created_at = created_at - interval '1 hour',"
        " expires_at = expires_at - interval '1 hour'"
    )
    conn.execute(
        "update login_throttles set last_failure_at = last_failure_at - interval '1 hour',"
        " blocked_until = blocked_until - interval '1 hour'"
    )
    conn.execute("update login_attempts set at = at - interval '1 hour'")


def test_a_new_reset_voids_no_link_sent_before_and_using_one_voids_the_rest(site, conn):
    sign_up(site, conn)
    links = []
    for _ in range(3):
        _reset(site, OWNER)
        links.append(mailed(conn, "anna@example.com", "password_reset")["token"])
    assert len(set(links)) == 3 and all(_live(conn, link) for link in links)
    confirm = {"token": links[1], "new_password": OTHER_PASSWORD, **OWNER}
    assert site.post("/v1/auth/password-reset/confirm", json=confirm).status_code == 204
    assert not any(_live(conn, link) for link in links)
    assert login(site, password=OTHER_PASSWORD, **OWNER).status_code == 200


@pytest.mark.parametrize("stranger", ["one network", "a new network each time"])
def test_a_stranger_asking_resets_all_day_does_not_keep_the_owners_from_them(site, conn, stranger):
    """A simulated day: each hour the stranger asks a dozen resets for the owner's
    address, before and after the owner asks one from home (a network the account logged
    in from). The owner's is mailed every hour, and its link stays good however many the
    stranger asks after it; at the end of the day the owner uses it. From a second
    network the owner never logged in from, it is mailed too while the stranger keeps to
    one network; a stranger with a new network for every request spends the cap that
    networks not known share, and the owner's own networks are what is left."""
    sign_up(site, conn)
    assert login(site, **OWNER).status_code == 200  # home is a known network
    phone = {"client_ip": "2001:db8:feed:1::7", "user_agent": "Anna's phone"}
    asked = iter(range(10_000))

    def strangers_turn(requests: int) -> None:
        for _ in range(requests):
            n = next(asked)
            if stranger == "one network":
                browser = _stranger(n)  # a new /64 of one /48 each time
            else:
                browser = {"client_ip": f"2001:db8:{n + 1:x}::1", "user_agent": "curl"}
            _reset(site, browser)

    owners = []
    for hour in range(24):
        strangers_turn(6)
        before = mails(conn, "anna@example.com").count("password_reset")
        assert _reset(site, OWNER).status_code == 202
        assert mails(conn, "anna@example.com").count("password_reset") == before + 1, hour
        owners.append(mailed(conn, "anna@example.com", "password_reset")["token"])
        strangers_turn(6)
        assert _live(conn, owners[-1]), hour
        before = mails(conn, "anna@example.com").count("password_reset")
        assert _reset(site, phone).status_code == 202
        from_phone = mails(conn, "anna@example.com").count("password_reset") - before
        assert from_phone == (1 if stranger == "one network" else 0), hour
        if hour < 23:
            _an_hour_passes(conn)
    sent = mails(conn, "anna@example.com").count("password_reset")
    assert sent <= 24 * (MAILS_AN_HOUR_FROM_NEW_NETWORKS + 1)  # the mailbox is not flooded
    confirm = {"token": owners[-1], "new_password": OTHER_PASSWORD, **OWNER}
    assert site.post("/v1/auth/password-reset/confirm", json=confirm).status_code == 204
    assert login(site, password=OTHER_PASSWORD, **OWNER).status_code == 200
