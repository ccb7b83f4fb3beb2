"""One-click unsubscribe against the service as `identity serve` runs it (gunicorn, our
gevent worker, the JSON access log): a mail client's POST through a trusted proxy, what
the consent ledger keeps of it, and what the log keeps."""

import json
import socket
import subprocess
import urllib.request
import uuid

import pytest

from identity.config import DEV_SECRET_KEY
from identity.security.unsubscribe_tokens import UnsubscribeTokens
from tests.served import gunicorn_command, gunicorn_env
from tests.test_cli import free_port, stop, wait_ready

pytestmark = [pytest.mark.committing, pytest.mark.slow]


def test_a_one_click_post_to_gunicorn_unsubscribes_and_the_log_keeps_no_token(
    database_url, committing_db, tmp_path
):
    user_id = committing_db.execute(
        "insert into users (email, email_key) values ('anna@example.com', 'anna@example.com')"
        " returning id"
    ).fetchone()["id"]
    committing_db.execute(
        "insert into subscriptions (user_id, newsletter, state) values (%s, 1, 'subscribed')",
        (user_id,),
    )
    token = UnsubscribeTokens(DEV_SECRET_KEY, 1).sign(uuid.UUID(str(user_id)), 1)
    port = free_port()
    # The test's own connections come from 127.0.0.1: as a proxy on this machine would.
    env = gunicorn_env(database_url, TRUSTED_PROXIES="127.0.0.1")
    command = gunicorn_command(port)
    log_path = tmp_path / "served.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}", server)
        # A multipart body cut short (the client stops sending) is a 400 that changes
        # nothing, as a form or JSON body cut short is.
        assert _cut_short_multipart(port, token).startswith(b"HTTP/1.1 400")
        state = committing_db.execute("select state from subscriptions").fetchone()["state"]
        assert state == "subscribed"
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/unsubscribe/{token}",
            data=b"List-Unsubscribe=One-Click",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                # What the mailbox provider wrote itself, then the address the proxy saw.
                "X-Forwarded-For": "192.0.2.66, 203.0.113.50",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
            assert json.load(answer)["changed"] is True
    finally:
        stop(server)
    state = committing_db.execute("select state from subscriptions").fetchone()["state"]
    assert state == "unsubscribed"
    kept = committing_db.execute("select host(client_ip) as ip from consent_events").fetchone()
    assert kept["ip"] == "203.0.113.50"
    log = log_path.read_text(encoding="utf-8")
    assert '"path": "/v1/unsubscribe/<string(length=44):token>"' in log
    assert token not in log and "anna@example.com" not in log


def _cut_short_multipart(port: int, token: str) -> bytes:
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        b"One-Click\r\n--XyZ--\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/unsubscribe/{token} HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: multipart/form-data; boundary=XyZ\r\n"
            f"Content-Length: {len(body) + 20}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer
