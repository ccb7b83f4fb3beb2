"""Login attempts and throttles called directly: free checks, then waits that double up
to a cap; the IP and the account counted in one statement; a check taken back; the
owner's own network; the person's attempts a page at a time.

Inside one transaction now() stands still, so time is moved by moving the throttle's
stored times back, as if the clock had gone on."""

import threading
import time
from datetime import datetime

import psycopg
import pytest
from psycopg.rows import dict_row

from identity.store import throttles
from tests.store.locks import wait_until_blocked
from tests.store.records import record, site

KEY = "account:0123456789abcdef"
LIMITS = {"free": 3, "window_seconds": 900, "cap_seconds": 8}


def _reserve(conn, key=KEY, **limits) -> datetime | None:
    return throttles.reserve_attempt(conn, key, **(LIMITS | limits))


def _now(conn) -> datetime:
    return conn.execute("select now() as now").fetchone()["now"]


def _throttle(conn, key=KEY) -> dict | None:
    return conn.execute("select * from login_throttles where key = %s", (key,)).fetchone()


def _later(conn, key=KEY, seconds: float | None = None) -> None:
    """As if `seconds` had passed (or the throttle's wait, and a millisecond more)."""
    shift = (
        "blocked_until - now() + interval '1 millisecond'"
        if seconds is None
        else "make_interval(secs => %(seconds)s)"
    )
    conn.execute(
        f"""
        update login_throttles set last_failure_at = last_failure_at - ({shift}),
               blocked_until = blocked_until - ({shift})
        where key = %(key)s
        """,  # noqa: S608 - one of two fixed fragments
        {"key": key, "seconds": seconds},
    )


def test_free_checks_then_waits_that_double_up_to_the_cap(conn):
    for _ in range(LIMITS["free"]):
        assert _reserve(conn) is None
    waits = []
    for _ in range(5):
        assert _reserve(conn) is None  # counted; its failure starts the next wait
        until = _reserve(conn)  # must wait, and is not counted
        waits.append((until - _now(conn)).total_seconds())
        _later(conn)  # the end of a wait is no quiet window: the waits go on doubling
    assert waits == [1, 2, 4, 8, 8]
    assert _throttle(conn)["failures"] == LIMITS["free"] + 5


def test_a_quiet_window_starts_the_count_again(conn):
    for _ in range(LIMITS["free"] + 1):
        _reserve(conn)
    assert _reserve(conn) is not None
    _later(conn, seconds=LIMITS["window_seconds"] + 2)
    assert _reserve(conn) is None
    throttle = _throttle(conn)
    assert throttle["failures"] == 1 and throttle["blocked_until"] is None


def test_throttles_are_counted_apart(conn):
    for _ in range(LIMITS["free"] + 1):
        _reserve(conn)
    assert _reserve(conn) is not None
    assert _reserve(conn, "ip:192.0.2.1") is None


def test_a_check_taken_back_no_longer_counts_nor_its_wait(conn):
    for _ in range(LIMITS["free"] + 1):
        _reserve(conn)
    assert _reserve(conn) is not None
    throttles.take_back_attempt(conn, KEY)
    throttle = _throttle(conn)
    assert throttle["failures"] == LIMITS["free"] and throttle["blocked_until"] is None
    assert _reserve(conn) is None
    for _ in range(10):
        throttles.take_back_attempt(conn, KEY)
    assert _throttle(conn)["failures"] == 0
    throttles.take_back_attempt(conn, "ip:never-counted")
    assert _throttle(conn, "ip:never-counted") is None


def test_clearing_a_throttle_forgets_it(conn):
    for _ in range(LIMITS["free"] + 1):
        _reserve(conn)
    throttles.clear_throttle(conn, KEY)
    assert _throttle(conn) is None
    assert _reserve(conn) is None and _throttle(conn)["failures"] == 1


def _start(conn, email_key="anna@example.com", ip="ip:192.0.2.1", ip_free=3, account_free=3):
    return throttles.start_login(
        conn,
        email_key,
        ip_throttle=ip,
        account_throttle=KEY,
        window_seconds=900,
        ip_free=ip_free,
        ip_cap_seconds=60,
        account_free=account_free,
        account_cap_seconds=60,
    )


def test_a_login_reads_the_account_and_counts_the_ip_and_the_account(conn):
    user_id = record(conn)
    conn.execute("update users set password_hash = '$argon2id$x', email_verified_at = now()")
    started = _start(conn)
    assert started["id"] == user_id and started["password_hash"] == "$argon2id$x"
    assert started["email_verified_at"] is not None
    assert started["ip_until"] is None and started["account_until"] is None
    assert _throttle(conn)["failures"] == _throttle(conn, "ip:192.0.2.1")["failures"] == 1


def test_a_login_for_no_account_is_counted_all_the_same(conn):
    started = _start(conn, "nobody@example.com", ip=None)
    assert started["id"] is None and started["password_hash"] is None
    assert _throttle(conn)["failures"] == 1
    assert conn.execute("select count(*) as n from login_throttles").fetchone()["n"] == 1


def test_an_ip_that_must_wait_leaves_the_account_uncounted(conn):
    for _ in range(2):  # the first fills the free check, the second starts the wait
        _start(conn, ip_free=1)
    started = _start(conn, ip_free=1)
    assert started["ip_until"] is not None and started["account_until"] is None
    assert _throttle(conn)["failures"] == 2  # the refused attempt made no check


