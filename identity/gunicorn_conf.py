"""gunicorn's settings for `identity serve` and the benchmarks:
`gunicorn -c python:identity.gunicorn_conf wsgi:app`."""

import os

bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
workers = 2

# A sync worker silent this long is killed. The largest import allowed
# (IDENTITY_MAX_IMPORT_BYTES) takes about two minutes; gunicorn's 30 s would cut it off.
timeout = 300

# One control socket per user by default: a second server would take it over.
control_socket_disable = True

accesslog = "-"
# The path only: a query string can hold an address, which has no place in a log.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms'


def post_worker_init(worker):
    """Start the import's helper processes with the worker, not in its first import."""
    from identity.api import bulk

    bulk.warm_up(worker.app.wsgi().config["IDENTITY"]["IMPORT_PROCESSES"])
