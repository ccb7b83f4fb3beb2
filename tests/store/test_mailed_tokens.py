"""The mailed tokens' SQL called directly: registrations counted and compared, superseded
ones set aside, and a token taken once even by two connections at the same moment."""

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from identity.security.secret_tokens import secret_hash
from identity.store import mailed_tokens as store
from tests.store.locks import wait_until_blocked
from tests.store.records import record

LATER = datetime.now(UTC) + timedelta(hours=1)
EARLIER = datetime.now(UTC) - timedelta(hours=1)


def _registration(conn, user_id, name: str, *, minutes_ago: int = 0, expires_at=LATER) -> bytes:
    """A pending registration (its password hash in the payload), made `minutes_ago`."""
    token_hash = secret_hash(name)
    store.insert_token(
        conn, token_hash, "verify_email", user_id, {"password_hash": f"$h${name}"}, expires_at
    )
    conn.execute(
        "update account_tokens set created_at = created_at - make_interval(mins => %s)"
        " where token_hash = %s",
        (minutes_ago, token_hash),
    )
    return token_hash


def _used(conn, token_hash) -> bool:
    row = conn.execute(
        "select used_at is not null as used from account_tokens where token_hash = %s",
        (token_hash,),
    ).fetchone()
    return row["used"]


def test_registrations_since_counts_every_one_but_those_made_again(conn):
    user_id, other = record(conn), record(conn, "bob@example.com")
    _registration(conn, user_id, "pending")
    taken = _registration(conn, user_id, "taken")
    store.take_token(conn, taken, ("verify_email",))  # used: still counted
    again = _registration(conn, user_id, "made again")
    store.supersede_registrations(conn, [again])
    _registration(conn, user_id, "long ago", minutes_ago=120)
    _registration(conn, other, "someone else's")
    # A mailed token without a password is not a registration.
    store.insert_token(conn, secret_hash("reset"), "password_reset", user_id, {}, LATER)
    store.insert_token(conn, secret_hash("bare"), "verify_email", user_id, {}, LATER)
    assert store.registrations_since(conn, user_id, 3600, at_most=10) == 2
    assert store.registrations_since(conn, user_id, 3 * 3600, at_most=10) == 3
    assert store.registrations_since(conn, user_id, 3 * 3600, at_most=2) == 2


def test_pending_registrations_are_the_newest_live_ones_first(conn):
    user_id = record(conn)
    for minutes in (40, 10, 30, 20):
        _registration(conn, user_id, f"{minutes} minutes ago", minutes_ago=minutes)
    used = _registration(conn, user_id, "used", minutes_ago=1)
    store.take_token(conn, used, ("verify_email",))
    _registration(conn, user_id, "expired", expires_at=EARLIER)
    pending = store.pending_registrations(conn, user_id, 3)
    assert [row["password_hash"] for row in pending] == [
        "$h$10 minutes ago",
        "$h$20 minutes ago",
        "$h$30 minutes ago",
    ]
    assert pending[0]["token_hash"] == secret_hash("10 minutes ago")
    assert len(store.pending_registrations(conn, user_id, 10)) == 4


def test_only_live_registrations_are_superseded(conn):
    user_id = record(conn)
    live, used = _registration(conn, user_id, "live"), _registration(conn, user_id, "used")
    store.take_token(conn, used, ("verify_email",))
    store.supersede_registrations(conn, [live, used])
    payloads = {
        bytes(row["token_hash"]): row["payload"]
        for row in conn.execute("select token_hash, payload from account_tokens").fetchall()
    }
    assert payloads[live].get("superseded") is True and _used(conn, live)
    assert "superseded" not in payloads[used]  # it was someone's, and stays counted
    assert store.take_token(conn, live, ("verify_email",)) is None


