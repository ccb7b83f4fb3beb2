"""Slow clients against the service as `identity serve` runs it (gunicorn, our gevent
worker): they must not hold up anyone else, and they are cut off in the end."""

import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.exports import ndjson_rows
from tests.served import gunicorn_command, gunicorn_env
from tests.sites import EVERY_LIST, site_key_for
from tests.test_cli import free_port, stop, wait_ready

pytestmark = [pytest.mark.committing, pytest.mark.slow]

HEADER_TIMEOUT = 2
BODY_TIMEOUT = 2
SEND_TIMEOUT = 2
IMPORT_IDLE = 2


@pytest.fixture(scope="module")
def gunicorn(database_url, tmp_path_factory):
    """(host, port, error log) of gunicorn with our settings, on the test database: one
    for the module, as starting and stopping one takes seconds."""
    port = free_port()
    env = gunicorn_env(
        database_url,
        HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        SEND_TIMEOUT_SECONDS=str(SEND_TIMEOUT),
        IMPORT_IDLE_SECONDS=str(IMPORT_IDLE),
        IMPORT_BATCH_SIZE="100",
        DB_LOCK_TIMEOUT_MS="3000",
    )
    command = gunicorn_command(port)
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    log = log_path.open("wb")
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_ready(f"http://127.0.0.1:{port}", server)
        yield "127.0.0.1", port, log_path
    finally:
        stop(server)
        log.close()


@pytest.fixture
def served(gunicorn, committing_db):
    """(host, port, site key) of the module's gunicorn, with a key of copernica.com's."""
    host, port, _ = gunicorn
    return host, port, site_key_for(committing_db, "copernica.com", lists=EVERY_LIST)


@pytest.fixture
def error_log(gunicorn):
    """What gunicorn writes to its error log during the test, read when called."""
    log_path = gunicorn[2]
    start = log_path.stat().st_size
    return lambda: log_path.read_bytes()[start:].decode()


def _live_seconds(host, port) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(f"http://{host}:{port}/health/live", timeout=5) as response:
        assert response.status == 200
    return time.monotonic() - started


def _answer(sock) -> tuple[int, dict | None]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    if not data:
        return 0, None
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"application/problem+json" in head
    assert b"\r\nX-Request-ID: " in head, head
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_idle_and_trickling_clients_do_not_hold_up_others_and_are_cut_off(served):
    host, port, key = served
    idle = []
    for _ in range(200):
        sock = socket.create_connection((host, port))
        sock.sendall(b"GET /health/li")  # half a request line, then nothing
        idle.append(sock)
    trickler = socket.create_connection((host, port))
    trickler.sendall(
        (
            f"POST /v1/profiles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
        ).encode()
    )
    stop_trickling = threading.Event()

    def trickle():
        for char in b'{"email": "slow@example.com", "source": "event"' + b" " * 150:
            if stop_trickling.is_set():
                return
            try:
                trickler.send(bytes([char]))
            except OSError:
                return
            time.sleep(0.1)

    started = time.monotonic()
    threading.Thread(target=trickle, daemon=True).start()
    try:
        latencies = [_live_seconds(host, port) for _ in range(10)]
        assert max(latencies) < 0.5, latencies
        # The trickled body is cut off at its deadline: a 408 problem, unless the reset
        # of a connection closed while the client still sends overtakes it.
        trickler.settimeout(BODY_TIMEOUT + 5)
        try:
            status, problem = _answer(trickler)
            assert status == 408 and problem["status"] == 408
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < BODY_TIMEOUT + 3
        # And the idle ones at the header deadline (closed, or reset).
        idle[0].settimeout(HEADER_TIMEOUT + 5)
        with contextlib.suppress(ConnectionResetError):
            assert idle[0].recv(10) == b""
    finally:
        stop_trickling.set()
        for sock in [*idle, trickler]:
            sock.close()