def test_an_account_that_must_wait_still_counts_at_the_ip(conn):
    for _ in range(2):
        _start(conn, account_free=1)
    started = _start(conn, account_free=1)
    assert started["account_until"] is not None and started["ip_until"] is None
    assert _throttle(conn)["failures"] == 2
    assert _throttle(conn, "ip:192.0.2.1")["failures"] == 3  # for the service to take back


def _attempt(conn, user_id, outcome="success", client_ip="203.0.113.7", site_id=None):
    throttles.record_attempt(
        conn,
        user_id=user_id,
        site_id=site_id,
        client_ip=client_ip,
        user_agent="pytest",
        outcome=outcome,
    )


def test_the_owners_own_network_is_one_with_a_good_login_lately(conn):
    anna, bob = record(conn), record(conn, "bob@example.com")
    _attempt(conn, anna)
    _attempt(conn, anna, client_ip="2001:db8:1:2::5")
    _attempt(conn, anna, outcome="wrong_password", client_ip="198.51.100.1")
    _attempt(conn, anna, client_ip="192.0.2.9")
    conn.execute(
        "update login_attempts set at = at - interval '91 days' where client_ip = '192.0.2.9'"
    )
    assert throttles.signed_in_from(conn, anna, "203.0.113.7", 90)
    assert throttles.signed_in_from(conn, anna, "2001:db8:1:2::/64", 90)
    assert not throttles.signed_in_from(conn, anna, "2001:db8:1:3::/64", 90)
    assert not throttles.signed_in_from(conn, anna, "203.0.113.8", 90)
    assert not throttles.signed_in_from(conn, anna, "198.51.100.1", 90)  # only a failure
    assert not throttles.signed_in_from(conn, anna, "192.0.2.9", 90)  # too long ago
    assert throttles.signed_in_from(conn, anna, "192.0.2.9", 100)
    assert not throttles.signed_in_from(conn, bob, "203.0.113.7", 90)


def test_the_persons_attempts_come_newest_first_a_page_at_a_time(conn):
    anna, bob = record(conn), record(conn, "bob@example.com")
    site_id = site(conn)
    for minutes in (50, 40, 30, 30, 10):
        _attempt(conn, anna, site_id=site_id)
        conn.execute(
            "update login_attempts set at = now() - make_interval(mins => %s)"
            " where id = (select max(id) from login_attempts)",
            (minutes,),
        )
    _attempt(conn, bob)
    made = conn.execute("select id from login_attempts where user_id = %s order by id", (anna,))
    ids = [row["id"] for row in made.fetchall()]
    pages, before = [], None
    while page := throttles.attempts_of(conn, anna, 2, before):
        pages.append([row["id"] for row in page])
        before = throttles.attempt_of(conn, anna, page[-1]["id"])
    # Newest first; the two made in the same minute, the later-numbered first.
    assert pages == [[ids[4], ids[3]], [ids[2], ids[1]], [ids[0]]]
    first = throttles.attempts_of(conn, anna, 1)[0]
    assert first["site"] == "copernica.com" and first["client_ip"] == "203.0.113.7"
    assert (first["outcome"], first["user_agent"]) == ("success", "pytest")
    bobs = throttles.attempts_of(conn, bob, 10)
    assert throttles.attempt_of(conn, anna, bobs[0]["id"]) is None


def _burst(database_url, call, how_many: int) -> list:
    """`call(conn, n)` on `how_many` connections at once; what each returned."""
    ready = threading.Barrier(how_many)
    results = [None] * how_many

    def run(n):
        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
            ready.wait(timeout=10)
            results[n] = call(conn, n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(how_many)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.committing
def test_parallel_logins_on_a_counting_account_get_only_the_free_checks(
    committing_db, database_url
):
    _start(committing_db, ip=None)  # the account's first failure, counted

    def log_in(conn, n):
        return _start(conn, ip=f"ip:192.0.2.{n}")

    started = _burst(database_url, log_in, 12)
    went_ahead = sum(s["account_until"] is None for s in started)
    assert went_ahead == 3  # the free checks left and the one that starts the waits
    assert _throttle(committing_db)["failures"] == 4
    ips = committing_db.execute(
        "select count(*) as n from login_throttles where key like 'ip:%' and failures = 1"
    ).fetchone()["n"]
    assert ips == 12  # each IP counted with its account, in the same statement


@pytest.mark.committing
def test_parallel_checks_on_a_new_key_get_only_the_free_checks(committing_db, database_url):
    limits = {"free": 1}
    got = {}
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as first:
        waiting = []

        def check(name):
            with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
                waiting.append(conn.info.backend_pid)
                got[name] = _reserve(conn, **limits)

        others = [threading.Thread(target=check, args=(name,)) for name in ("second", "third")]
        with first.transaction():
            got["first"] = _reserve(first, **limits)  # the key's row, not committed yet
            for thread in others:
                thread.start()
            while len(waiting) < 2:
                time.sleep(0.01)
            for pid in waiting:
                wait_until_blocked(committing_db, pid)
        for thread in others:
            thread.join(timeout=10)
    # Serially: the free check, then the one that starts the wait; the third waits.
    assert sum(until is None for until in got.values()) == limits["free"] + 1
