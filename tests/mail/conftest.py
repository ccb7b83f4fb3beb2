"""Couriers facing real faults: their own processes (to kill and freeze), or threads of
this one; a database that goes away or turns read-only; relays that go silent."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from identity.mail import enqueue
from identity.mail.courier import Courier, CourierSettings
from identity.mail.relay import Relay, parse_smtp_url
from identity.mail.render import Renderer

IDENTITY = Path(sys.executable).with_name("identity")


@pytest.fixture
def db(committing_db):
    """A committing connection; the couriers' rows are emptied afterwards too."""
    yield committing_db
    committing_db.execute("delete from couriers")


def queue(db, count: int, template: str = "test") -> list[int]:
    """`count` mails to p0@example.com, p1@..., committed together."""
    with db.transaction():
        return [enqueue(db, template, f"p{n}@example.com", "en") for n in range(count)]


def wait_until(condition, seconds: float, what: str):
    """The first true value of `condition()` within `seconds`."""
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.02)
    return value


def mail_ids(sink) -> list[str]:
    """The outbox's id of each mail that arrived (the uuid its Message-ID carries, whatever
    domain the courier that sent it names there)."""
    return [message["Message-ID"].strip("<>").partition("@")[0] for message in sink.messages]


def duplicates(sink) -> int:
    """How many mails arrived more than once."""
    ids = mail_ids(sink)
    return len(ids) - len(set(ids))


def distinct(sink) -> int:
    return len(set(mail_ids(sink)))


def terminate_other_backends(db) -> int:
    """pg_terminate_backend for every session of the serving role on this database but
    `db`'s own: the couriers' (the test's other connections are closed)."""
    return db.execute(
        "select count(pg_terminate_backend(pid)) as n from pg_stat_activity"
        " where datname = current_database() and pid <> pg_backend_pid()"
        " and backend_type = 'client backend' and usename = current_user"
    ).fetchone()["n"]


def counts(db) -> dict[str, int]:
    rows = db.execute("select status, count(*) as n from outbox group by status").fetchall()
    return {row["status"]: row["n"] for row in rows}


@pytest.fixture
def courier_thread(database_url):
    """Runs Couriers in threads of this process, each stopped and joined afterwards."""
    running: list[tuple[threading.Thread, threading.Event]] = []

    def start(relay_url: str, *, smtp_timeout: float = 2.0, **settings) -> Courier:
        courier = Courier(
            Renderer("identity <no-reply@example.com>"),
            Relay(parse_smtp_url(relay_url), timeout=smtp_timeout),
            CourierSettings(
                **{
                    "poll_seconds": 0.1,
                    "retry_base_seconds": 0.05,
                    "reconnect_first_seconds": 0.05,
                    "reconnect_max_seconds": 0.5,
                    **settings,
                }
            ),
        )
        stop = threading.Event()
        thread = threading.Thread(target=courier.run, args=(database_url, stop), daemon=True)
        thread.start()
        running.append((thread, stop))
        return courier

    yield start
    for _, stop in running:
        stop.set()
    for thread, _ in running:
        thread.join(timeout=15)
        assert not thread.is_alive(), "a courier did not stop"


@pytest.fixture
def courier_process(database_url, tmp_path):
    """Starts `identity mail deliver` as a process of its own (its log in a file), with
    settings for a fast test; whatever is left running is killed afterwards."""
    started: list[subprocess.Popen] = []

    def start(relay_url: str, **settings) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | {
            "IDENTITY_DATABASE_URL": database_url,
            "IDENTITY_SMTP_URL": relay_url,
            "IDENTITY_MAIL_POLL_SECONDS": "0.1",
            "IDENTITY_MAIL_RETRY_SECONDS": "0.05",
        }
        env |= {f"IDENTITY_{name.upper()}": str(value) for name, value in settings.items()}
        log = (tmp_path / f"courier-{len(started)}.log").open("wb")
        process = subprocess.Popen([IDENTITY, "mail", "deliver"], env=env, stdout=log, stderr=log)
        log.close()
        process.log = Path(log.name)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait(timeout=10)