def test_a_stranger_is_refused_before_the_body_is_waited_for(served):
    host, port, _ = served
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/profiles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer idsk_nope\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        started = time.monotonic()
        data = sock.recv(65536)
        assert time.monotonic() - started < 1
        # The body left unread is not read after the answer: the connection closes.
        sock.settimeout(2)
        while chunk := sock.recv(65536):  # a socket.timeout here: it stayed open
            data += chunk
    assert data.startswith(b"HTTP/1.1 401")
    assert b"\r\nConnection: close\r\n" in data


def test_a_connection_whose_body_was_read_stays_open(served):
    host, port, key = served
    body = json.dumps({"email": "anna@example.com", "source": "event"}).encode()
    with socket.create_connection((host, port), timeout=5) as sock:
        for _ in range(2):
            sock.sendall(
                b"POST /v1/profiles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + key.encode()
                + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                + body
            )
            head = _one_answer(sock)
            assert head.startswith((b"HTTP/1.1 201", b"HTTP/1.1 200"))
            assert b"Connection: keep-alive" in head


def _one_answer(sock) -> bytes:
    """One whole answer on a kept-alive connection (its head and body can come in
    separate pieces); its head."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        # Sizes that gunicorn reads whole before it answers: bytes left unread when it
        # closes would reset the connection before the answer is read.
        (b"GET /" + b"x" * 5000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % n for n in range(120)) + b"\r\n", 431),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
    ],
    ids=["bad request line", "request line too long", "too many headers", "two framings"],
)
def test_what_gunicorn_answers_itself_is_problem_json(served, request_bytes, status):
    host, port, _ = served
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(request_bytes)
        answered, problem = _answer(sock)
    assert answered == status == problem["status"]
    assert problem["title"] and problem["detail"]


def test_a_request_waiting_on_the_database_does_not_hold_up_the_others(served, committing_db):
    host, port, key = served
    blocked = threading.Event()

    def look_up():
        request = urllib.request.Request(
            f"http://{host}:{port}/v1/users?email=anna@example.com",
            headers={"Authorization": f"Bearer {key}"},
        )
        blocked.set()
        with contextlib.suppress(urllib.error.HTTPError):  # 503 once the lock times out
            urllib.request.urlopen(request, timeout=10)

    with committing_db.transaction():
        committing_db.execute("lock table users in access exclusive mode")
        waiting = threading.Thread(target=look_up)
        waiting.start()
        blocked.wait(5)
        time.sleep(0.3)  # the look-up now waits for the lock, inside a query
        latencies = [_live_seconds(host, port) for _ in range(5)]
    waiting.join(timeout=10)
    assert max(latencies) < 0.5, latencies


def test_a_client_that_stops_reading_an_export_is_cut_off(served, committing_db, error_log):
    """An export whose reader stalls holds a batch in the send; after SEND_TIMEOUT the
    connection is cut and the rest is never produced."""
    host, port, key = served
    committing_db.execute(
        """
        with made as (
            insert into users (email, email_key)
            select 'reader' || i || '@example.com', 'reader' || i || '@example.com'
            from generate_series(1, 60000) as i
            returning id
        )
        insert into subscriptions (user_id, newsletter, state)
        select id, 2, 'subscribed' from made
        """
    )
    with socket.socket() as sock:
        # A small receive buffer, so the server's sends stall after a few megabytes of
        # the twenty; not smaller than a loopback segment (64 KiB): with a window under
        # one segment, TCP waits for its persist timer (seconds, backing off) to send on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        sock.connect((host, port))
        sock.sendall(
            f"GET /v1/newsletters/copernica-updates/subscribers HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {key}\r\n\r\n".encode()
        )
        time.sleep(SEND_TIMEOUT + 3)  # reads nothing meanwhile
        sock.settimeout(30)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    assert received.startswith(b"HTTP/1.1 200 ")
    assert not received.endswith(b"\r\n0\r\n\r\n")  # cut, not finished
    assert b'"complete"' not in received  # and the body says so too
    assert received.count(b"@example.com") < 60000
    assert _live_seconds(host, port) < 1
    whole = urllib.request.Request(
        f"http://{host}:{port}/v1/newsletters/copernica-updates/subscribers?limit=20000",
        headers={"Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(whole, timeout=30) as response:  # a reader that reads
        assert len(ndjson_rows(response.read().decode())) == 20000
    log = error_log()
    assert "client left an answer unread" in log and "Traceback" not in log
    assert '"level": "error"' not in log


def _start_import(host, port, key) -> socket.socket:
    sock = socket.create_connection((host, port))
    sock.sendall(
        f"POST /v1/profiles/import?source=event HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/x-ndjson\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
    )
    return sock


def _send_lines(sock, numbers: range) -> None:
    """Lines of about 150 bytes: the import reads its body 256 KiB at a time."""
    lines = b"".join(
        b'{"email": "line%d@example.com", "first_name": "%s"}\n' % (n, b"a" * 100) for n in numbers
    )
    sock.sendall(b"%x\r\n%s\r\n" % (len(lines), lines))


def _written(conn) -> set[int]:
    rows = conn.execute("select email from users where email like 'line%'").fetchall()
    return {int(r["email"].removeprefix("line").removesuffix("@example.com")) for r in rows}


def test_an_import_whose_body_stops_arriving_is_cut_off_and_lets_go_of_its_lock(
    served, committing_db
):
    """A body that stops arriving held the site's import lock and a connection for the
    import's whole ten minutes; it is cut off after IDENTITY_IMPORT_IDLE_SECONDS."""
    host, port, key = served
    with _start_import(host, port, key) as sock:
        _send_lines(sock, range(4000))  # then nothing more
        started = time.monotonic()
        status, body = _answer(sock)
    assert status == 408 and "stopped arriving" in body["detail"]
    done = body["lines_done"]
    assert done > 0 and done % 100 == 0  # whole batches, written and kept
    assert IMPORT_IDLE - 0.5 < time.monotonic() - started < IMPORT_IDLE + 10
    assert _written(committing_db) == set(range(done))
    again = urllib.request.Request(  # the lock is let go: the next import runs at once
        f"http://{host}:{port}/v1/profiles/import?source=event",
        data=b'{"email": "next@example.com"}\n',
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"},
    )
    with urllib.request.urlopen(again, timeout=10) as response:
        assert response.status == 200


