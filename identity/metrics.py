"""The numbers an operator watches (`GET /metrics`): what the code counts as it works, and
how a scrape reads them.

Under gunicorn every worker is a process of its own, so prometheus_client runs in its
multiprocess mode: with PROMETHEUS_MULTIPROC_DIR set (`identity serve` and
identity.gunicorn_conf make a fresh directory per start) each process, a courier on the
same host too, writes its counts to files there and a scrape adds them up. Without it (the
tests' in-process app, a courier on its own) the counts are this process's.

No label holds an address, a token or an id: a route's pattern, a method, a status, a
word from a fixed vocabulary. A count costs a dictionary look-up and a write to memory;
nothing here queries the database except a scrape.
"""

import os
import threading
import time
from collections.abc import Callable, Mapping

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

# prometheus_client's own name for it, read when it is first imported.
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# The text format every Prometheus reads (what generate_latest writes, names escaped).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# From a fast look-up (2 ms) to a login's argon2 (50-100 ms) to an import (minutes).
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

REQUESTS = Histogram(
    "identity_http_request_duration_seconds",
    "Requests by route pattern, method and status, and how long the app took to answer"
    " (until the answer's head: a streamed export's body is not included).",
    ["route", "method", "status"],
    buckets=_SECONDS,
)
SECURITY_EVENTS = Counter(
    "identity_security_events",
    "Security events by name (docs/events.md): login outcomes (login.succeeded, login.failed,"
    " login.throttled, second_factor.*), registrations (registration.requested, .proven), ...",
    ["event"],
)
THROTTLE_REFUSALS = Counter(
    "identity_throttle_refusals",
    "Requests refused with 429 by a throttle (logins, mailed links, resets), by route pattern.",
    ["route"],
)
ONE_CLICKS = Counter(
    "identity_one_clicks",
    "One-click unsubscribes (RFC 8058), by whether they changed a subscription.",
    ["changed"],
)
IMPORT_LINES = Counter(
    "identity_import_lines",
    "Import lines by outcome (created, merged, rejected).",
    ["outcome"],
)
MAIL_DELIVERIES = Counter(
    "identity_mail_deliveries",
    "Mails handed to the relay (or the log) by template and outcome: sent, retry (refused"
    " for now, queued again), failed (refused for good or tried too often).",
    ["template", "outcome"],
)
# Summed over the live processes: a worker that exits takes its numbers with it.
DB_POOL = Gauge(
    "identity_db_pool_connections",
    "Database connections of the workers' pools: open, in_use (lent to a request), max.",
    ["state"],
    multiprocess_mode="livesum",
)
DB_POOL_WAITING = Gauge(
    "identity_db_pool_waiting",
    "Requests waiting for a database connection, over every worker.",
    multiprocess_mode="livesum",
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# What a request that matched no route (a 404, or gunicorn's own 400) is counted under.
NO_ROUTE = "(no route)"


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_DIR))


def record_pool(stats: Mapping[str, int]) -> None:
    """This process's pool as psycopg_pool's `get_stats()` says it is."""
    size = stats.get("pool_size", 0)
    DB_POOL.labels("open").set(size)
    DB_POOL.labels("in_use").set(size - stats.get("pool_available", 0))
    DB_POOL.labels("max").set(stats.get("pool_max", 0))
    DB_POOL_WAITING.set(stats.get("requests_waiting", 0))


def record_pool_every(seconds: float, stats: Callable[[], Mapping[str, int]]) -> None:
    """Record the pool every `seconds` from a daemon thread (a greenlet under gevent), so
    a scrape answered by one worker sees the others' pools no older than that."""

    def sample():
        while True:
            record_pool(stats())
            time.sleep(seconds)

    threading.Thread(target=sample, name="metrics-pool", daemon=True).start()


class Snapshot:
    """Gauges read at scrape time (the outbox, from the database), as a collector."""

    def __init__(self, gauges: Mapping[str, tuple[str, float]]):
        self.gauges = gauges

    def collect(self):
        for name, (help_text, value) in self.gauges.items():
            yield GaugeMetricFamily(name, help_text, value=value)


def exposition(snapshot: Mapping[str, tuple[str, float]] | None = None) -> bytes:
    """Every process's counts (one process's without the multiprocess directory) and the
    `snapshot` gauges, in the Prometheus text format."""
    text = generate_latest(_counted())
    return text + generate_latest(_snapshot_registry(snapshot)) if snapshot else text


def _snapshot_registry(snapshot: Mapping[str, tuple[str, float]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(snapshot))
    return registry


def process_ended(pid: int) -> None:
    """A worker exited: its gauges no longer count (its counters do)."""
    if multiprocess():
        _multiprocess.mark_process_dead(pid)


def serve_own(bind: str) -> None:
    """This process's own counts on `bind` (`host:port`), from a thread of their own: for
    a courier that runs where no server shares its multiprocess directory. (The default
    registry reads this process's values, in multiprocess mode too.)"""
    host, _, port = bind.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]"), registry=REGISTRY)


def _counted() -> CollectorRegistry:
    """What the processes counted: every one's files in multiprocess mode, else this one's."""
    if not multiprocess():
        return REGISTRY
    registry = CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry)
    return registry


class RequestMetrics:
    """WSGI middleware: each request counted by the pattern of the route it matched (never
    the path: it can hold an address or a token), its method and its status, with the
    time until the app answered."""

    def __init__(self, app, route_key: str):
        self.app = app
        self.route_key = route_key
        # The histogram's child for each (route, method, status) met: prometheus_client's
        # look-up of labels checks and locks, a third of what counting a request cost.
        # Bounded: routes x methods x statuses.
        self._children: dict[tuple[str, str, str], Histogram] = {}

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        status = []

        def starting(head, headers, exc_info=None):
            status.append(head)
            return start_response(head, headers, exc_info)

        try:
            return self.app(environ, starting)
        finally:
            method = environ.get("REQUEST_METHOD", "")
            labels = (
                environ.get(self.route_key) or NO_ROUTE,
                method if method in _METHODS else "other",
                status[-1][:3] if status else "500",
            )
            child = self._children.get(labels)
            if child is None:
                child = self._children[labels] = REQUESTS.labels(*labels)
            child.observe(time.perf_counter() - started)
