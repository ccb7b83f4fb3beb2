"""A courier process killed, frozen or stopped: what it had claimed still goes out, once
(at most the mails in flight twice), and a stop is over in seconds even when the relay
never answers."""

import signal
import time

import pytest

from tests.mail.conftest import counts, distinct, duplicates, queue, wait_until
from tests.mail.relays import SilentRelay, slow_mail_server

pytestmark = pytest.mark.committing


def test_a_courier_killed_mid_batch_repeats_at_most_its_mails_in_flight(
    db, mail_server, courier_process, courier_thread
):
    queue(db, 300)
    killed = courier_process(mail_server.url, mail_connections=4, mail_lease_seconds=1)
    wait_until(lambda: len(mail_server.sink.messages) >= 50, 30, "the first 50 mails")
    killed.kill()
    killed.wait(timeout=10)
    courier_thread(mail_server.url, connections=4, lease_seconds=1)
    wait_until(lambda: distinct(mail_server.sink) == 300, 30, "all 300 mails")
    wait_until(lambda: counts(db) == {"sent": 300}, 5, "every mail recorded as sent")
    time.sleep(0.2)  # would a double arrive late?
    assert duplicates(mail_server.sink) <= 4  # its SMTP sessions


def test_a_frozen_couriers_mails_go_out_through_another_once_its_lease_is_over(
    db, courier_process, courier_thread
):
    relay = slow_mail_server(0.05)
    relay.start()
    try:
        queue(db, 30)
        frozen = courier_process(relay.url, mail_connections=1, mail_lease_seconds=1.5)
        wait_until(lambda: len(relay.sink.messages) >= 3, 20, "the first mails")
        frozen.send_signal(signal.SIGSTOP)
        courier_thread(relay.url, connections=1, lease_seconds=1.5)
        wait_until(lambda: distinct(relay.sink) == 30, 15, "every mail, from the other courier")
        # Woken past its lease, the frozen one sends none of what it had claimed; only
        # the mail it was sending when it froze may arrive twice.
        frozen.send_signal(signal.SIGCONT)
        time.sleep(1.0)
        assert duplicates(relay.sink) <= 1
        assert counts(db) == {"sent": 30}
        frozen.terminate()
        assert frozen.wait(timeout=10) == 0
    finally:
        relay.stop()
    # A mail it was sending when it froze went out again from the other courier; the
    # answer it read on waking was not recorded as its own, and it says so.
    assert duplicates(relay.sink) == 0 or "lease had run out" in frozen.log.read_text()


def test_sigterm_stops_a_courier_within_seconds_against_a_relay_that_never_answers(
    db, courier_process
):
    relay = SilentRelay()
    try:
        queue(db, 20)
        # The SMTP timeout is the default (20 s): only the stop itself can end the wait.
        courier = courier_process(relay.url, mail_stop_seconds=1)
        assert relay.accepted.acquire(timeout=20), "the courier never reached the relay"
        time.sleep(0.2)
        courier.send_signal(signal.SIGTERM)
        asked = time.monotonic()
        assert courier.wait(timeout=10) == 0
        assert time.monotonic() - asked < 3
    finally:
        relay.close()
    # What it had claimed is due again at once, for the next courier, and not counted
    # as a try.
    rows = db.execute(
        "select status, attempts, claimed_by, next_attempt_at <= now() as due from outbox"
    ).fetchall()
    assert rows == [{"status": "queued", "attempts": 0, "claimed_by": None, "due": True}] * 20
    assert "cutting" in courier.log.read_text()
