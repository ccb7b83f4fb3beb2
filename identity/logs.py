"""Logs as JSON lines, each carrying the request id; and the request id itself."""

import json
import logging
import re
import sys
import uuid
from datetime import UTC, datetime

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is taken when it looks like an id; anything else (long, odd characters,
# an address: no "@") is replaced by a new one.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
# ...unless it holds what looks like a credential, anywhere in it: one of the service's
# own (a site key, a refresh token, a JWT), or any long run of random-looking URL-safe
# characters (mixed case and digits, as a key's body without its prefix): a credential
# sent there by mistake never goes into a log line. Hex ids (UUIDs) stay acceptable.
_CREDENTIAL = re.compile(
    r"idsk_|idrt_|eyJ|(?=[A-Za-z0-9_-]{24})(?=[A-Za-z0-9_-]*[a-z])(?=[A-Za-z0-9_-]*[A-Z])"
    r"[A-Za-z0-9_-]{24}"
)
# Where the app leaves, for the access log, the pattern of the route a request matched;
# and, once a guard has let it through, who called: (site name, user id or None).
ROUTE = "identity.route"
CALLER = "identity.caller"
# The attributes every LogRecord has; anything else came as `extra` and is logged too.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def current_request_id() -> str | None:
    """The id of the request being served (made now, should it have none yet, so the
    answer's header gives the same); None outside a request."""
    from flask import g, has_request_context

    if not has_request_context():
        return None
    if not g.get("request_id"):
        g.request_id = uuid.uuid4().hex
    return g.request_id


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request_id, extras.
    No traceback: the code that logs an error says what of it may be logged."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        line.update((key, value) for key, value in record.__dict__.items() if key not in _STANDARD)
        return json.dumps(line, default=str, ensure_ascii=False)


class RequestIdFilter(logging.Filter):
    """Puts the id of the request being served on every record logged while serving it."""

    def filter(self, record: logging.LogRecord) -> bool:
        from flask import g, has_request_context

        if not hasattr(record, "request_id") and has_request_context():
            record.request_id = g.get("request_id")
        return True


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test may have replaced it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


# Loggers of libraries whose warnings belong in the service's log: psycopg_pool's
# "discarding closed connection", for one, would otherwise come out as plain text.
_LIBRARIES = ("psycopg",)


def configure(level: int = logging.INFO) -> None:
    """The service's loggers, and the libraries' warnings, write JSON lines to stderr
    (once per process)."""
    logger = logging.getLogger("identity")
    if any(isinstance(h, _Stderr) for h in logger.handlers):
        return
    handler = _Stderr()
    handler.setFormatter(JsonLines())
    handler.addFilter(RequestIdFilter())
    logger.addHandler(handler)
    logger.setLevel(level)
    for name in _LIBRARIES:
        library = logging.getLogger(name)
        library.addHandler(handler)
        library.setLevel(logging.WARNING)


def init_app(app) -> None:
    """JSON logs, and the request id taken from each request and given back with it."""
    # Flask is imported here, not above: gunicorn's master loads this module (for the
    # formatter) before gevent has patched anything.
    from flask import g, request

    def take_request_id() -> None:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        taken = _REQUEST_ID.fullmatch(given) and not _CREDENTIAL.search(given)
        g.request_id = given if taken else uuid.uuid4().hex
        request.environ[ROUTE] = request.url_rule.rule if request.url_rule else None

    def return_request_id(response):
        response.headers[REQUEST_ID_HEADER] = g.get("request_id") or uuid.uuid4().hex
        return response

    configure()
    app.before_request(take_request_id)
    app.after_request(return_request_id)
