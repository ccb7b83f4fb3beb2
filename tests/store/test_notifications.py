"""The notification settings' SQL called directly: only what a person changed is kept,
a change replaces that one event's channels, and each person's are their own."""

import psycopg
import pytest

from identity.store import notifications as store
from tests.store.records import record


def _settings(conn, user_id) -> dict:
    return {(s["dashboard"], s["event"]): s["channels"] for s in store.settings(conn, user_id)}


def test_only_what_was_changed_is_kept_and_a_change_replaces_it(conn):
    anna, bob = record(conn), record(conn, "bob@example.com")
    assert store.settings(conn, anna) == []
    store.save(conn, anna, [("smtpeter", "invoice", ["email"]), ("mailerq", "security", [])])
    store.save(conn, bob, [("smtpeter", "invoice", ["push"])])
    store.save(conn, anna, [("smtpeter", "invoice", ["in-app", "push"])])
    store.save(conn, anna, [])
    assert _settings(conn, anna) == {
        ("smtpeter", "invoice"): ["in-app", "push"],
        ("mailerq", "security"): [],
    }
    assert _settings(conn, bob) == {("smtpeter", "invoice"): ["push"]}


@pytest.mark.parametrize(
    "change", [("smtpeter", "invoice", ["sms"]), ("nowhere", "invoice", ["email"])]
)
def test_a_channel_or_dashboard_the_record_does_not_know_is_refused(conn, change):
    anna = record(conn)
    with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
        store.save(conn, anna, [change])
    assert store.settings(conn, anna) == []
