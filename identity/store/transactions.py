"""The unit of work: one request's or one job's work on the database, on at most one
connection and in one transaction, run again when PostgreSQL gives up on it for a deadlock
or a serialization failure (it was rolled back, so running it again is safe)."""

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NoReturn, Protocol, TypeVar

import psycopg
from psycopg.errors import DeadlockDetected, SerializationFailure, TransactionRollback

from identity.errors import DatabaseUnavailable
from identity.store import audit

T = TypeVar("T")

log = logging.getLogger(__name__)

# What a login writes (its attempt, its count against the throttles, its session) and a
# refresh's rotation commit without waiting for the disk: this CTE makes the statement's
# transaction `synchronous_commit = off`. A crash of PostgreSQL may forget the last
# fraction of a second of them, which costs those people a new login (and the attempt
# log those lines); waiting for each flush cost a login more CPU than all its SQL did.
NO_DISK_WAIT = "no_disk_wait as (select set_config('synchronous_commit', 'off', true))"

ATTEMPTS = 3

# SQLSTATE class 40; psycopg makes the two common ones siblings of TransactionRollback.
RETRYABLE = (TransactionRollback, DeadlockDetected, SerializationFailure)


class Lending(Protocol):
    """Where connections come from: the pool (identity.db), or what tests lend instead."""

    def acquire(self) -> psycopg.Connection: ...

    def release(self, conn: psycopg.Connection) -> None: ...


