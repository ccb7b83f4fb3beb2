"""Races, lock order and half-sent bodies, on separate committing connections: a
rolled-back test transaction would hide every one of them."""

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests

from identity import create_app
from identity.db import Database
from identity.store.transactions import UnitOfWork
from tests.api.liveserver import serving
from tests.sites import site_key_for

NDJSON = "application/x-ndjson"

pytestmark = pytest.mark.committing


@pytest.fixture
def live(pooled_app, committing_db):
    """(base URL, site key) of the app on a threaded HTTP server, on a real pool."""
    key = site_key_for(committing_db, "copernica.com")
    with serving(pooled_app) as base_url:
        yield base_url, key


def _import(base_url, key, lines, **settings):
    body = "".join(json.dumps(line) + "\n" for line in lines)
    return requests.post(
        f"{base_url}/v1/profiles/import",
        data=body.encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": NDJSON},
        timeout=60,
    )


def test_two_imports_of_the_same_new_addresses_in_opposite_orders_do_not_deadlock(
    database_url, committing_db
):
    # Two sites, so the one-import-per-site rule lets both run at once.
    keys = [site_key_for(committing_db, name) for name in ("a.example", "b.example")]
    database = Database(database_url, min_size=2, max_size=4, timeout=10)
    database.open()
    app = create_app({"DATABASE_URL": database_url, "IMPORT_BATCH_SIZE": 50}, database=database)
    lines = [{"email": f"p{n}@example.com", "first_name": f"P{n}"} for n in range(400)]
    try:
        with serving(app) as base_url:
            for _ in range(3):
                with ThreadPoolExecutor(2) as pool:
                    answers = list(
                        pool.map(
                            lambda args: _import(base_url, *args),
                            [(keys[0], lines), (keys[1], lines[::-1])],
                        )
                    )
                for answer in answers:
                    assert answer.status_code == 200, answer.text
                    summary = json.loads(answer.text.splitlines()[-1])["summary"]
                    assert summary["rejected"] == 0 and summary["lines"] == 400
                committing_db.execute("delete from users")
    finally:
        database.close()


def test_the_same_new_address_50_times_at_once_makes_one_record(live, committing_db):
    base_url, key = live

    def submit(n):
        return requests.post(
            f"{base_url}/v1/profiles",
            json={"email": "Anna@Example.com", "source": "event", "first_name": f"A{n}"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )

    with ThreadPoolExecutor(16) as pool:
        statuses = sorted(response.status_code for response in pool.map(submit, range(50)))
    assert statuses == [200] * 49 + [201]
    rows = committing_db.execute("select email_key from users").fetchall()
    assert rows == [{"email_key": "anna@example.com"}]


def test_a_deadlock_is_retried_and_both_writers_finish(database_url, committing_db):
    committing_db.execute(
        "insert into users (email, email_key) values ('a@example.com', 'a@example.com'),"
        " ('b@example.com', 'b@example.com')"
    )
    both_locked_one = threading.Barrier(2)
    attempts = {"a": 0, "b": 0}

    def writer(name, first, second):
        with psycopg.connect(database_url, autocommit=True) as conn:
            uow = UnitOfWork.of(conn)

            def work():
                attempts[name] += 1
                uow.conn.execute("update users set first_name = %s where email = %s", (name, first))
                if attempts[name] == 1:
                    both_locked_one.wait(timeout=10)
                uow.conn.execute("update users set last_name = %s where email = %s", (name, second))

            uow.run(work)

    threads = [
        threading.Thread(target=writer, args=("a", "a@example.com", "b@example.com")),
        threading.Thread(target=writer, args=("b", "b@example.com", "a@example.com")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(attempts.values()) == 3  # one of them was chosen as the victim and ran again
    rows = committing_db.execute("select first_name, last_name from users").fetchall()
    assert all(row["first_name"] and row["last_name"] for row in rows)


def _send_short(base_url: str, path: str, key: str, content_type: str, body: bytes, claim: int):
    """Send `body` under a Content-Length of `claim` (more), then stop sending; the answer."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {claim}\r\n"
            "Connection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


def test_an_import_body_shorter_than_its_content_length_writes_nothing_of_the_cut_part(
    database_url, committing_db
):
    key = site_key_for(committing_db, "copernica.com")
    database = Database(database_url, min_size=1, max_size=2, timeout=10)
    database.open()
    # Checked in this process, so the first batch is written before the second is read.
    settings = {"DATABASE_URL": database_url, "IMPORT_BATCH_SIZE": 2, "IMPORT_PROCESSES": 0}
    app = create_app(settings, database=database)
    body = (
        b'{"email": "a@example.com"}\n{"email": "b@example.com"}\n'
        b'{"email": "c@example.com"}\n{"email": "d@example.com", "first_name": "Ba'
    )
    try:
        with serving(app) as base_url:
            status, answer = _send_short(
                base_url, "/v1/profiles/import", key, NDJSON, body, len(body) + 10
            )
    finally:
        database.close()
    assert status == 400
    problem = json.loads(answer)
    assert problem["lines_done"] == 2
    assert "line 2" in problem["detail"] and "nothing was done" not in problem["detail"]
    emails = {row["email"] for row in committing_db.execute("select email from users")}
    assert emails == {"a@example.com", "b@example.com"}


def test_a_json_body_shorter_than_its_content_length_is_a_400_and_writes_nothing(
    live, committing_db
):
    base_url, key = live
    body = b'{"email": "anna@example.com", "source": "event", "first_name": "Bart"}'
    status, answer = _send_short(
        base_url, "/v1/profiles", key, "application/json", body[:-12], len(body)
    )
    assert status == 400
    assert json.loads(answer)["status"] == 400
    assert committing_db.execute("select count(*) as n from users").fetchone()["n"] == 0


def test_a_second_import_of_the_same_site_while_one_runs_is_a_429(live, committing_db):
    base_url, key = live
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as first:
        first.sendall(
            (
                f"POST /v1/profiles/import HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {key}\r\nContent-Type: {NDJSON}\r\n"
                "Content-Length: 1000000\r\nConnection: close\r\n\r\n"
                '{"email": "a@example.com"}\n'
            ).encode()
        )
        deadline = time.monotonic() + 10
        # pg_locks is the whole server's: another test worker's database has its own.
        while not committing_db.execute(
            "select count(*) as n from pg_locks where locktype = 'advisory' and database ="
            " (select oid from pg_database where datname = current_database())"
        ).fetchone()["n"]:  # until the first has taken the site's import lock
            assert time.monotonic() < deadline
            time.sleep(0.02)
        second = _import(base_url, key, [{"email": "b@example.com"}])
        assert second.status_code == 429, second.text
        assert second.headers["Content-Type"] == "application/problem+json"
        assert int(second.headers["Retry-After"]) > 0
    # The first client went away: its lock went with its request.
    third = _import(base_url, key, [{"email": "c@example.com"}])
    for _ in range(50):
        if third.status_code == 200:
            break
        third = _import(base_url, key, [{"email": "c@example.com"}])
    assert third.status_code == 200
    emails = {row["email"] for row in committing_db.execute("select email from users")}
    assert "b@example.com" not in emails and "c@example.com" in emails
