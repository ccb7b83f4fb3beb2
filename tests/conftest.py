"""Fixtures every test layer shares: a real PostgreSQL, one database per test worker,
migrated once; each test in a transaction that is rolled back."""

import os
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from identity import create_app
from identity.db import Database, PinnedDatabase
from identity.embedded import ensure_database, start_embedded
from identity.store import migrations
from tests.sites import site_key_for

PROJECT_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def server_url():
    """A PostgreSQL server: IDENTITY_TEST_DATABASE_URL, or the embedded one."""
    url = os.environ.get("IDENTITY_TEST_DATABASE_URL")
    if url:
        yield url
        return
    server = start_embedded(PROJECT_DIR / ".data" / "test-pg")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
def database_url(server_url, worker_id):
    """This test worker's own database, made fresh and migrated once."""
    url = ensure_database(server_url, f"identity_test_{worker_id}", fresh=True)
    with psycopg.connect(url, autocommit=True) as conn:
        migrations.upgrade(conn)
    return url


@pytest.fixture(scope="session")
def worker_id(request):
    """pytest-xdist's worker name when it runs the tests, else "main"."""
    return getattr(request.config, "workerinput", {}).get("workerid", "main")


@pytest.fixture
def conn(database_url):
    """A connection inside a transaction that is rolled back after the test."""
    with (
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn,
        conn.transaction(force_rollback=True),
    ):
        yield conn


@pytest.fixture
def app(conn, database_url):
    """The app, every request on the test's rolled-back connection."""
    return create_app({"DATABASE_URL": database_url}, database=PinnedDatabase(conn))


@pytest.fixture
def client(app):
    """A client without credentials."""
    return app.test_client()


@pytest.fixture
def site_key(conn):
    """A key of copernica.com with every scope."""
    return site_key_for(conn, "copernica.com")


@pytest.fixture
def site(app, site_key):
    """A client that sends copernica.com's site key."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {site_key}"
    return client


@pytest.fixture
def committing_db(database_url):
    """For tests that need real commits (parallel requests, outages): a connection
    outside any test transaction; every table is emptied afterwards."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn
        conn.execute(
            "truncate users, site_keys, sites, outbox, signing_keys, login_throttles cascade"
        )


@pytest.fixture
def pooled_app(database_url, committing_db):
    """The app on a real pool, as gunicorn runs it; what it writes is committed."""
    database = Database(database_url, min_size=1, max_size=8, timeout=5.0)
    database.open()
    yield create_app({"DATABASE_URL": database_url}, database=database)
    database.close()


@pytest.fixture
def mail_server():
    """A real SMTP server on loopback (aiosmtpd) that keeps what it takes."""
    from tests.mailsink import MailServer

    server = MailServer()
    server.start()
    yield server
    server.stop()
