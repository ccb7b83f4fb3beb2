"""Fixtures every test layer shares: a real PostgreSQL, one database per test worker,
migrated once; each test in a transaction that is rolled back; one app per test session,
lent each test's connection."""

import fcntl
import os
import secrets
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from identity import create_app
from identity.api.guards import SERVICES
from identity.cli import DatabaseUrls
from identity.composition import build
from identity.db import EXTENSION, Database, PinnedDatabase
from identity.embedded import ensure_database, ensure_role, start_embedded, with_database
from identity.store import migrations
from tests.settings import CHEAP, settings_for
from tests.sites import EVERY_LIST, site_key_for

PROJECT_DIR = Path(__file__).resolve().parents[1]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """The tests marked `timing` first, then those marked `slow`, then the rest, each group
    in its own order. Under xdist a timing test waits for the other worker's test in hand
    to end (`alone_when_timing`), which at the start is a quick one; and the slow ones
    start early, while the quick ones fill the other worker."""
    items.sort(key=_turn)


def _turn(item) -> int:
    if item.get_closest_marker("timing"):
        return 0
    return 1 if item.get_closest_marker("slow") else 2


@pytest.fixture(autouse=True)
def alone_when_timing(request, worker_id, tmp_path_factory):
    """Under xdist, a test marked `timing` runs alone: it holds a lock that the other
    workers' tests share, so none of them runs while it measures."""
    if worker_id == "main":
        yield
        return
    # The run's own folder, which its workers share.
    path = tmp_path_factory.getbasetemp().parent / "timing.lock"
    alone = request.node.get_closest_marker("timing") is not None
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        yield


@pytest.fixture(scope="session")
def server_url():
    """A PostgreSQL server: IDENTITY_TEST_DATABASE_URL, or the embedded one."""
    url = os.environ.get("IDENTITY_TEST_DATABASE_URL")
    if url:
        yield url
        return
    server = start_embedded(PROJECT_DIR / ".data" / "test-pg")
    # A server of the tests' own, whose data no one needs after a crash: it need not wait
    # for the disk, which other work on the machine keeps busy. What a session asks of
    # synchronous_commit is unchanged (tests/store/test_durability.py).
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("alter system set fsync = off")
        conn.execute("alter system set full_page_writes = off")
        conn.execute("select pg_reload_conf()")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
def database_urls(server_url, worker_id) -> DatabaseUrls:
    """This test worker's own database, made fresh and migrated once, with the two roles
    of a deployment (of this worker's own): one that owns it and migrates it (no
    superuser), and the serving role, which every test and served app connects as, so
    every test shows the service works with rights to rows only."""
    password = secrets.token_urlsafe(18)
    owner = ensure_role(server_url, f"identity_test_owner_{worker_id}", password)
    serving = ensure_role(server_url, f"identity_test_serving_{worker_id}", password)
    name = f"identity_test_{worker_id}"
    ensure_database(server_url, name, fresh=True, owner=f"identity_test_owner_{worker_id}")
    urls = DatabaseUrls(with_database(serving, name), with_database(owner, name))
    with psycopg.connect(urls.migration, autocommit=True) as conn:
        migrations.upgrade(conn, serving_role=f"identity_test_serving_{worker_id}")
    return urls


@pytest.fixture(scope="session")
def database_url(database_urls):
    """The serving role's URL of this worker's database: rights to rows only."""
    return database_urls.serving


@pytest.fixture(scope="session")
def owner_url(database_urls):
    """The owning role's URL of this worker's database, for what only the owner may do
    (TRUNCATE, DDL): what a test does to the database, never what the service does."""
    return database_urls.migration


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


@pytest.fixture(scope="session")
def session_app(database_url):
    """The app the tests share, on a database that lends whichever connection a test
    gives it."""
    return create_app({"DATABASE_URL": database_url, **CHEAP}, database=PinnedDatabase(None))


@pytest.fixture
def app(request, conn, database_url, session_app):
    """The app, every request on the test's rolled-back connection: the session's, or for
    a test marked `timing` one of its own at the service's settings. The shared app gets
    services built anew for each test (identity.composition.build, cheap): what they keep
    in memory (site keys found valid, access tokens checked, the lists' catalog, the
    signing keys, the exports streaming) is of rolled-back data, and a test may swap a
    part (the clock, the key ring). Whatever else a test puts into app.extensions is
    taken out after it."""
    if request.node.get_closest_marker("timing"):
        yield create_app({"DATABASE_URL": database_url}, database=PinnedDatabase(conn))
        return
    shared = session_app
    database = shared.extensions[EXTENSION]
    database.conn = conn
    extensions = dict(shared.extensions)
    shared.extensions[SERVICES] = build(shared.config["IDENTITY"], database.connection)
    try:
        yield shared
    finally:
        shared.extensions.clear()
        shared.extensions.update(extensions)


@pytest.fixture
def client(app):
    """A client without credentials."""
    return app.test_client()


@pytest.fixture
def site_key(conn):
    """A key of copernica.com with every scope; the site manages every list."""
    return site_key_for(conn, "copernica.com", lists=EVERY_LIST)


@pytest.fixture
def site(app, site_key):
    """A client that sends copernica.com's site key."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {site_key}"
    return client


# What a committing test's writes are emptied from (and, by cascade, every table whose
# foreign keys lead to one of them).
EMPTIED = (
    "users",
    "site_keys",
    "sites",
    "outbox",
    "signing_keys",
    "login_throttles",
    "companies",
    "social_flows",
    "erasures",
    "suppressed_addresses",
)


@pytest.fixture
def committing_db(database_url, owner_url):
    """For tests that need real commits (parallel requests, outages): a connection
    outside any test transaction; every table is emptied afterwards (by the owner: the
    serving role may not truncate)."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn
    with psycopg.connect(owner_url, autocommit=True) as owner:
        owner.execute(f"truncate {', '.join(EMPTIED)} cascade")


@pytest.fixture
def owner_db(owner_url):
    """A committing connection as the owning role, for what a test does to the database
    that the service may not (TRUNCATE, DDL, the migrations' bookkeeping)."""
    with psycopg.connect(owner_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def pooled_app(request, database_url, committing_db):
    """The app on a real pool, as gunicorn runs it; what it writes is committed."""
    database = Database(database_url, min_size=1, max_size=8, timeout=5.0)
    database.open()
    settings = {"DATABASE_URL": database_url, **settings_for(request)}
    yield create_app(settings, database=database)
    database.close()


@pytest.fixture
def mail_server():
    """A real SMTP server on loopback (aiosmtpd) that keeps what it takes."""
    from tests.mailsink import MailServer

    server = MailServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cli(database_url, committing_db):
    """Runs `identity ...` in-process with IDENTITY_DATABASE_URL set to the test database
    (and `env` besides); asserts it succeeded, or failed when `ok=False`."""
    from click.testing import CliRunner

    from identity.cli import main

    runner = CliRunner()

    def run(*args, ok=True, env=None):
        env = {"IDENTITY_DATABASE_URL": database_url, **(env or {})}
        result = runner.invoke(main, args, env=env)
        assert (result.exit_code == 0) == ok, result.output
        return result

    return run


def pytest_terminal_summary(terminalreporter):
    """Print what tests measured (`record_property("measured", ...)`) after the run: the
    properties travel back from xdist's workers with each test's report."""
    measured = [
        value
        for report in terminalreporter.stats.get("passed", [])
        if report.when == "call"
        for name, value in report.user_properties
        if name == "measured"
    ]
    if measured:
        terminalreporter.section("measured")
        for line in measured:
            terminalreporter.write_line(line)
