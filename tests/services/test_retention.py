"""Retention: what has outlived its purpose goes, what has not stays; every kind, on a real
PostgreSQL. Each kind gets an old row and a fresh one."""

import os
from datetime import UTC, datetime, timedelta

from identity.services import retention
from identity.store import retention as store
from identity.store.transactions import UnitOfWork
from tests.store.records import record, site

OLD = datetime.now(UTC) - timedelta(days=500)
FRESH = datetime.now(UTC) - timedelta(hours=1)

# One row of each kind, at `at`.
_ROWS = (
    "insert into login_attempts (user_id, at, outcome) values (%(user)s, %(at)s, 'success')",
    "insert into sessions (user_id, site_name, expires_at, revoked_at)"
    " values (%(user)s, 'copernica.com', %(at)s, %(at)s)",
    "insert into account_tokens (token_hash, purpose, user_id, expires_at, mailed)"
    " values (%(hash)s, 'password_reset', %(user)s, %(at)s, true)",
    "insert into newsletter_confirmations (token_hash, user_id, newsletter, expires_at)"
    " values (%(hash)s, %(user)s, 1, %(at)s)",
    "insert into login_challenges (token_hash, user_id, site_name, expires_at)"
    " values (%(hash)s, %(user)s, 'copernica.com', %(at)s)",
    "insert into social_flows (state_hash, provider, site_id, redirect_uri, nonce,"
    " code_verifier, expires_at)"
    " values (%(hash)s, 'google', %(site)s, 'https://x', 'n', 'v', %(at)s)",
    "insert into login_throttles (key, failures, last_failure_at) values (%(key)s, 3, %(at)s)",
    "insert into outbox (template, recipient, language, status, sent_at)"
    " values ('test', 'anna@example.com', 'en', 'sent', %(at)s)",
    "insert into refresh_tokens (token_hash, session_id, idle_expires_at, spent_at)"
    " values (%(hash)s, %(live)s, now() + interval '1 day', %(at)s)",
    "insert into audit_events (at, event, actor, subject_id)"
    " values (%(at)s, 'x', 'operator', %(user)s)",
)


def _fill(conn):
    values = {"user": record(conn), "site": site(conn)}
    values["live"] = conn.execute(
        "insert into sessions (user_id, site_name, expires_at)"
        " values (%(user)s, 'copernica.com', now() + interval '1 day') returning id",
        values,
    ).fetchone()["id"]
    for at in (OLD, FRESH):
        for statement in _ROWS:
            conn.execute(statement, values | {"at": at, "hash": os.urandom(32), "key": str(at)})
    # Not yet due, however old: a queued mail, a throttle still holding someone back.
    conn.execute(
        "insert into outbox (template, recipient, language, created_at)"
        " values ('test', 'bob@example.com', 'en', %s)",
        (OLD,),
    )
    conn.execute(
        "insert into login_throttles (key, failures, last_failure_at, blocked_until)"
        " values ('held', 9, %s, now() + interval '1 hour')",
        (OLD,),
    )


def _counts(conn) -> dict[str, int]:
    return {
        kind: conn.execute(f"select count(*) from {table}").fetchone()["count"]  # noqa: S608
        for kind, (table, _) in store.KINDS.items()
    }


def test_what_outlived_its_purpose_goes_and_the_rest_stays(conn):
    _fill(conn)
    before = _counts(conn)
    removed = retention.run(UnitOfWork.of(conn), {})
    assert removed == dict.fromkeys(store.KINDS, 1)
    after = _counts(conn)
    assert {kind: before[kind] - after[kind] for kind in store.KINDS} == removed
    # What stays: the fresh rows, the queued mail, the throttle still holding back.
    assert (
        conn.execute("select count(*) from outbox where status = 'queued'").fetchone()["count"] == 1
    )
    assert conn.execute("select 1 from login_throttles where key = 'held'").fetchone()
    # A second run finds nothing more.
    assert retention.run(UnitOfWork.of(conn), {}) == dict.fromkeys(store.KINDS, 0)


def test_each_kind_keeps_as_many_days_as_it_is_told(conn):
    _fill(conn)
    removed = retention.run(UnitOfWork.of(conn), {"login_attempts": 600, "mail": 600})
    assert (removed["login_attempts"], removed["mail"], removed["sign_ins"]) == (0, 0, 1)


def test_the_command_runs_it(cli, committing_db):
    result = cli("retention", "run", env={"IDENTITY_RETENTION_LOGIN_ATTEMPTS_DAYS": "7"})
    assert "login_attempts" in result.output and "removed 0 rows" in result.output
    assert "audit_events" in cli("prune").output
    cli("retention", "run", env={"IDENTITY_RETENTION_MAIL_DAYS": "0"}, ok=False)


def test_the_trail_keeps_a_year_whatever_retention_is_told(conn):
    """The serving role removes audit events only through the owner's prune_audit_events,
    which keeps a year however few days it is asked for."""
    user = record(conn)
    for days in (200, 370):
        conn.execute(
            "insert into audit_events (at, event, actor, subject_id)"
            " values (now() - make_interval(days => %s), 'x', 'operator', %s)",
            (days, user),
        )
    assert retention.run(UnitOfWork.of(conn), {"audit_events": 30})["audit_events"] == 1
    left = conn.execute("select count(*) from audit_events where subject_id = %s", (user,))
    assert left.fetchone()["count"] == 1
