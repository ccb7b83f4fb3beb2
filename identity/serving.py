"""How the service is served: gunicorn's gevent worker with a deadline on each request's
headers and body, problem+json for the errors gunicorn answers itself, and JSON logs.

One greenlet per connection makes an idle or trickling client cost a little memory and
nothing else: hundreds of them cannot hold up the requests of others, as two of them did
with sync workers. The deadlines make them go away in the end.
"""

import functools
import gc
import importlib
import json
import os
import resource
import signal
import sys
import threading
import uuid
from datetime import UTC, datetime
from http import HTTPStatus

import gevent
from gunicorn import glogging, util
from gunicorn.workers.ggevent import GeventWorker

from identity import bulk
from identity.config import load_config
from identity.deadlines import body_left_unread
from identity.headers import every_answer, unless_set
from identity.lifecycle import (
    draining,
    request_stop,
    share_draining,
    start_draining,
    stop_requested,
)
from identity.logs import CALLER, REQUEST_ID_HEADER, ROUTE, JsonLines

PROBLEM_JSON = "application/problem+json"


class Worker(GeventWorker):
    """gunicorn's gevent worker, waiting at most HEADER_TIMEOUT_SECONDS for a request's
    line and headers (the first one, and each next one on a kept-alive connection)."""

    def init_process(self):
        config = load_config()
        self.header_timeout = config["HEADER_TIMEOUT_SECONDS"]
        # gunicorn answers the requests it cannot parse itself, with text/html written
        # by util.write_error; every answer of this service is problem+json, with the
        # headers every answer carries.
        headers = every_answer(config["PUBLIC_URL"]) | unless_set(html=False)
        util.write_error = functools.partial(write_problem, headers=headers)
        # A client that stops reading an answer is cut off when one piece of it (at most
        # 64 KiB of an export) waits SEND_TIMEOUT_SECONDS in the send; the answer's
        # memory goes with it. Sends only: reads have their own deadlines.
        util.write = _write_within(util.write, config["SEND_TIMEOUT_SECONDS"])
        # The import's helper processes start before gevent patches this process (in
        # super().init_process): their pool's threads and pipes must be real ones.
        bulk.warm_up(config["IMPORT_PROCESSES"])
        _allow_open_files(self.worker_connections + 1000)
        sys.unraisablehook = _quiet_helper_thread_exit
        super().init_process()

    def handle_exit(self, sig, frame):
        """SIGTERM: stop taking connections (gunicorn) and tell long work (an import) to
        end at its next safe point, within the grace period (IDENTITY_STOP_GRACE_SECONDS)."""
        request_stop()
        super().handle_exit(sig, frame)

    def load_wsgi(self):
        super().load_wsgi()
        app = self.wsgi

        def closing_when_body_unread(environ, start_response):
            answer = app(environ, start_response)
            if stop_requested() or draining():
                # Stopping: no next request on this connection, so it does not wait out
                # the header timeout before the worker can exit; draining: the proxy's
                # next request opens a new connection, to a replica that stays.
                start_response.__self__.force_close()
            elif body_left_unread(environ):
                # gunicorn would read (and drop) the rest of the body to reach the next
                # request on this connection: a stranger's 100 GB, after a 401. The
                # answer says Connection: close instead.
                start_response.__self__.force_close()
            return answer

        self.wsgi = closing_when_body_unread
        # What exists now (modules, the app, its schemas) lives as long as the worker:
        # the collector need not look at it again. Its full collections walked all of it,
        # a tenth of the time an import spent writing.
        gc.freeze()

    def patch(self):
        super().patch()
        # psycopg chooses how to wait for the server when it is imported, and gunicorn's
        # master imported it (with the app's modules, gunicorn_conf) before this worker
        # patched `select`: it chose a wait that blocks the whole process during every
        # query. Let it choose again, now that gevent's `select` is in place.
        if "psycopg.waiting" in sys.modules:
            importlib.reload(sys.modules["psycopg.waiting"])

    def timeout_ctx(self):
        return gevent.Timeout(self.header_timeout, False)

    def handle_request(self, listener_name, req, sock, addr):
        try:
            super().handle_request(listener_name, req, sock, addr)
        except TimeoutError:
            # The client left the answer unread past SEND_TIMEOUT_SECONDS: a warning, not
            # gunicorn's "Socket error" with a traceback; the connection is closed.
            self.log.warning("client left an answer unread; connection cut")
            raise StopIteration from None


