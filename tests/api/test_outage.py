import io
import json
import time

import pytest

from identity import create_app
from identity.db import Database
from tests.api.problems import assert_problem
from tests.api.tcpproxy import DatabaseProxy
from tests.sites import site_key_for


@pytest.fixture
def proxy(database_url):
    proxy = DatabaseProxy(database_url)
    yield proxy
    proxy.close()


@pytest.fixture
def client(proxy, committing_db):
    database = Database(proxy.url, min_size=1, max_size=4, timeout=1.0)
    database.open()
    app = create_app({"DATABASE_URL": proxy.url}, database=database)
    client = app.test_client()
    key = site_key_for(committing_db, "copernica.com")
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    yield client
    database.close()


def test_an_outage_is_a_503_problem_and_the_service_recovers_by_itself(
    client, proxy, committing_db
):
    made = client.post("/v1/profiles", json={"email": "anna@example.com", "source": "event"})
    assert made.status_code == 201
    path = made.headers["Location"]

    proxy.cut()
    for response in (
        client.get(path),
        client.get("/health/ready"),
        client.post("/v1/profiles", json={"email": "bob@example.com", "source": "event"}),
    ):
        body = assert_problem(response, 503)
        assert response.headers["Retry-After"]
        assert "database" in body["detail"]
    assert client.get("/health/live").status_code == 200

    proxy.restore()
    deadline = time.monotonic() + 15
    while client.get(path).status_code != 200:
        assert time.monotonic() < deadline, "the service did not recover"
        time.sleep(0.2)
    assert client.get("/health/ready").status_code == 200
    emails = [row["email"] for row in committing_db.execute("select email from users")]
    assert emails == ["anna@example.com"]


def test_after_a_database_restart_no_request_fails_on_a_stale_connection(client, proxy):
    made = client.post("/v1/profiles", json={"email": "anna@example.com", "source": "event"})
    path = made.headers["Location"]
    assert client.get(path).status_code == 200
    proxy.cut()  # every pooled connection is now dead, but the pool does not know it yet
    proxy.restore()
    for _ in range(5):
        assert client.get(path).status_code == 200


class CutsTheDatabase(io.RawIOBase):
    """An import body, a line per read, that cuts the database off after `cut_after`
    lines have been read: an outage in the middle of an import."""

    def __init__(self, lines: list[bytes], cut_after: int, proxy: DatabaseProxy):
        self.lines, self.cut_after, self.proxy, self.given = lines, cut_after, proxy, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.given == self.cut_after:
            self.proxy.cut()
        if self.given >= len(self.lines):
            return 0
        line = self.lines[self.given]
        self.given += 1
        buffer[: len(line)] = line
        return len(line)


def test_an_import_cut_off_by_an_outage_says_how_many_lines_were_written(proxy, committing_db):
    database = Database(proxy.url, min_size=1, max_size=2, timeout=1.0)
    database.open()
    settings = {"IMPORT_BATCH_SIZE": 2, "IMPORT_PROCESSES": 0}
    app = create_app({"DATABASE_URL": proxy.url, **settings}, database=database)
    client = app.test_client()
    key = site_key_for(committing_db, "copernica.com")
    lines = [json.dumps({"email": f"p{n}@example.com"}).encode() + b"\n" for n in range(20)]
    body = CutsTheDatabase(lines, cut_after=7, proxy=proxy)
    try:
        response = client.post(
            "/v1/profiles/import",
            content_type="application/x-ndjson",
            headers={"Authorization": f"Bearer {key}"},
            environ_overrides={"wsgi.input": body, "CONTENT_LENGTH": str(sum(map(len, lines)))},
        )
    finally:
        database.close()
    problem = assert_problem(response, 503)
    written = committing_db.execute("select count(*) as n from users").fetchone()["n"]
    assert 0 < written < 20
    assert problem["lines_done"] == written
    assert f"line {written}" in problem["detail"]


def test_a_full_pool_whose_every_connection_the_server_ended_costs_no_request(
    database_url, committing_db
):
    """After a PostgreSQL restart or failover every pooled connection is dead. The first
    request to meet one gets a live connection without waiting, and so does every one
    after it: none waits out the pool's pauses into a 503."""
    database = Database(database_url, min_size=8, max_size=8, timeout=3.0)
    database.open()
    database.pool.wait(timeout=10)
    try:
        app = create_app({"DATABASE_URL": database_url}, database=database)
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = (
            f"Bearer {site_key_for(committing_db, 'copernica.com')}"
        )
        assert client.get("/v1/newsletters").status_code == 200
        ended = committing_db.execute(
            "select count(pg_terminate_backend(pid)) as n from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid()"
            " and backend_type = 'client backend' and usename = current_user"
        ).fetchone()["n"]
        assert ended >= 8
        time.sleep(0.2)  # the server's goodbye reaches every socket
        started = time.monotonic()
        # Each asks the database: readiness reads the applied migrations.
        statuses = [client.get("/health/ready").status_code for _ in range(50)]
        assert statuses == [200] * 50
        assert time.monotonic() - started < 5  # no pauses of a second a dead connection
    finally:
        database.close()


def _end_other_sessions(conn) -> None:
    conn.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity"
        " where datname = current_database() and pid <> pg_backend_pid()"
        " and backend_type = 'client backend' and usename = current_user"
    )
    time.sleep(0.2)


def test_a_read_only_database_is_a_503_for_writes_and_readiness_says_so(
    database_url, committing_db, owner_db
):
    """A failover under way or a database set read-only: every write is a 503 problem with
    Retry-After (not a 500), reads go on, readiness says why; writable again, it heals."""
    database = Database(database_url, min_size=2, max_size=4, timeout=3.0)
    database.open()
    name = committing_db.execute("select current_database() as n").fetchone()["n"]
    try:
        app = create_app(
            {"DATABASE_URL": database_url, "SITE_KEY_CACHE_SECONDS": 60}, database=database
        )
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = (
            f"Bearer {site_key_for(committing_db, 'copernica.com')}"
        )
        made = client.post("/v1/profiles", json={"email": "anna@example.com", "source": "event"})
        assert made.status_code == 201
        owner_db.execute(f'alter database "{name}" set default_transaction_read_only = on')
        _end_other_sessions(committing_db)

        refused = client.post("/v1/profiles", json={"email": "bob@example.com", "source": "event"})
        body = assert_problem(refused, 503)
        assert int(refused.headers["Retry-After"]) >= 1
        assert "takes no changes" in body["detail"]
        assert client.get(made.headers["Location"]).status_code == 200  # reads go on
        ready = assert_problem(client.get("/health/ready"), 503)
        assert "read-only" in ready["detail"]

        owner_db.execute(f'alter database "{name}" reset default_transaction_read_only')
        _end_other_sessions(committing_db)
        again = client.post("/v1/profiles", json={"email": "bob@example.com", "source": "event"})
        assert again.status_code == 201
        assert client.get("/health/ready").status_code == 200
    finally:
        owner_db.execute(f'alter database "{name}" reset default_transaction_read_only')
        database.close()
