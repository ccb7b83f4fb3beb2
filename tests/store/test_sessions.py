"""Sign-ins and their refresh tokens called directly: a good login written in one
statement, a token rotated once (shown again, it finds its session), sign-ins ended one
or all, the live ones a page at a time, and whether a sign-in is still live."""

import threading

import psycopg
import pytest
from psycopg.rows import dict_row

from identity.security.secret_tokens import secret_hash
from identity.store import sessions, throttles
from tests.store.locks import wait_until_blocked
from tests.store.records import record, site

IDLE = 600


def _sign_in(conn, user_id, refresh="first", site_name="copernica.com", **extra) -> dict:
    given = {
        "site_id": None,
        "user_agent": "pytest",
        "client_ip": "203.0.113.7",
        "throttle_key": "account:x",
        "ip_throttle_key": None,
        "idle_seconds": IDLE,
        "absolute_seconds": 3600,
    } | extra
    return sessions.sign_in(
        conn, user_id=user_id, site_name=site_name, refresh_hash=secret_hash(refresh), **given
    )


def _rotate(conn, old, new, site_name="copernica.com") -> dict:
    rotation = {"old": secret_hash(old), "new": secret_hash(new), "site": site_name}
    (answer,) = sessions.rotate_refresh_tokens(conn, [rotation], IDLE)
    return answer


def _live_tokens(conn) -> list[bytes]:
    rows = conn.execute("select token_hash from refresh_tokens where spent_at is null")
    return [bytes(row["token_hash"]) for row in rows.fetchall()]


NOTHING = {"session_id": None, "user_id": None, "site_name": None, "amr": None}


def test_a_good_login_records_the_attempt_and_begins_a_sign_in(conn):
    user_id, site_id = record(conn, first_name="Anna"), site(conn)
    limits = {"free": 5, "window_seconds": 900, "cap_seconds": 60}
    for key in ("account:x", "account:x", "ip:y", "ip:y"):
        throttles.reserve_attempt(conn, key, **limits)
    user = _sign_in(conn, user_id, site_id=site_id, ip_throttle_key="ip:y")
    assert user["id"] == user_id and user["first_name"] == "Anna"
    session = conn.execute("select *, host(client_ip) as ip from sessions").fetchone()
    assert session["id"] == user["session_id"] and session["user_id"] == user_id
    assert (session["site_id"], session["site_name"]) == (site_id, "copernica.com")
    assert (session["user_agent"], session["ip"]) == ("pytest", "203.0.113.7")
    assert (session["expires_at"] - session["created_at"]).total_seconds() == 3600
    assert _live_tokens(conn) == [secret_hash("first")]
    attempt = throttles.attempts_of(conn, user_id, 10)
    assert [(a["outcome"], a["site"]) for a in attempt] == [("success", "copernica.com")]
    left = {row["key"]: row for row in conn.execute("select * from login_throttles").fetchall()}
    assert list(left) == ["ip:y"]  # the account's failures forgotten
    assert left["ip:y"]["failures"] == 1  # the IP's check taken back, the other stands


def test_a_token_is_rotated_once_and_shown_again_finds_its_session(conn):
    user_id = record(conn)
    session_id = _sign_in(conn, user_id)["session_id"]
    rotated = _rotate(conn, "first", "second")
    assert rotated == {
        "session_id": session_id,
        "user_id": user_id,
        "site_name": "copernica.com",
        "amr": ["pwd"],  # how the person signed in, kept for the tokens of every refresh
    }
    assert _live_tokens(conn) == [secret_hash("second")]
    assert _rotate(conn, "first", "copied") == NOTHING
    assert _live_tokens(conn) == [secret_hash("second")]
    # The spent token shown again: it was copied; the sign-in it came from is found.
    found = sessions.spent_refresh_token_session(conn, secret_hash("first"), "copernica.com")
    assert found == {"session_id": session_id, "user_id": user_id}
    assert sessions.spent_refresh_token_session(conn, secret_hash("first"), "other.com") is None
    assert (
        sessions.spent_refresh_token_session(conn, secret_hash("second"), "copernica.com") is None
    )


def test_a_rotation_run_again_after_its_answer_was_lost_reports_it_again(conn):
    user_id = record(conn)
    session_id = _sign_in(conn, user_id)["session_id"]
    first = _rotate(conn, "first", "second")
    assert _rotate(conn, "first", "second") == first
    assert first["session_id"] == session_id
    assert _live_tokens(conn) == [secret_hash("second")]  # no third token


@pytest.mark.parametrize(
    "ended",
    [
        "update refresh_tokens set idle_expires_at = now() - interval '1 second'",
        "update sessions set revoked_at = now()",
        "update sessions set expires_at = now() - interval '1 second'",
    ],
    ids=["idle", "revoked", "expired"],
)
def test_a_token_of_an_ended_sign_in_is_not_rotated(conn, ended):
    _sign_in(conn, record(conn))
    conn.execute(ended)
    assert _rotate(conn, "first", "second") == NOTHING
    assert secret_hash("second") not in _live_tokens(conn)
    found = sessions.spent_refresh_token_session(conn, secret_hash("first"), "copernica.com")
    assert found is None  # never spent, or ended: not valid, not copied


def test_another_sites_token_is_left_as_it_was(conn):
    _sign_in(conn, record(conn), site_name="smtpeter.com")
    assert _rotate(conn, "first", "second", site_name="copernica.com") == NOTHING
    assert _live_tokens(conn) == [secret_hash("first")]
    token = sessions.lock_refresh_token(conn, secret_hash("first"))
    assert token["spent_at"] is None and token["fresh"] and token["live"]
    assert token["site_name"] == "smtpeter.com"


