"""Checking bulk input on more than one core, while this process writes what is checked.

Checking an import line (JSON, the schema, email-validator, phonenumbers) costs about
three times what writing it does, and it needs no database, so it runs in a few helper
processes: one pool per server process, started when it boots (or by its first import)
and kept.
"""

import gc
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

_pools: dict[int, ProcessPoolExecutor] = {}


def in_order(check: Callable, batches: Iterable, processes: int) -> Iterator:
    """`check(batch)` for every batch, in their order; with `processes` > 0 on a process
    pool, with at most two batches per process under way, so memory stays flat."""
    if processes < 1:
        yield from map(check, batches)
        return
    pool = _pool(processes)
    under_way: deque = deque()
    try:
        for batch in batches:
            under_way.append(pool.submit(check, batch))
            if len(under_way) >= 2 * processes:
                yield under_way.popleft().result()
        while under_way:
            yield under_way.popleft().result()
    except BrokenProcessPool:
        # A helper died (killed, out of memory): this import fails, the next gets a new pool.
        _pools.pop(processes, None)
        raise


def shut_down() -> None:
    """Stop this process's helpers (its worker is exiting)."""
    while _pools:
        _, pool = _pools.popitem()
        pool.shutdown(wait=True, cancel_futures=True)


def warm_up(processes: int) -> None:
    """Start the pool now (in the background), so the first import does not wait for it."""
    if processes > 0:
        _pool(processes).submit(int)


def _pool(processes: int) -> ProcessPoolExecutor:
    if processes not in _pools:
        # forkserver: never fork this process, whose pool threads hold database connections.
        context = multiprocessing.get_context("forkserver")
        # Each helper is forked with what checks a line loaded, and nothing else: Flask,
        # the database driver and the other services took most of a helper's memory.
        context.set_forkserver_preload(["identity.imports.checking"])
        _pools[processes] = ProcessPoolExecutor(
            processes, mp_context=context, initializer=_watch_server, initargs=(os.getpid(),)
        )
    return _pools[processes]


def _watch_server(pid: int) -> None:
    """In a helper: exit once the server process that started it is gone. A server process
    killed (gunicorn's timeout, or a quick shutdown) cannot stop its helpers itself."""

    def watch():
        while True:
            time.sleep(1)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="watch-server").start()
    # The modules loaded so far (phonenumbers' metadata among them) stay to the end: the
    # collector need not walk them again each time the checks' garbage fills a generation.
    gc.freeze()
