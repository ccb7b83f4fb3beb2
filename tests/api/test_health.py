import psycopg
from psycopg.rows import dict_row

from identity import create_app
from identity.db import PinnedDatabase
from identity.embedded import ensure_database
from tests.api.problems import assert_problem


def test_live_answers_without_credentials(client):
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_ready_when_the_database_answers_and_is_migrated(client):
    assert client.get("/health/ready").get_json() == {
        "status": "ok",
        "mail": {"status": "ok", "oldest_queued_seconds": 0, "couriers": 0},
    }


def test_not_ready_while_migrations_are_pending(server_url, worker_id):
    url = ensure_database(server_url, f"identity_unmigrated_{worker_id}", fresh=True)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        app = create_app({"DATABASE_URL": url}, database=PinnedDatabase(conn))
        body = assert_problem(app.test_client().get("/health/ready"), 503)
    assert "0001_sites_and_users" in body["detail"]


def test_not_ready_while_the_replica_drains_before_it_stops(client, monkeypatch):
    """On SIGTERM with IDENTITY_DRAIN_SECONDS, gunicorn's master says it is draining
    (identity.serving.drain_before_stopping, shown end to end by tests/test_replicas.py):
    the load balancer's check gets a 503 while every other request is still answered."""
    monkeypatch.setattr("identity.api.health.draining", lambda: True)
    body = assert_problem(client.get("/health/ready"), 503)
    assert "stopping" in body["detail"]
    assert client.get("/health/live").status_code == 200
