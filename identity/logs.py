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
# An unsubscribe token in a path is a credential: the log names the endpoint, not it.
_UNSUBSCRIBE_TOKEN = re.compile(r"^/v1/unsubscribe/[^/]+")
# The attributes every LogRecord has; anything else came as `extra` and is logged too.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def loggable_path(path: str) -> str:
    """The path as a log line may name it: an unsubscribe link's token left out."""
    return _UNSUBSCRIBE_TOKEN.sub("/v1/unsubscribe/{token}", path)


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


def configure(level: int = logging.INFO) -> None:
    """The service's loggers write JSON lines to stderr (once per process)."""
    logger = logging.getLogger("identity")
    if any(isinstance(h, _Stderr) for h in logger.handlers):
        return
    handler = _Stderr()
    handler.setFormatter(JsonLines())
    handler.addFilter(RequestIdFilter())
    logger.addHandler(handler)
    logger.setLevel(level)


def init_app(app) -> None:
    """JSON logs, and the request id taken from each request and given back with it."""
    # Flask is imported here, not above: gunicorn's master loads this module (for the
    # formatter) before gevent has patched anything.
    from flask import g, request

    def take_request_id() -> None:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex

    def return_request_id(response):
        response.headers[REQUEST_ID_HEADER] = g.get("request_id") or uuid.uuid4().hex
        return response

    configure()
    app.before_request(take_request_id)
    app.after_request(return_request_id)
