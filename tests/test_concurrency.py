"""Batcher: calls that come while one runs are run together, each caller gets its own
result, equal keys never share a batch, and a failing batch fails only its bad item."""

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from identity.concurrency import Batcher


class Recorder:
    """A `run` that records each batch it was given; the first batch waits for `release`,
    so the calls made meanwhile queue up behind it."""

    def __init__(self, fail_on=None):
        self.batches: list[list] = []
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            assert self.release.wait(10)
        if self.fail_on in items:
            raise ValueError(f"cannot do {self.fail_on}")
        return [f"done {item}" for item in items]


def _call_all(batcher, run, items, *, queued):
    """Call `batcher` with each item from its own thread; the first alone, the rest once
    the first is running. The answers (a result or the exception), in item order."""

    def call(item):
        try:
            return batcher(item, run)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(items)) as pool:
        first = pool.submit(call, items[0])
        while not run.batches:
            time.sleep(0.001)
        rest = [pool.submit(call, item) for item in items[1:]]
        time.sleep(queued)  # let them all queue behind the first
        run.release.set()
        return [first.result(10), *(f.result(10) for f in rest)]


def test_calls_that_come_while_one_runs_are_run_as_one_batch_each_getting_its_own_result():
    run = Recorder()
    answers = _call_all(Batcher(), run, list(range(10)), queued=0.2)
    assert answers == [f"done {i}" for i in range(10)]
    assert run.batches[0] == [0]
    assert sorted(run.batches[1]) == list(range(1, 10))
    assert len(run.batches) == 2


def test_a_batch_is_never_larger_than_max_size():
    run = Recorder()
    answers = _call_all(Batcher(max_size=4), run, list(range(10)), queued=0.2)
    assert answers == [f"done {i}" for i in range(10)]
    assert [len(batch) for batch in run.batches] == [1, 4, 4, 1]


def test_items_with_the_same_key_are_never_in_one_batch():
    run = Recorder()
    items = ["a1", "b1", "a2", "a3", "c1"]
    answers = _call_all(Batcher(key=lambda item: item[0]), run, items, queued=0.2)
    assert answers == [f"done {item}" for item in items]
    for batch in run.batches:
        keys = [item[0] for item in batch]
        assert len(keys) == len(set(keys)), run.batches
    assert [sorted(batch) for batch in run.batches][1:] == [["a2", "b1", "c1"], ["a3"]] or [
        sorted(batch) for batch in run.batches
    ][1:] == [["a3", "b1", "c1"], ["a2"]]
    assert len(run.batches) == 3  # a1 | b1 a2 c1 (in the order they came) | a3


def test_a_failing_batch_fails_only_its_bad_item_the_others_run_alone():
    run = Recorder(fail_on=5)
    answers = _call_all(Batcher(), run, list(range(8)), queued=0.2)
    assert isinstance(answers[5], ValueError)
    assert [a for i, a in enumerate(answers) if i != 5] == [f"done {i}" for i in range(8) if i != 5]
    alone = run.batches[2:]
    assert sorted(item for batch in alone for item in batch) == list(range(1, 8))
    assert all(len(batch) == 1 for batch in alone)


def test_one_call_alone_fails_with_its_own_error():
    def run(items):
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        Batcher()("x", run)


def test_many_rounds_of_many_callers_each_get_their_own_result():
    """No lost wake-up: 2,000 calls from 32 threads, with no pause to line them up."""
    batcher, lock, sizes = Batcher(max_size=16), threading.Lock(), []

    def run(items):
        with lock:
            sizes.append(len(items))
        time.sleep(0.0005)
        return [item * 2 for item in items]

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda i: batcher(i, run), range(2000)))
    assert answers == [i * 2 for i in range(2000)]
    assert sum(sizes) == 2000 and max(sizes) <= 16
    assert len(sizes) < 2000  # some ran together


def test_a_caller_not_taken_into_a_batch_in_time_runs_alone():
    """A batch that hangs (here: one that waits 1 s) holds up no caller behind it for
    longer than the patience: they run their items alone meanwhile."""
    run = Recorder()
    batcher = Batcher(patience=0.1)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(batcher, "slow", run)
        while not run.batches:
            time.sleep(0.001)
        started = time.monotonic()
        others = [f.result(5) for f in [pool.submit(batcher, i, run) for i in range(3)]]
        waited = time.monotonic() - started
        run.release.set()
        assert first.result(5) == "done slow"
    assert others == ["done 0", "done 1", "done 2"]
    assert waited < 0.9  # well before the slow batch ended
    assert sorted(map(str, run.batches[1:])) == ["[0]", "[1]", "[2]"]


_KILLED_WAITER = """
from gevent import monkey; monkey.patch_all()
import gevent
from identity.concurrency import Batcher

batcher = Batcher()
def run(items):
    gevent.sleep(0.1)
    return [i * 10 for i in items]

leader = gevent.spawn(batcher, 1, run)
gevent.sleep(0.01)
waiter = gevent.spawn(batcher, 2, run)  # waits behind the leader's batch
gevent.sleep(0.01)
waiter.kill(block=True)  # a GreenletExit (or gevent.Timeout) while it waits
assert leader.get(timeout=3) == 10
later = gevent.spawn(batcher, 3, run)
assert later.get(timeout=3) == 30, "a later caller hangs"
print("ok")
"""


def test_a_caller_killed_while_it_waits_does_not_stop_the_others():
    """Found by the hostile round: a greenlet killed while waiting stayed in the queue,
    was handed the lead, never ran the batch, and every later call hung for good."""
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_WAITER], capture_output=True, text=True, timeout=30
    )
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
