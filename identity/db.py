"""The psycopg pool, and the unit of work: the one way a request or a job reaches the
database (at most one connection, lazily, and one transaction on it)."""

import logging
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from flask import Flask, current_app, g
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from identity.errors import ConfigurationError, DatabaseUnavailable
from identity.store.transactions import UnitOfWork

log = logging.getLogger(__name__)

EXTENSION = "identity.db"


def is_alive(conn: psycopg.Connection) -> bool:
    """Whether a pooled connection still works, at the cost of a poll, not a query.

    An idle connection has nothing to read, unless the server has closed it (a restart,
    a failover, an idle-in-transaction timeout) or said something before closing. Only
    then is it asked a real question, which fails for a closed one. Asking every time
    would be a second round trip per request.
    """
    if conn.closed:
        return False
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    if not readable:
        return True
    try:
        ConnectionPool.check_connection(conn)
    except psycopg.Error:
        return False
    return True


class _Lending:
    """What every kind of database shares: a connection for a moment."""

    def acquire(self) -> psycopg.Connection:
        raise NotImplementedError

    def release(self, conn: psycopg.Connection) -> None:
        raise NotImplementedError

    def pool_stats(self) -> dict[str, int]:
        """psycopg_pool's numbers (`pool_size`, `pool_available`, `requests_waiting`, ...);
        none for a database that is not a pool."""
        return {}

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection for a moment (checking a key), given back when the block ends."""
        conn = self.acquire()
        try:
            yield conn
        finally:
            self.release(conn)


class Database(_Lending):
    """A pool of autocommit connections; writes open `with conn.transaction():` themselves.

    A connection that breaks is dropped when it comes back and the pool makes new ones,
    so the service recovers by itself once PostgreSQL is reachable again.
    """

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 8,
        timeout: float = 3.0,
        session_settings: dict[str, int | str] | None = None,
    ):
        self.timeout = timeout
        self._drained_at = float("-inf")
        options = " ".join(f"-c {name}={value}" for name, value in (session_settings or {}).items())
        self.pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "connect_timeout": 3,
                **({"options": options} if options else {}),
            },
            open=False,
            name="identity",
        )

    def open(self) -> None:
        # Not waiting: a replica whose database is down still starts and answers 503.
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    def pool_stats(self) -> dict[str, int]:
        return self.pool.get_stats()

    def acquire(self) -> psycopg.Connection:
        """A live connection. One the server closed (a restart, a failover: then, most
        likely, every idle one) is given back, which discards it, and every idle
        connection is dropped and made anew at once, so the requests that follow draw new
        ones instead of each meeting a dead one. psycopg_pool's own check would pause a
        growing second or more after each dead connection it met."""
        deadline = time.monotonic() + self.timeout
        while True:
            conn = self._borrow(deadline)
            if is_alive(conn):
                return conn
            self.pool.putconn(conn)
            now = time.monotonic()
            # At most one drain a second: the requests that meet the dead connections of
            # one restart together must not drop each other's new ones.
            if now - self._drained_at > 1.0:
                self._drained_at = now
                log.warning("the database closed pooled connections; making new ones")
                self.pool.drain()

    def _borrow(self, deadline: float) -> psycopg.Connection:
        try:
            return self.pool.getconn(timeout=max(0.001, deadline - time.monotonic()))
        except PoolTimeout:
            stats = self.pool.get_stats()
            log.warning(
                "no database connection to lend in time",
                extra={
                    "pool_size": stats.get("pool_size"),
                    "waiting": stats.get("requests_waiting"),
                    "connection_errors": stats.get("connections_errors"),
                },
            )
            raise DatabaseUnavailable("the database cannot be reached; try again shortly") from None

    def release(self, conn: psycopg.Connection) -> None:
        self.pool.putconn(conn)


class PinnedDatabase(_Lending):
    """Hands one given connection to every request: tests wrap it in a rolled-back transaction."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def acquire(self) -> psycopg.Connection:
        return self.conn

    def release(self, conn: psycopg.Connection) -> None:
        pass


def init_app(app: Flask, database=None) -> "_Lending":
    """Attach a database (a new pool on DATABASE_URL unless one is given) to the app."""
    if database is None:
        config = app.config["IDENTITY"]
        # Without a URL libpq would connect to whatever its defaults find on this host.
        if not config["DATABASE_URL"]:
            raise ConfigurationError(
                "IDENTITY_DATABASE_URL is not set; the app needs the PostgreSQL to serve from"
                " (`identity serve` starts the embedded one and sets it)"
            )
        database = Database(
            config["DATABASE_URL"],
            min_size=config["DB_POOL_MIN"],
            max_size=config["DB_POOL_MAX"],
            timeout=config["DB_TIMEOUT"],
            session_settings={
                "statement_timeout": config["DB_STATEMENT_TIMEOUT_MS"],
                "lock_timeout": config["DB_LOCK_TIMEOUT_MS"],
                "idle_in_transaction_session_timeout": config["DB_IDLE_IN_TRANSACTION_MS"],
                # A statement psycopg has prepared (from its fifth run on a connection)
                # is planned once, not again at every run. PostgreSQL's own choice kept
                # re-planning those that take arrays (it guesses 100 elements for an array
                # parameter, so the generic plan looks dearer than one made for the
                # array at hand): a one-click's statement spent 0.5 ms of PostgreSQL's CPU
                # being planned each time, half of all it cost. Every statement here
                # finds its rows through an index whatever the values; a statement whose
                # best plan depends on them would need its own setting.
                "plan_cache_mode": "force_generic_plan",
            },
        )
        database.open()
    app.extensions[EXTENSION] = database
    app.teardown_appcontext(_close_unit_of_work)
    return database


def unit_of_work() -> UnitOfWork:
    """This request's unit of work, made on first use and closed on teardown."""
    if "uow" not in g:
        g.uow = UnitOfWork(current_app.extensions[EXTENSION])
    return g.uow


def _close_unit_of_work(_exc) -> None:
    uow = g.pop("uow", None)
    if uow is not None:
        uow.close()


class NoDatabase(_Lending):
    """For commands that only need the app's routes (`identity openapi write`)."""

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def acquire(self) -> psycopg.Connection:
        raise DatabaseUnavailable("this app was made without a database")

    def release(self, conn: psycopg.Connection) -> None:
        pass
