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
