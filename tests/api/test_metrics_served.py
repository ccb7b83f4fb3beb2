"""GET /metrics of the service as `identity serve` runs it: two gunicorn workers and a
mail courier, each counting into the multiprocess directory made for this start. Under
load from parallel clients, a scrape (whichever worker answers it) gives exactly what was
done; the courier's deliveries are in it too; the directory goes when the server stops."""

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.mail.conftest import IDENTITY
from tests.settings import CHEAP
from tests.sites import site_key_for
from tests.test_cli import free_port, stop, wait_ready

pytestmark = [pytest.mark.committing, pytest.mark.slow]

LOOKUPS, FAILED_LOGINS, REGISTRATIONS = 60, 12, 6
PASSWORD = "plum tractor quietly 83 violins"


def call(base: str, key: str, path: str, body: dict | None = None) -> int:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


def scrape(base: str, key: str) -> dict[tuple, float]:
    request = urllib.request.Request(base + "/metrics", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        text = answer.read().decode()
    return {
        (sample.name, *sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def counted(found: dict, name: str, **labels) -> float:
    return found.get((name, *sorted(labels.items())), 0.0)


def metrics_dirs_of(parent: int) -> set[str]:
    """PROMETHEUS_MULTIPROC_DIR in the environment of `parent`'s children."""
    found = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            ppid = int((environ.parent / "stat").read_text().rpartition(")")[2].split()[1])
            if ppid != parent:
                continue
            for entry in environ.read_bytes().split(b"\0"):
                if entry.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                    found.add(entry.partition(b"=")[2].decode())
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_a_scrape_counts_every_worker_and_the_courier_under_load(
    tmp_path, database_urls, committing_db
):
    key = site_key_for(committing_db, "copernica.com")
    user_id = committing_db.execute(
        "insert into users (email, email_key) values ('anna@example.com', 'anna@example.com')"
        " returning id"
    ).fetchone()["id"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | {
        "IDENTITY_DATABASE_URL": database_urls.serving,
        "IDENTITY_MIGRATION_DATABASE_URL": database_urls.migration,
        "IDENTITY_IMPORT_PROCESSES": "0",
        "IDENTITY_MAIL_POLL_SECONDS": "0.2",
        **{f"IDENTITY_{name}": str(value) for name, value in CHEAP.items()},
        "PORT": str(free_port()),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    base = f"http://127.0.0.1:{env['PORT']}"
    with (tmp_path / "serve.log").open("wb") as output:
        server = subprocess.Popen(
            [IDENTITY, "serve", "--workers", "2"], env=env, stdout=output, stderr=output
        )
    try:
        wait_ready(base, server)
        (counts_dir,) = metrics_dirs_of(server.pid)  # gunicorn's and the courier's: one
        before = scrape(base, key)

        def look_up(_):
            return call(base, key, f"/v1/users/{user_id}")

        def fail_login(n):
            body = {"email": f"nobody{n}@example.com", "password": PASSWORD}
            return call(base, key, "/v1/auth/login", body | {"client_ip": "198.51.100.9"})

        def register(n):
            body = {"email": f"new{n}@example.com", "password": PASSWORD}
            return call(base, key, "/v1/auth/register", body | {"client_ip": "198.51.100.7"})

        with ThreadPoolExecutor(8) as clients:
            statuses = [
                *clients.map(look_up, range(LOOKUPS)),
                *clients.map(fail_login, range(FAILED_LOGINS)),
                *clients.map(register, range(REGISTRATIONS)),
            ]
        assert statuses == [200] * LOOKUPS + [401] * FAILED_LOGINS + [202] * REGISTRATIONS

        def grew(found, name, **labels):
            return counted(found, name, **labels) - counted(before, name, **labels)

        requests = "identity_http_request_duration_seconds_count"
        lookups = {"route": "/v1/users/<uuid:user_id>", "method": "GET", "status": "200"}
        # Several scrapes, answered by either worker: each adds up both.
        for _ in range(4):
            found = scrape(base, key)
            assert grew(found, requests, **lookups) == LOOKUPS
            login = {"route": "/v1/auth/login", "method": "POST", "status": "401"}
            assert grew(found, requests, **login) == FAILED_LOGINS
            events = "identity_security_events_total"
            assert grew(found, events, event="login.failed") == FAILED_LOGINS
            assert grew(found, events, event="registration.requested") == REGISTRATIONS
            # Each worker's pool (at least one connection, at most 8) counts.
            assert counted(found, "identity_db_pool_connections", state="max") == 16
            assert counted(found, "identity_db_pool_connections", state="open") >= 2

        # The courier, a process of its own, writes each verification mail to the log and
        # counts it where the server's scrape finds it.
        sent = {"template": "verify_email", "outcome": "sent"}
        deadline = time.monotonic() + 20
        while (
            grew(found := scrape(base, key), "identity_mail_deliveries_total", **sent)
            < REGISTRATIONS
        ):
            assert time.monotonic() < deadline, "the courier's deliveries were not counted"
            time.sleep(0.2)
        assert grew(found, "identity_mail_deliveries_total", **sent) == REGISTRATIONS
        assert counted(found, "identity_outbox_queued") == 0
        assert counted(found, "identity_mail_couriers") == 1

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert not Path(counts_dir).exists(), "the metrics directory outlived the server"
    finally:
        stop(server)