def test_a_token_is_taken_for_its_purpose_once_before_it_expires(conn):
    user_id = record(conn)
    token_hash = secret_hash("reset")
    store.insert_token(conn, token_hash, "password_reset", user_id, {"n": 1}, LATER)
    store.insert_token(conn, secret_hash("old"), "password_reset", user_id, {}, EARLIER)
    assert store.take_token(conn, token_hash, ("verify_email",)) is None
    taken = store.take_token(conn, token_hash, ("verify_email", "password_reset"))
    made = taken.pop("created_at")
    assert taken == {"purpose": "password_reset", "user_id": user_id, "payload": {"n": 1}}
    assert made is not None
    assert store.take_token(conn, token_hash, ("password_reset",)) is None
    assert store.take_token(conn, secret_hash("old"), ("password_reset",)) is None


def test_the_owner_of_a_token_used_or_not_and_of_a_live_one(conn):
    user_id = record(conn)
    token_hash = _registration(conn, user_id, "token")
    assert store.token_owner(conn, token_hash, ("verify_email",), live=True) == user_id
    store.take_token(conn, token_hash, ("verify_email",))
    assert store.token_owner(conn, token_hash, ("verify_email",)) == user_id
    assert store.token_owner(conn, token_hash, ("verify_email",), live=True) is None
    assert store.token_owner(conn, token_hash, ("password_reset",)) is None


def test_voiding_ends_the_live_tokens_of_the_purposes_named(conn):
    user_id, other = record(conn), record(conn, "bob@example.com")
    mine = _registration(conn, user_id, "mine")
    theirs = _registration(conn, other, "theirs")
    reset = secret_hash("reset")
    store.insert_token(conn, reset, "password_reset", user_id, {}, LATER)
    store.void_tokens(conn, user_id, ("verify_email",))
    assert _used(conn, mine)
    assert not _used(conn, theirs) and not _used(conn, reset)


def test_mails_in_the_window_are_counted_per_purpose_and_network(conn):
    user_id = record(conn)
    _registration(conn, user_id, "now")
    _registration(conn, user_id, "before", minutes_ago=90)
    store.insert_token(conn, secret_hash("kept"), "verify_email", user_id, {}, LATER, mailed=False)
    for n, network in enumerate(["192.0.2.7", "192.0.2.7", "2001:db8:1::/48"]):
        store.insert_token(
            conn,
            secret_hash(f"reset {n}"),
            "password_reset",
            user_id,
            {},
            LATER,
            requested_from=network,
        )
    assert store.mails_since(conn, user_id, "verify_email", 3600, at_most=10) == 1
    assert store.mails_since(conn, user_id, "verify_email", 7200, at_most=10) == 2
    assert store.mails_since(conn, user_id, "password_reset", 3600, at_most=10) == 3
    assert store.mails_since(conn, user_id, "password_reset", 3600, at_most=2) == 2

    def from_there(network, at_most=10):
        return store.mails_from_since(
            conn, user_id, "password_reset", network, 3600, at_most=at_most
        )

    assert from_there("192.0.2.7") == 2 and from_there("192.0.2.7", at_most=1) == 1
    assert from_there("2001:db8:1::/48") == 1 and from_there("192.0.2.8") == 0


@pytest.mark.committing
@pytest.mark.parametrize("first_commits", [True, False], ids=["committed", "rolled-back"])
def test_of_two_connections_taking_one_token_at_once_exactly_one_gets_it(
    committing_db, database_url, first_commits
):
    user_id = record(committing_db)
    token_hash = _registration(committing_db, user_id, "one token")
    got = {}
    with (
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as first,
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as second,
    ):
        second_pid = second.info.backend_pid

        def take_second():
            got["second"] = store.take_token(second, token_hash, ("verify_email",))

        thread = threading.Thread(target=take_second)
        with first.transaction() as transaction:
            got["first"] = store.take_token(first, token_hash, ("verify_email",))
            thread.start()
            wait_until_blocked(committing_db, second_pid)  # on the first's row lock
            if not first_commits:
                raise psycopg.Rollback(transaction)
        thread.join(timeout=10)
    assert got["first"]["user_id"] == user_id
    if first_commits:
        assert got["second"] is None
    else:  # the first let it go: the second, which waited, gets it
        assert got["second"]["user_id"] == user_id
    assert _used(committing_db, token_hash)
