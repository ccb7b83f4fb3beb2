"""Watching a second connection wait for a row lock, so a race is run in one order."""

import time

import psycopg


def wait_until_blocked(observer: psycopg.Connection, pid: int, seconds: float = 5.0) -> None:
    """Return once the backend `pid` waits for a lock; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = observer.execute(
            "select wait_event_type = 'Lock' as waits from pg_stat_activity where pid = %s",
            (pid,),
        ).fetchone()
        if row and row["waits"]:
            return
        time.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited for a lock")
