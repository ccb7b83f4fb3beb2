"""`identity serve` keeps a mail courier beside the server: one killed is started again,
with the reason logged; a relay URL it cannot read stops it at start."""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.mail.conftest import IDENTITY, queue, wait_until
from tests.test_cli import free_port, stop, wait_ready

pytestmark = pytest.mark.committing


def couriers_of(parent: int) -> list[int]:
    """The pids of `identity mail deliver` processes whose parent is `parent`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"mail\0deliver" in command:
            found.append(int(stat.parent.name))
    return found


def serve_env(tmp_path, urls, relay_url: str) -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | {
        "IDENTITY_DATABASE_URL": urls.serving,
        "IDENTITY_MIGRATION_DATABASE_URL": urls.migration,
        "IDENTITY_SMTP_URL": relay_url,
        "IDENTITY_DATA_DIR": str(tmp_path / "data"),
        "IDENTITY_MAIL_POLL_SECONDS": "0.2",
        "PORT": str(free_port()),
    }


def test_serve_starts_a_courier_killed_with_sigkill_again_and_logs_why(
    tmp_path, database_urls, db, mail_server
):
    env = serve_env(tmp_path, database_urls, mail_server.url)
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [IDENTITY, "serve", "--workers", "1"], env=env, stdout=output, stderr=output
        )
    try:
        wait_ready(f"http://127.0.0.1:{env['PORT']}", server)
        (first,) = wait_until(lambda: couriers_of(server.pid), 20, "a courier beside the server")
        os.kill(first, signal.SIGKILL)
        (second,) = wait_until(
            lambda: [pid for pid in couriers_of(server.pid) if pid != first],
            10,
            "the courier started again",
        )
        queue(db, 1)
        mail_server.sink.wait_for(1, timeout=15)

        lines = [json.loads(line) for line in log.read_text().splitlines() if line[:1] == "{"]
        (exited,) = [
            line for line in lines if line.get("message", "").startswith("mail courier exited")
        ]
        assert (exited["pid"], exited["signal"], exited["exit_code"]) == (first, "SIGKILL", None)
        assert exited["restart_in_seconds"] == 1.0

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert not Path(f"/proc/{second}").exists(), "the courier outlived the server"
    finally:
        stop(server)


@pytest.mark.parametrize(
    ("relay_url", "says"),
    [
        ("smtp://[::1", "IDENTITY_SMTP_URL must look like smtp://host:port"),
        ("smtp://relay.example.com:25x", "IDENTITY_SMTP_URL has a port that is not a number"),
    ],
)
def test_serve_refuses_a_relay_url_it_cannot_read_with_one_error_line(
    tmp_path, database_urls, relay_url, says
):
    env = serve_env(tmp_path, database_urls, relay_url)
    server = subprocess.Popen(
        [IDENTITY, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = server.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        stop(server)
        raise AssertionError("serve started with a relay URL it cannot read") from None
    assert server.returncode == 1 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("Error: ") and says in line
