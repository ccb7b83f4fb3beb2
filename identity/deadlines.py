"""A deadline for each request's body, so a client sending it a byte at a time is cut off."""

import time

import gevent
from gevent import monkey
from werkzeug.exceptions import RequestTimeout


class BodyDeadline:
    """WSGI middleware: a request's body must arrive within `seconds` of its start, so a
    client sending it a byte at a time is cut off (408). An endpoint that streams a long
    body (the import) sets its own deadline with `input.allow(seconds)`."""

    def __init__(self, app, seconds: float):
        self.app = app
        self.seconds = seconds

    def __call__(self, environ, start_response):
        environ["wsgi.input"] = DeadlineInput(environ["wsgi.input"], self.seconds)
        return self.app(environ, start_response)


class DeadlineInput:
    """The request body, refusing to wait past its deadline. Under gevent a read that
    waits is cut off at the deadline; without it (a threaded test server) the deadline
    is checked between reads."""

    def __init__(self, stream, seconds: float):
        self.stream = stream
        self.deadline = time.monotonic() + seconds
        # Whether the body was read to its end: one left unread (a stranger's, refused
        # before it was waited for) is a reason to close the connection after answering.
        self.finished = False
        self.received = 0
        self.idle: float | None = None

    def allow(self, seconds: float, *, idle: float | None = None) -> None:
        """Give the body `seconds` from now, and each read at most `idle` of them: a body
        that stops arriving is cut off then, not at the end of its time."""
        self.deadline = time.monotonic() + seconds
        self.idle = idle

    def read(self, *args):
        return self._bounded(self.stream.read, *args)

    def readline(self, *args):
        return self._bounded(self.stream.readline, *args)

    def __iter__(self):
        return iter(self.readline, b"")

    def _bounded(self, read, *args):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BodyTooSlow()
        if monkey.is_module_patched("socket"):
            if self.idle is not None and self.idle < left:
                with gevent.Timeout(self.idle, BodyStopped):
                    data = read(*args)
            else:
                with gevent.Timeout(left, BodyTooSlow):
                    data = read(*args)
        else:
            data = read(*args)
        self.received += len(data)
        if not data:
            self.finished = True
        return data


def body_left_unread(environ) -> bool:
    """Whether the request came with a body that was not read to its end."""
    body = environ.get("wsgi.input")
    if not isinstance(body, DeadlineInput) or body.finished:
        return False
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return True
    try:
        return body.received < int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False


class BodyTooSlow(RequestTimeout):
    """The body did not arrive by its deadline (408)."""

    description = "the request body took too long to arrive"


class BodyStopped(RequestTimeout):
    """The body stopped arriving for longer than its idle limit (408)."""

    description = "the request body stopped arriving"