def test_rotations_in_one_call_are_answered_in_their_order(conn):
    anna, bob = record(conn), record(conn, "bob@example.com")
    bobs = _sign_in(conn, bob, refresh="bob")["session_id"]
    annas = _sign_in(conn, anna, refresh="anna")["session_id"]
    rotations = [
        {"old": secret_hash(old), "new": secret_hash(f"{old} next"), "site": "copernica.com"}
        for old in ("bob", "unknown", "anna")
    ]
    answers = sessions.rotate_refresh_tokens(conn, rotations, IDLE)
    assert [a["session_id"] for a in answers] == [bobs, None, annas]
    assert [a["user_id"] for a in answers] == [bob, None, anna]


def test_a_sign_in_is_ended_by_its_owner_only_and_once(conn):
    anna, bob = record(conn), record(conn, "bob@example.com")
    session_id = _sign_in(conn, anna)["session_id"]
    assert not sessions.revoke_session(conn, session_id, bob)
    assert sessions.signed_in_user(conn, anna, session_id) is not None
    assert sessions.revoke_session(conn, session_id, anna)
    assert not sessions.revoke_session(conn, session_id)
    assert sessions.signed_in_user(conn, anna, session_id) is None
    assert _rotate(conn, "first", "second") == NOTHING


def test_an_expired_sign_in_has_nothing_to_end(conn):
    session_id = _sign_in(conn, record(conn))["session_id"]
    conn.execute("update sessions set expires_at = now() - interval '1 second'")
    assert not sessions.revoke_session(conn, session_id)


def test_ending_every_sign_in_but_this_one(conn):
    anna, bob = record(conn), record(conn, "bob@example.com")
    kept = _sign_in(conn, anna, refresh="kept")["session_id"]
    ended = [_sign_in(conn, anna, refresh=f"other {n}")["session_id"] for n in range(2)]
    bobs = _sign_in(conn, bob, refresh="bob")["session_id"]
    sessions.revoke_sessions(conn, anna, except_id=kept)
    assert [s["id"] for s in sessions.live_sessions(conn, anna, 10)] == [kept]
    assert all(sessions.signed_in_user(conn, anna, s) is None for s in ended)
    assert sessions.signed_in_user(conn, bob, bobs) is not None
    sessions.revoke_sessions(conn, anna)
    assert sessions.live_sessions(conn, anna, 10) == []


def test_live_sign_ins_come_latest_first_a_page_at_a_time(conn):
    anna, bob = record(conn), record(conn, "bob@example.com")
    begun = []
    for minutes in (50, 40, 30, 20, 10):
        session_id = _sign_in(conn, anna, refresh=f"{minutes}")["session_id"]
        conn.execute(
            "update sessions set created_at = now() - make_interval(mins => %s) where id = %s",
            (minutes, session_id),
        )
        begun.append(session_id)
    _sign_in(conn, bob, refresh="bob")
    sessions.revoke_session(conn, begun[1])  # ended: not listed, still a cursor
    conn.execute("update sessions set expires_at = now() where id = %s", (begun[3],))
    pages, before = [], None
    while page := sessions.live_sessions(conn, anna, 2, before):
        pages.append([s["id"] for s in page])
        before = sessions.session_of(conn, anna, page[-1]["id"])
    assert pages == [[begun[4], begun[2]], [begun[0]]]
    after_ended = sessions.live_sessions(conn, anna, 10, sessions.session_of(conn, anna, begun[1]))
    assert [s["id"] for s in after_ended] == [begun[0]]
    assert sessions.session_of(conn, record(conn, "carl@example.com"), begun[0]) is None
    shown = sessions.live_sessions(conn, anna, 1)[0]
    assert (shown["site"], shown["client_ip"], shown["user_agent"]) == (
        "copernica.com",
        "203.0.113.7",
        "pytest",
    )


def test_the_signed_in_persons_record_while_the_sign_in_lives(conn):
    anna, bob = record(conn, first_name="Anna"), record(conn, "bob@example.com")
    session_id = _sign_in(conn, anna)["session_id"]
    assert sessions.signed_in_user(conn, anna, session_id)["first_name"] == "Anna"
    assert sessions.signed_in_user(conn, bob, session_id) is None  # not theirs
    conn.execute("update sessions set expires_at = now()")
    assert sessions.signed_in_user(conn, anna, session_id) is None


@pytest.mark.committing
def test_of_two_connections_rotating_one_token_at_once_exactly_one_does(
    committing_db, database_url
):
    session_id = _sign_in(committing_db, record(committing_db))["session_id"]
    got = {}
    with (
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as first,
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as second,
    ):
        thread = threading.Thread(
            target=lambda: got.update(second=_rotate(second, "first", "second's"))
        )
        with first.transaction():
            got["first"] = _rotate(first, "first", "first's")
            thread.start()
            wait_until_blocked(committing_db, second.info.backend_pid)
        thread.join(timeout=10)
    assert got["first"]["session_id"] == session_id
    assert got["second"] == NOTHING  # it waited, then found the token spent
    assert _live_tokens(committing_db) == [secret_hash("first's")]
    found = sessions.spent_refresh_token_session(
        committing_db, secret_hash("first"), "copernica.com"
    )
    assert found["session_id"] == session_id
