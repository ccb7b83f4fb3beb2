"""CPU-bound work, such as checking a password, off the gevent loop.

argon2 takes tens of milliseconds and releases the GIL while it works: run in a thread,
it lets the worker's other requests go on meanwhile, where run on the loop it would stop
every one of them for as long.
"""

from collections.abc import Callable
from typing import TypeVar

from gevent import monkey

T = TypeVar("T")


class CpuThreads:
    """Runs `fn(*args)` on one of `size` threads under a gevent worker; in the caller's
    thread elsewhere.

    Few threads, not gevent's ten: each argon2 hash fills 19 MiB, and twenty at once on
    two cores only evict each other from the caches (logins/s fell by a third), while a
    request waiting for a thread costs nothing. The pool starts at the first call, in the
    worker, after gevent has patched it.
    """

    def __init__(self, size: int):
        self.size = size
        self._pool = None

    def __call__(self, fn: Callable[..., T], *args) -> T:
        if not monkey.is_module_patched("threading"):
            return fn(*args)
        if self._pool is None:
            from gevent.threadpool import ThreadPool

            self._pool = ThreadPool(self.size)
        return self._pool.apply(fn, args)