class UnitOfWork:
    """One request's (or one job's) work on the database: at most one connection, borrowed
    from the pool on first use, and one transaction on it.

    - `conn`: the connection inside the unit's transaction, begun on first use (a
      savepoint where the lent connection is already in a transaction, as in tests).
    - `one_statement`: the connection for one statement that needs no transaction around
      it (a read, or a write that is atomic alone): BEGIN and COMMIT would be two more
      round trips. Inside an open transaction it is that transaction's.
    - `commit()`: what is written is committed and the connection goes back to the pool;
      whatever comes next borrows again. A service calls it before work that takes
      milliseconds of CPU (argon2, zxcvbn), so no connection, transaction or row lock is
      held meanwhile. Work that committed a part of itself is not run again after a
      deadlock (`run`): that part would count twice.
    - `release()`: the connection back, outside a transaction (a guard's look-up, before
      the body is read).
    - `refuse(error)`: commit what is written (a failed login's attempt, a counted
      failure), then raise `error`, so the caller still hears the refusal.
    - `briefly()`: a connection for a moment, outside the unit's transaction, given back
      at once (a stream's batches, read long after the request's work was committed).
    - `note(entry)`: an entry of the audit trail (identity.services.trail), appended when
      the unit commits, in its transaction: a change and its entry stand or fall together.
      An entry that `survives` (a security event: a refusal is what it records) is
      appended even when the unit rolls back, after the rollback.

    Whoever makes the unit ends it: `run` commits when the work returns and rolls back
    when it raises, running the work again after a deadlock or serialization failure.
    """

    @classmethod
    def of(cls, conn: psycopg.Connection) -> "UnitOfWork":
        """A unit on one given connection, which it never closes: a command's, a job's, a
        test's."""
        return cls(_OneConnection(conn))

    def __init__(self, lending: Lending):
        self._lending = lending
        self._conn: psycopg.Connection | None = None
        self._transaction: psycopg.Transaction | None = None
        self._held = 0
        self._commits = 0
        self._trail: list[tuple[dict, bool]] = []

    @property
    def conn(self) -> psycopg.Connection:
        conn = self.one_statement
        if self._transaction is None:
            self._transaction = conn.transaction()
            self._transaction.__enter__()
        return conn

    @property
    def one_statement(self) -> psycopg.Connection:
        if self._conn is None:
            self._conn = self._lending.acquire()
        return self._conn

    @property
    def holds_connection(self) -> bool:
        return self._conn is not None

    def commit(self) -> None:
        self._end(None)
        self._commits += 1

    def release(self) -> None:
        """Give the connection back while no transaction is open (what was read stands
        alone); the next use borrows again."""
        if self._transaction is None and not self._held:
            self._give_back()

    def rollback(self, cause: BaseException | None = None) -> None:
        """Roll back what is written; `cause`, the error that ends the work, if any."""
        self._end(_ROLLBACK, cause)

    def note(self, entry: dict, *, survives: bool = False) -> None:
        self._trail.append((entry, survives))

    def refuse(self, error: Exception) -> NoReturn:
        self.commit()
        raise error

    @contextmanager
    def briefly(self) -> Iterator[psycopg.Connection]:
        conn = self._lending.acquire()
        try:
            yield conn
        finally:
            self._lending.release(conn)

    @contextmanager
    def held(self) -> Iterator[psycopg.Connection]:
        """The unit's connection, kept across its commits until the block ends: for work
        that commits in parts but holds a session's lock throughout (an import)."""
        self._held += 1
        try:
            yield self.one_statement
        finally:
            self._held -= 1
            if not self._held and self._transaction is None:
                self._give_back()

    def run(self, work: Callable[[], T], *, attempts: int = ATTEMPTS) -> T:
        """`work()`, committed when it returns, rolled back when it raises; run again,
        whole, while PostgreSQL gives up on it for a deadlock or serialization failure
        (it was rolled back, so running it again is safe)."""
        current = CURRENT.set(self)
        try:
            return self._run(work, attempts)
        finally:
            CURRENT.reset(current)

    def _run(self, work: Callable[[], T], attempts: int) -> T:
        for attempt in range(1, attempts + 1):
            commits = self._commits
            try:
                result = work()
                self.commit()
                return result
            except RETRYABLE as retryable:
                self.rollback(retryable)
                # Work that committed part of itself (a login's counted attempt) is not
                # run again: that part would count twice. The caller hears "busy".
                if attempt == attempts or self._commits != commits:
                    raise
                # Jittered, growing pauses: the two deadlocked writers should not meet again.
                time.sleep(random.uniform(0.005, 0.02) * 2**attempt)
            except BaseException as error:
                self.rollback(error)
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Roll back whatever is still open and give the connection back."""
        self._held = 0
        self.rollback()

    def _end(self, error: BaseException | None, cause: BaseException | None = None) -> None:
        transaction, self._transaction = self._transaction, None
        trail, self._trail = self._trail, []
        try:
            if error is None and trail:
                try:
                    audit.append(self.one_statement, [entry for entry, _ in trail])
                except BaseException as failed:
                    if transaction is not None:
                        transaction.__exit__(type(failed), failed, None)
                    raise
            if transaction is not None:
                if error is None:
                    transaction.__exit__(None, None, None)
                else:
                    transaction.__exit__(type(error), error, None)
            if error is not None:
                self._keep_survivors(trail, cause)
        finally:
            if not self._held:
                self._give_back()

    def _keep_survivors(self, trail: list[tuple[dict, bool]], cause) -> None:
        """Append the entries that outlive a rollback, unless the database is what failed
        (waiting for it again would only hold up the answer): the log has them."""
        survivors = [entry for entry, survives in trail if survives]
        if not survivors or isinstance(cause, (psycopg.OperationalError, DatabaseUnavailable)):
            return
        try:
            audit.append(self.one_statement, survivors)
        except (psycopg.Error, DatabaseUnavailable):
            log.warning("audit entries lost with a failed unit", exc_info=True)

    def _give_back(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._lending.release(conn)


class _OneConnection:
    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def acquire(self) -> psycopg.Connection:
        return self.conn

    def release(self, conn: psycopg.Connection) -> None:
        pass


# The unit whose work is running (`run`), for the entries of the trail that the security
# events add wherever they are raised (identity.services.security_events).
CURRENT: ContextVar[UnitOfWork | None] = ContextVar("identity_unit_of_work", default=None)

# What ends a unit's transaction without committing it.
_ROLLBACK = psycopg.Rollback()
