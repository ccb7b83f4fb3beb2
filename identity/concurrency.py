"""CPU-bound work, such as checking a password, off the gevent loop.

argon2 takes tens of milliseconds and releases the GIL while it works: run in gevent's
thread pool, it lets the worker's other requests go on meanwhile, where run on the loop
it would stop every one of them for as long.
"""

from collections.abc import Callable
from typing import TypeVar

import gevent
from gevent import monkey

T = TypeVar("T")


def cpu_bound(fn: Callable[..., T], *args) -> T:
    """`fn(*args)` in gevent's thread pool under a gevent worker; here, elsewhere."""
    if monkey.is_module_patched("threading"):
        return gevent.get_hub().threadpool.apply(fn, args)
    return fn(*args)
