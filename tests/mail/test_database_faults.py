"""A courier outlives its database: a terminated backend, a database read-only for a
moment. Real faults on the tests' PostgreSQL, a real SMTP server on loopback."""

import logging

import pytest
from psycopg import sql

from tests.mail.conftest import (
    counts,
    distinct,
    duplicates,
    queue,
    terminate_other_backends,
    wait_until,
)
from tests.mail.relays import slow_mail_server

pytestmark = pytest.mark.committing


def test_a_courier_whose_backend_is_terminated_mid_run_keeps_delivering(db, courier_thread, caplog):
    caplog.set_level(logging.INFO)
    relay = slow_mail_server(0.005)
    relay.start()
    try:
        queue(db, 300)
        courier_thread(relay.url, connections=2, batch_size=20)
        wait_until(lambda: len(relay.sink.messages) >= 60, 20, "the first 60 mails")
        assert terminate_other_backends(db) >= 1
        wait_until(lambda: distinct(relay.sink) == 300, 30, "all 300 mails")
        # Only a mail in flight when its outcome could not be recorded goes twice: at
        # most one per SMTP session, never the batch.
        assert duplicates(relay.sink) <= 2
        queue(db, 1)  # and it goes on with what comes after
        wait_until(lambda: distinct(relay.sink) == 301, 10, "the mail queued afterwards")
        wait_until(lambda: counts(db) == {"sent": 301}, 5, "every mail recorded as sent")
    finally:
        relay.stop()
    logged = [r for r in caplog.records if r.getMessage().startswith("mail courier: database")]
    assert logged and logged[0].error_type in ("AdminShutdown", "OperationalError")


def test_a_courier_facing_a_read_only_database_for_a_moment_keeps_delivering(
    db, owner_db, courier_thread, mail_server, caplog
):
    caplog.set_level(logging.INFO)
    read_only = sql.SQL("alter database {} set default_transaction_read_only = {}")
    database = sql.Identifier(db.info.dbname)
    courier_thread(mail_server.url)
    queue(db, 1)
    mail_server.sink.wait_for(1)

    owner_db.execute(read_only.format(database, sql.SQL("on")))
    try:
        terminate_other_backends(db)  # the courier's next session is read-only
        queue(db, 1)  # (this session began before: it still writes)
        wait_until(
            lambda: any(getattr(r, "sqlstate", None) == "25006" for r in caplog.records),
            10,
            "the courier meeting the read-only database",
        )
        assert len(mail_server.sink.messages) == 1
    finally:
        owner_db.execute(read_only.format(database, sql.SQL("default")))
    mail_server.sink.wait_for(2, timeout=10)
    wait_until(lambda: counts(db) == {"sent": 2}, 5, "both mails recorded as sent")

    # What it logged names the error's type and SQLSTATE, never a person's address.
    refused = next(r for r in caplog.records if getattr(r, "sqlstate", None) == "25006")
    assert refused.error_type == "ReadOnlySqlTransaction" and refused.levelname == "WARNING"
    for record in caplog.records:
        if record.name.startswith("identity"):
            assert "example.com" not in str(record.__dict__)
