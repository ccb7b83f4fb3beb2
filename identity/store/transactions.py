"""One transaction around a piece of work, run again when PostgreSQL gives up on it for a
deadlock or a serialization failure (the work was rolled back, so running it again is safe)."""

import random
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg.errors import DeadlockDetected, SerializationFailure, TransactionRollback

T = TypeVar("T")

ATTEMPTS = 3

# SQLSTATE class 40; psycopg makes the two common ones siblings of TransactionRollback.
RETRYABLE = (TransactionRollback, DeadlockDetected, SerializationFailure)


def in_transaction(
    conn: psycopg.Connection, work: Callable[[psycopg.Connection], T], *, attempts: int = ATTEMPTS
) -> T:
    """`work(conn)` in one transaction (a savepoint when one is already open), committed
    when it returns; tried up to `attempts` times while it deadlocks or fails to serialize."""
    for attempt in range(1, attempts + 1):
        try:
            with conn.transaction():
                return work(conn)
        except RETRYABLE:
            if attempt == attempts:
                raise
            # Jittered, growing pauses: the two deadlocked writers should not meet again.
            time.sleep(random.uniform(0.005, 0.02) * 2**attempt)
    raise AssertionError("unreachable")