def test_an_import_under_way_when_the_server_is_stopped_says_how_far_it_got(
    database_url, committing_db, tmp_path
):
    """SIGTERM: the import ends at its next batch with a 503 that says how far it got,
    within the grace period, instead of its connection being reset when that runs out."""
    port = free_port()
    env = gunicorn_env(
        database_url, IMPORT_BATCH_SIZE="100", IMPORT_IDLE_SECONDS="60", STOP_GRACE_SECONDS="20"
    )
    command = gunicorn_command(port)
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_ready(f"http://127.0.0.1:{port}", server)
        key = site_key_for(committing_db, "copernica.com")
        with _start_import("127.0.0.1", port, key) as sock:
            _send_lines(sock, range(4000))
            time.sleep(2)  # what arrived is written; the import waits for more
            server.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            started = time.monotonic()
            # More comes, sent whole before the answer is read (as most clients do): the
            # import ends at its next batch, reads the rest and answers.
            _send_lines(sock, range(4000, 8000))
            sock.sendall(b"0\r\n\r\n")
            status, body = _answer(sock)
        assert status == 503, body
        assert "stopping" in body["detail"]
        done = body["lines_done"]
        assert done >= 1000 and done % 100 == 0
        assert time.monotonic() - started < 5
        assert _written(committing_db) == set(range(done))
        assert server.wait(timeout=20) == 0
    finally:
        stop(server)
        log.close()
