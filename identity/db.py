"""The psycopg pool, and the one connection each request borrows from it."""

import psycopg
from flask import Flask, current_app, g
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from identity.errors import ConfigurationError, DatabaseUnavailable

EXTENSION = "identity.db"


class Database:
    """A pool of autocommit connections; writes open `with conn.transaction():` themselves.

    A connection that breaks is dropped when it comes back and the pool makes new ones,
    so the service recovers by itself once PostgreSQL is reachable again.
    """

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 3.0):
        self.pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": 3},
            open=False,
            name="identity",
        )

    def open(self) -> None:
        # Not waiting: a replica whose database is down still starts and answers 503.
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    def acquire(self) -> psycopg.Connection:
        try:
            return self.pool.getconn()
        except PoolTimeout:
            raise DatabaseUnavailable("the database cannot be reached; try again shortly") from None

    def release(self, conn: psycopg.Connection) -> None:
        self.pool.putconn(conn)


class PinnedDatabase:
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


def init_app(app: Flask, database=None) -> None:
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
        )
        database.open()
    app.extensions[EXTENSION] = database
    app.teardown_appcontext(_release_connection)


def get_conn() -> psycopg.Connection:
    """This request's connection, borrowed on first use and returned on teardown."""
    if "db_conn" not in g:
        g.db_conn = current_app.extensions[EXTENSION].acquire()
    return g.db_conn


def _release_connection(_exc) -> None:
    conn = g.pop("db_conn", None)
    if conn is not None:
        current_app.extensions[EXTENSION].release(conn)


class NoDatabase:
    """For commands that only need the app's routes (`identity openapi write`)."""

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def acquire(self) -> psycopg.Connection:
        raise DatabaseUnavailable("this app was made without a database")

    def release(self, conn: psycopg.Connection) -> None:
        pass
