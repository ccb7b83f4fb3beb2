"""/health/ready's `mail` section: how many couriers are alive on any replica, how long
due mail has waited, and `late` when mail is not going out; its status stays 200."""

import signal

import pytest

from identity import create_app
from identity.db import Database
from tests.mail.conftest import queue, wait_until


def ready_mail(client) -> dict:
    answer = client.get("/health/ready")
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["mail"]


@pytest.mark.committing
def test_ready_says_mail_is_late_while_no_courier_runs_and_ok_once_one_delivers(
    database_url, db, mail_server, courier_process, courier_thread
):
    database = Database(database_url, min_size=1, max_size=2, timeout=5.0)
    database.open()
    try:
        app = create_app({"DATABASE_URL": database_url, "MAIL_LATE_SECONDS": 1.0}, database)
        client = app.test_client()
        assert ready_mail(client) == {"status": "ok", "oldest_queued_seconds": 0, "couriers": 0}

        killed = courier_process(mail_server.url, mail_lease_seconds=0.5)
        wait_until(lambda: ready_mail(client)["couriers"] == 1, 20, "a courier counted")
        assert ready_mail(client)["status"] == "ok"
        killed.send_signal(signal.SIGKILL)
        # Its beat runs out a lease and a poll after the last one.
        wait_until(lambda: ready_mail(client)["couriers"] == 0, 5, "the killed courier gone")

        queue(db, 1)
        late = wait_until(
            lambda: (mail := ready_mail(client))["oldest_queued_seconds"] >= 1 and mail,
            5,
            "the mail waiting a second",
        )
        assert (late["status"], late["couriers"]) == ("late", 0)

        courier_thread(mail_server.url)
        mail_server.sink.wait_for(1)
        wait_until(
            lambda: (
                ready_mail(client) == {"status": "ok", "oldest_queued_seconds": 0, "couriers": 1}
            ),
            5,
            "ok again",
        )
    finally:
        database.close()


def test_mail_waiting_past_the_late_setting_is_late_though_a_courier_is_alive(conn, client):
    conn.execute(
        "insert into couriers (id, pid, host, alive_until)"
        " values (gen_random_uuid(), 1, 'replica-2', now() + interval '1 minute')"
    )
    conn.execute(
        "insert into outbox (template, recipient, language, next_attempt_at) values"
        " ('test', 'a@example.com', 'en', now() - interval '299 seconds'),"
        " ('test', 'b@example.com', 'en', now() - interval '10 seconds')"
    )
    assert ready_mail(client) == {"status": "ok", "oldest_queued_seconds": 299, "couriers": 1}
    conn.execute("update outbox set next_attempt_at = now() - interval '301 seconds'")
    assert ready_mail(client) == {"status": "late", "oldest_queued_seconds": 301, "couriers": 1}


def test_a_mail_a_courier_holds_waits_for_none_until_its_lease_runs_out(conn, client):
    conn.execute(
        "insert into outbox (template, recipient, language, status, claimed_by, next_attempt_at)"
        " values ('test', 'a@example.com', 'en', 'sending', gen_random_uuid(),"
        " now() + interval '30 seconds')"
    )
    assert ready_mail(client) == {"status": "ok", "oldest_queued_seconds": 0, "couriers": 0}
    conn.execute("update outbox set next_attempt_at = now() - interval '400 seconds'")
    assert ready_mail(client) == {"status": "late", "oldest_queued_seconds": 400, "couriers": 0}
