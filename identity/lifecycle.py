"""Whether this process was asked to stop (SIGTERM): work that runs long, an import,
ends at its next safe point and says how far it got, instead of being cut off when the
server's grace period runs out."""

import threading
import time

_stopping = threading.Event()
_asked_at: list[float] = []


def request_stop() -> None:
    _asked_at.append(time.monotonic())
    _stopping.set()


def stop_requested() -> bool:
    return _stopping.is_set()


def seconds_since_stop() -> float:
    """How long ago the process was asked to stop (0 if it was not)."""
    return time.monotonic() - _asked_at[0] if _asked_at else 0.0
