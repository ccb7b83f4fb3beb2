"""A fault that gets past the app's own error handler, as `identity serve` answers it:
gunicorn's 500 says only that something went wrong, with the request id it is logged
under and the headers every answer carries, and the log holds neither the path nor the
query that came with it. A request gunicorn cannot read gets those headers too."""

import json
import socket
import subprocess
import urllib.error
import urllib.request

from identity import create_app
from tests.served import gunicorn_command, gunicorn_env
from tests.test_cli import free_port, stop, wait_ready

ADDRESS = "zebedee.quux-7731@example.org"


def faulty_app():
    """The service, with a path whose failure no Flask handler sees (as one in WSGI
    middleware, or in the error handler itself, would be)."""
    app = create_app()
    inner = app.wsgi_app

    def wsgi_app(environ, start_response):
        if environ["PATH_INFO"] == "/test/fault":
            raise RuntimeError(f"internals: {ADDRESS}")
        return inner(environ, start_response)

    app.wsgi_app = wsgi_app
    return app


def test_gunicorns_own_500_is_a_generic_problem_with_the_request_id_it_logs(database_url, tmp_path):
    port = free_port()
    env = gunicorn_env(database_url)
    command = gunicorn_command(port, "tests.api.test_served_errors:faulty_app()")
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            wait_ready(f"http://127.0.0.1:{port}", server)
            url = f"http://127.0.0.1:{port}/test/fault?email={ADDRESS}"
            try:
                urllib.request.urlopen(url, timeout=10)
                raise AssertionError("answered without an error")
            except urllib.error.HTTPError as error:
                status, headers, body = error.code, error.headers, error.read()
            unreadable = _unreadable_request(port)
        finally:
            stop(server)

    assert status == 500 and headers["Content-Type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["detail"] == "something went wrong on our side"
    assert problem["request_id"] == headers["X-Request-ID"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert unreadable.startswith(b"HTTP/1.1 400 ")
    for line in (
        b"X-Content-Type-Options: nosniff",
        b"Referrer-Policy: no-referrer",
        b"Cache-Control: no-store",
        b"Content-Type: application/problem+json",
    ):
        assert line in unreadable
    logged = log_path.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    (fault,) = [line for line in lines if line.get("message") == "unexpected error"]
    assert fault["request_id"] == problem["request_id"]
    assert fault["error_type"] == "builtins.RuntimeError" and fault["where"]
    assert ADDRESS not in logged and "/test/fault" not in logged


def _unreadable_request(port: int) -> bytes:
    """gunicorn's answer to a request line it cannot read."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"NOT A REQUEST LINE\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer
