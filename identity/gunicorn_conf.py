"""gunicorn's settings for `identity serve` and the benchmarks:
`gunicorn -c python:identity.gunicorn_conf 'identity:create_app()'`."""

import os
import shutil
import tempfile

# Every worker counts for GET /metrics: prometheus_client's multiprocess mode, chosen when
# it is first imported (with the app's modules, below), keeps each process's counts in
# files in this directory. `identity serve` gives one it shares with the mail courier;
# run directly, the server makes its own, fresh at every start and removed at its end.
_METRICS_DIR_MADE = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _METRICS_DIR_MADE = tempfile.mkdtemp(prefix="identity-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _METRICS_DIR_MADE

# The app's modules, loaded once here in the master: the workers it forks share their
# memory. (Importing the identity package loads none of them, for the import's helpers.)
import identity.api  # noqa: F401, E402
from identity.config import load_config  # noqa: E402

bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
workers = 2

# gevent: one greenlet per connection, so idle and trickling clients (hundreds, even
# thousands) cannot hold up the others; identity.serving.Worker bounds how long a
# request's headers may take (IDENTITY_HEADER_TIMEOUT_SECONDS), the app its body.
worker_class = "identity.serving.Worker"
# Beyond worker_connections x workers open connections, a new one waits until an idle
# one is cut off (the header timeout). A cap per client IP belongs to the proxy in front.
worker_connections = 10_000
# Kept-alive connections wait for their next request up to the header timeout; the
# worker uses this only as "keep-alive is on".
keepalive = 5

# A worker silent this long is killed. The largest import allowed
# (IDENTITY_MAX_IMPORT_BYTES) takes about two minutes; gunicorn's 30 s would cut it off.
timeout = 300

# One control socket per user by default: a second server would take it over.
control_socket_disable = True

# JSON lines: the access log names each request by its path only (a query string can
# hold an address) with the request id the app answered with.
logger_class = "identity.serving.JsonLogger"
accesslog = "-"
errorlog = "-"


# On SIGTERM a worker finishes what it is answering for this long, then is stopped
# (IDENTITY_STOP_GRACE_SECONDS); an import ends at its next batch (identity.lifecycle).
graceful_timeout = load_config()["STOP_GRACE_SECONDS"]


def on_starting(server):
    """Before the first worker is forked: SIGTERM drains first (IDENTITY_DRAIN_SECONDS)."""
    from identity.serving import drain_before_stopping

    drain_before_stopping(server, load_config()["DRAIN_SECONDS"])


def worker_exit(server, worker):
    """Close the worker's database pool (its connections end cleanly, and psycopg_pool
    does not complain at interpreter exit) and stop its import helpers."""
    from identity import bulk
    from identity.db import EXTENSION

    worker.app.wsgi().extensions[EXTENSION].close()
    bulk.shut_down()


def post_worker_init(worker):
    """Record the worker's database pool every second for GET /metrics, whichever worker
    answers the scrape."""
    from identity.db import EXTENSION
    from identity.metrics import record_pool_every

    record_pool_every(1.0, worker.app.wsgi().extensions[EXTENSION].pool_stats)


def child_exit(server, worker):
    """A worker is gone: its gauges (its pool) stop counting; its counts stay."""
    from identity.metrics import process_ended

    process_ended(worker.pid)


def on_exit(server):
    if _METRICS_DIR_MADE:
        shutil.rmtree(_METRICS_DIR_MADE, ignore_errors=True)
