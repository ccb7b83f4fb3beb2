"""The account flows called as the HTTP face calls them, on the test's rolled-back
connection, with cheap argon2 whose every call checks that no connection is held."""

import uuid

import pytest

from identity.config import load_config
from identity.security.access_tokens import KeyRing
from identity.security.passwords import Passwords
from identity.services.accounts import Accounts, account_settings
from identity.services.principal import Browser, Principal, SiteCaller
from identity.store.transactions import UnitOfWork


class Watched:
    """The unit of work the flows are given; every password check or hash asserts it
    holds no connection (and so no transaction or row lock) while it runs."""

    def __init__(self, conn):
        self.uow = UnitOfWork.of(conn)
        self.calls = 0

    def offload(self, fn, *args):
        assert not self.uow.holds_connection, f"{fn.__name__} ran with a connection held"
        self.calls += 1
        return fn(*args)


@pytest.fixture
def watched(conn):
    return Watched(conn)


@pytest.fixture
def accounts(conn, watched):
    settings = load_config({"DATABASE_URL": "postgresql://unused"})
    passwords = Passwords(time_cost=1, memory_kib=64, parallelism=1, offload=watched.offload)
    ring = KeyRing(lambda: _lend(conn), settings["SECRET_KEY"])
    return Accounts.build(account_settings(settings), passwords, ring)


class _lend:
    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        return self.conn

    def __exit__(self, *exc):
        return False


@pytest.fixture
def principal(conn):
    """copernica.com's key, with its pages (where its mails' links lead)."""
    site = conn.execute(
        "insert into sites (name, pages_url) values ('copernica.com', 'https://copernica.com')"
        " returning id, name, pages_url"
    ).fetchone()
    caller = SiteCaller(
        site["id"], site["name"], uuid.uuid4(), frozenset({"auth"}), site["pages_url"]
    )
    return Principal(site=caller, browser=Browser("203.0.113.7", "pytest"))