def drain_before_stopping(server, seconds: float) -> None:
    """Make gunicorn's master (`server`) drain on SIGTERM before it stops: for `seconds`
    it keeps its listeners and workers, /health/ready answers 503 and every answer
    closes its connection, so the load balancer's health check takes this replica out
    while it still answers whatever is sent meanwhile; then it stops as gunicorn does
    (no new connections; what is in hand is finished within the grace period). A
    second SIGTERM stops it at once; SIGINT and SIGQUIT are unchanged. gunicorn itself
    closes its listeners on the first SIGTERM: a request the proxy sent in the moment
    before its health check noticed would be refused or cut."""
    share_draining()
    if seconds <= 0:
        return
    stop = server.handle_term

    def handle_term():
        if draining():
            stop()
        start_draining()
        server.log.info("draining for %s s: /health/ready answers 503, then stopping", seconds)
        timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True
        timer.start()

    server.handle_term = handle_term


def _write_within(write, seconds: float):
    """gunicorn's `util.write`, each call given `seconds` (TimeoutError beyond)."""

    def write_within(sock, data, chunked=False):
        with gevent.Timeout(seconds, TimeoutError):
            return write(sock, data, chunked)

    return write_within


def _quiet_helper_thread_exit(unraisable) -> None:
    """Drop one known, harmless error: the import pool's threads, started before gevent
    patched `threading`, end by looking themselves up under gevent's thread ids, fail
    with a KeyError, and print it at every worker exit. Every other one is reported."""
    if unraisable.exc_type is KeyError and (
        getattr(unraisable.object, "__func__", None) is threading.Thread._bootstrap
    ):
        return
    sys.__unraisablehook__(unraisable)


def _allow_open_files(wanted: int) -> None:
    """Raise this process's limit of open files towards `wanted` (as far as the hard limit
    lets it): a connection is a file, and the common default of 1,024 would refuse
    connections long before the worker's limit of them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))


def write_problem(
    sock, status_int: int, reason: str, mesg: str, headers: dict[str, str] | None = None
) -> None:
    """An error answered by gunicorn itself, as RFC 9457 problem+json, with `headers`. A
    500 is a fault of the server's own (the app raised past its error handler, or sent a
    header gunicorn refuses): the answer says only that, with the request id the error is
    logged under."""
    request_id = uuid.uuid4().hex
    problem = {
        "type": "about:blank",
        "title": reason,
        "status": status_int,
        # gunicorn's message can quote the request line, which may hold an address.
        "detail": f"{HTTPStatus(status_int).phrase.lower()}: the request could not be read",
    }
    if status_int == HTTPStatus.INTERNAL_SERVER_ERROR:
        # Imported here: gunicorn's master loads this module before gevent patches.
        from identity.api.problems import SERVER_FAULT, log_server_fault

        # Called while gunicorn handles the error, so it is the one being handled.
        log_server_fault(sys.exc_info()[1], request_id)
        problem |= {"detail": SERVER_FAULT, "request_id": request_id}
    body = json.dumps(problem).encode()
    fields = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: {PROBLEM_JSON}\r\nContent-Length: {len(body)}\r\n"
        f"{REQUEST_ID_HEADER}: {request_id}\r\n{fields}\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


class JsonLogger(glogging.Logger):
    """gunicorn's logs as JSON lines: the access log one object per request (path only,
    never the query string; the request id the app answered with; the calling site and,
    for a user token, the person's id, as the guard found them), the error log through
    the service's own formatter."""

    def setup(self, cfg):
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonLines())

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        request_id = next(
            (value for name, value in resp.headers if name.lower() == "x-request-id"), None
        )
        site, user_id = (environ or {}).get(CALLER) or (None, None)
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": "info",
            "logger": "gunicorn.access",
            "method": req.method,
            # The route's pattern, not the path as sent: a path can hold an address or
            # an unsubscribe token. A path that matched no route is not shown at all.
            "path": (environ or {}).get(ROUTE) or "(no route)",
            # gunicorn's own error answers carry only `status` ("400 Bad Request").
            "status": getattr(resp, "status_code", None) or int(str(resp.status).split()[0]),
            "bytes": getattr(resp, "sent", None),
            "ms": round(request_time.total_seconds() * 1000, 1),
            "request_id": request_id,
            "site": site,
            "user_id": user_id and str(user_id),
        }
        self.access_log.info(json.dumps(line))

    def exception(self, msg, *args, **kwargs):
        # "Error handling request GET /v1/users?email=...": the path and query may hold an
        # address or a token. What went wrong is logged with the answer's request id.
        if isinstance(msg, str) and msg.startswith("Error handling request"):
            msg, args = "Error handling request", ()
        super().exception(msg, *args, **kwargs)

    def warning(self, msg, *args, **kwargs):
        # "Invalid request from ip=...: <the request line>": the line may hold an address.
        if isinstance(msg, str) and msg.startswith("Invalid request from"):
            msg = msg.split(": ", 1)[0] + ": the request could not be read"
        super().warning(msg, *args, **kwargs)
