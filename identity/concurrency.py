"""Work that many requests of one worker share: CPU-bound work, such as checking a
password, off the gevent loop (CpuThreads); statements that many requests make at once,
run as one (Batcher).

argon2 takes tens of milliseconds and releases the GIL while it works: run in a thread,
it lets the worker's other requests go on meanwhile, where run on the loop it would stop
every one of them for as long.
"""

import contextlib
import ctypes
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from gevent import monkey

T = TypeVar("T")


class CpuThreads:
    """Runs `fn(*args)` on one of `size` threads under a gevent worker; in the caller's
    thread elsewhere.

    Few threads, not gevent's ten: each argon2 hash fills 19 MiB, and twenty at once on
    two cores only evict each other from the caches (docs/measurements.md), while a
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


class Batcher:
    """Runs calls that arrive while one is running as one batch: group commit for a
    statement that many requests make at once (every mailbox provider's one-click after
    a campaign goes out).

    `batcher(item, run)` gives `run([item, ...])`'s result for `item`, where `run` takes a
    list of items and gives their results in the same order. The first caller runs its
    item alone at once; callers that come while a batch runs wait, and the first of them
    then runs the next batch for all of them (at most `max_size`, items with equal
    `key`s never in the same batch, so each sees the one before it done), with its own
    `run`. No timer: an idle service answers as fast as before, a busy one makes one
    round trip and one commit for many requests. When a batch fails, each of its callers
    runs its own item alone, so one bad item fails only its own request; a caller not
    taken into a batch within `patience` seconds (a batch that hangs) runs its item
    alone too. `run` should not wait for others (locks): a batch that waits holds up
    every caller behind it.
    """

    def __init__(
        self,
        *,
        max_size: int = 100,
        key: Callable[[Any], Hashable] = lambda x: x,
        patience: float = 1.0,
    ):
        self._max_size = max_size
        self._key = key
        self._patience = patience
        # Held only to look at the queue, never across a switch to another greenlet.
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._running = False

    def __call__(self, item: Any, run: Callable[[list], list]) -> Any:
        me = _Waiting(item)
        with self._lock:
            self._queue.append(me)
            leads, self._running = not self._running, True
        if not leads and not self._wait_to_lead(me):
            return me.result if me.done else run([item])[0]
        batch = self._take()
        results = None
        try:
            results = run([waiting.item for waiting in batch])
        except Exception:
            if len(batch) == 1:
                raise
        finally:
            with self._lock:
                self._pass_lead()
            for waiting, result in zip(batch, results or [None] * len(batch), strict=True):
                waiting.result, waiting.done = result, results is not None
                if waiting is not me:
                    waiting.woken.set()
        return me.result if me.done else run([item])[0]

    def _wait_to_lead(self, me: "_Waiting") -> bool:
        """Wait until `me` is to run the next batch (True), or its batch has run (False:
        its result is there, or it failed), or no batch took it in time (False: it has
        left the queue). A caller stopped while it waits (its greenlet killed) leaves the
        queue, and passes the lead on if it had it, so the callers behind it go on."""
        try:
            if me.woken.wait(self._patience):
                return me.leads
            if self._leave(me):
                return False
            me.woken.wait()  # in a batch that is running: its end wakes us
            return False
        except BaseException:
            self._leave(me)
            raise

    def _take(self) -> list["_Waiting"]:
        """The next batch off the queue, in the order they came (the leader first)."""
        with self._lock:
            batch, left, keys = [], [], set()
            for waiting in self._queue:
                key = self._key(waiting.item)
                if len(batch) < self._max_size and key not in keys:
                    batch.append(waiting)
                    keys.add(key)
                else:
                    left.append(waiting)
            self._queue = left
        return batch

    def _leave(self, me: "_Waiting") -> bool:
        """Take `me` off the queue if it is still on it (whether it was)."""
        with self._lock:
            if me not in self._queue:
                return False
            self._queue.remove(me)
            if me.leads:
                me.leads = False
                self._pass_lead()
            return True

    def _pass_lead(self) -> None:
        """With the lock held: the first caller still waiting leads the next batch;
        none: the next to come."""
        if self._queue:
            self._queue[0].leads = True
            self._queue[0].woken.set()
        else:
            self._running = False


class _Waiting:
    __slots__ = ("done", "item", "leads", "result", "woken")

    def __init__(self, item: Any):
        self.item = item
        # Made per call, in the worker: threading.Event is gevent's there.
        self.woken = threading.Event()
        self.leads = False
        self.done = False
        self.result = None


class Slots:
    """At most `size` of something at once in this process (answers streamed to clients
    that may not read them): `take()` is a Slot, or None when all are taken. When the last
    slot is given back the C library is asked to return freed memory to the system, which
    it keeps otherwise (glibc's malloc_trim)."""

    def __init__(self, size: int):
        self.size = size
        self.taken = 0
        self._lock = threading.Lock()

    def take(self) -> "Slot | None":
        with self._lock:
            if self.taken >= self.size:
                return None
            self.taken += 1
            return Slot(self)

    def _give_back(self) -> None:
        with self._lock:
            self.taken -= 1
            idle = self.taken == 0
        if idle:
            _return_free_memory()


class Slot:
    """One of the Slots, given back once however often `release` is called: an answer
    ends its stream, and is also closed by the server, or only closed (never started)."""

    def __init__(self, slots: Slots):
        self._slots = slots
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._give_back()


def _return_free_memory() -> None:
    with contextlib.suppress(OSError, AttributeError):  # not glibc: it keeps what it keeps
        ctypes.CDLL("libc.so.6").malloc_trim(0)
