"""Whether this process was asked to stop (SIGTERM): work that runs long, an import,
ends at its next safe point and says how far it got, instead of being cut off when the
server's grace period runs out. And whether the server is draining: asked to stop, it
still serves for a while (IDENTITY_DRAIN_SECONDS) but tells the load balancer, through
/health/ready, to send it nothing new."""

import mmap
import threading
import time

_stopping = threading.Event()
_asked_at: list[float] = []
# One byte that gunicorn's master shares with every worker it forks (share_draining):
# the master is told to stop, the workers' readiness answers it.
_draining: list[mmap.mmap] = []


def request_stop() -> None:
    _asked_at.append(time.monotonic())
    _stopping.set()


def stop_requested() -> bool:
    return _stopping.is_set()


def seconds_since_stop() -> float:
    """How long ago the process was asked to stop (0 if it was not)."""
    return time.monotonic() - _asked_at[0] if _asked_at else 0.0


def share_draining() -> None:
    """Make the draining flag a page of memory shared with the processes this one forks
    from now on: gunicorn's master calls it before it starts its workers."""
    if not _draining:
        _draining.append(mmap.mmap(-1, 1))


def start_draining() -> None:
    """The server was asked to stop: from now on /health/ready answers 503 in every
    worker, and answers close their connections."""
    share_draining()
    _draining[0][0] = 1


def draining() -> bool:
    return bool(_draining) and _draining[0][0] == 1
