import time

import pytest

from identity import create_app
from identity.db import Database
from identity.services.sites import issue_site_key
from tests.api.problems import assert_problem
from tests.api.tcpproxy import DatabaseProxy


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
    key = issue_site_key(committing_db, "copernica.com")
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
