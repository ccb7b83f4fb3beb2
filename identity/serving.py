"""How the service is served: gunicorn's gevent worker with a deadline on each request's
headers and body, problem+json for the errors gunicorn answers itself, and JSON logs.

One greenlet per connection makes an idle or trickling client cost a little memory and
nothing else: hundreds of them cannot hold up the requests of others, as two of them did
with sync workers. The deadlines make them go away in the end.
"""

import importlib
import json
import sys
from datetime import UTC, datetime
from http import HTTPStatus

import gevent
from gunicorn import glogging, util
from gunicorn.workers.ggevent import GeventWorker

from identity import bulk
from identity.config import load_config
from identity.logs import JsonLines, loggable_path

PROBLEM_JSON = "application/problem+json"


class Worker(GeventWorker):
    """gunicorn's gevent worker, waiting at most HEADER_TIMEOUT_SECONDS for a request's
    line and headers (the first one, and each next one on a kept-alive connection)."""

    def init_process(self):
        config = load_config()
        self.header_timeout = config["HEADER_TIMEOUT_SECONDS"]
        # gunicorn answers the requests it cannot parse itself, with text/html written
        # by util.write_error; every answer of this service is problem+json.
        util.write_error = write_problem
        # The import's helper processes start before gevent patches this process (in
        # super().init_process): their pool's threads and pipes must be real ones.
        bulk.warm_up(config["IMPORT_PROCESSES"])
        super().init_process()

    def patch(self):
        super().patch()
        # psycopg chooses how to wait for the server when it is imported, and gunicorn's
        # master imported it (with this package) before this worker patched `select`: it
        # chose a wait that blocks the whole process during every query. Let it choose
        # again, now that gevent's `select` is in place.
        if "psycopg.waiting" in sys.modules:
            importlib.reload(sys.modules["psycopg.waiting"])

    def timeout_ctx(self):
        return gevent.Timeout(self.header_timeout, False)


def write_problem(sock, status_int: int, reason: str, mesg: str) -> None:
    """An error answered by gunicorn itself, as RFC 9457 problem+json."""
    body = json.dumps(
        {
            "type": "about:blank",
            "title": reason,
            "status": status_int,
            # gunicorn's message can quote the request line, which may hold an address.
            "detail": f"{HTTPStatus(status_int).phrase.lower()}: the request could not be read",
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: {PROBLEM_JSON}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


class JsonLogger(glogging.Logger):
    """gunicorn's logs as JSON lines: the access log one object per request (path only,
    never the query string; the request id the app answered with), the error log
    through the service's own formatter."""

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
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": "info",
            "logger": "gunicorn.access",
            "method": req.method,
            "path": loggable_path(req.path),
            # gunicorn's own error answers carry only `status` ("400 Bad Request").
            "status": getattr(resp, "status_code", None) or int(str(resp.status).split()[0]),
            "bytes": getattr(resp, "sent", None),
            "ms": round(request_time.total_seconds() * 1000, 1),
            "request_id": request_id,
        }
        self.access_log.info(json.dumps(line))

    def warning(self, msg, *args, **kwargs):
        # "Invalid request from ip=...: <the request line>": the line may hold an address.
        if isinstance(msg, str) and msg.startswith("Invalid request from"):
            msg = msg.split(": ", 1)[0] + ": the request could not be read"
        super().warning(msg, *args, **kwargs)
