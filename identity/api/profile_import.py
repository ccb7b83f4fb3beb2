"""Bulk import of profiles over HTTP: the request's body held to the import's limits, the
pipeline of identity.imports run on it, and its report as the answer."""

import contextlib
import io
from collections.abc import Callable, Iterable

from flask import Response, current_app, request
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge, RequestTimeout

from identity.api.guards import services
from identity.api.parsing import IncompleteBody
from identity.db import unit_of_work
from identity.deadlines import DeadlineInput
from identity.errors import EmptyImport, ImportStopped, ServiceStopping, TooManyImportLines
from identity.imports.pipeline import checked_batches
from identity.imports.report import spooled_report
from identity.lifecycle import seconds_since_stop, stop_requested
from identity.services.principal import Principal
from identity.services.profiles import Outcome, exclusive_import
from identity.services.profiles import import_profiles as write_profiles

NDJSON = "application/x-ndjson"
_DRAIN_READ = 64 * 1024
CSV = "text/csv"

# What the import says of a body that ended early; the problem adds how far it got.
_CUT_OFF = "the request body ended before its Content-Length; the incomplete line was not taken"


class EmptyBody(BadRequest):
    """A chunked body without one byte in its chunks."""

    description = "send the lines in the body: NDJSON or CSV with a header row"


class TooManyLines(RequestEntityTooLarge):
    """The body has more lines than one import takes."""


class ImportTooSlow(RequestTimeout):
    """The body took longer to arrive (and be written) than one import may."""


def run_import(principal: Principal, source: str) -> Response:
    """This request's import: the body read as it streams in, checked on helper
    processes, written a batch per transaction; the report, or a problem that says how
    far it got."""
    settings = current_app.config["IDENTITY"]
    if not request.content_length and "chunked" not in request.headers.get("Transfer-Encoding", ""):
        raise EmptyBody()
    stream = request.environ["wsgi.input"]
    if isinstance(stream, DeadlineInput):  # the import's own, longer deadline
        stream.allow(settings["MAX_IMPORT_SECONDS"], idle=settings["IMPORT_IDLE_SECONDS"])
    body = ImportBody(
        stream,
        request.content_length,
        max_bytes=settings["MAX_IMPORT_BYTES"],
        max_seconds=settings["MAX_IMPORT_SECONDS"],
        clock=services().clock,
    )
    batches = checked_batches(
        body,
        csv=request.mimetype == CSV,
        source=source,
        max_lines=settings["MAX_IMPORT_LINES"],
        batch_size=settings["IMPORT_BATCH_SIZE"],
        processes=settings["IMPORT_PROCESSES"],
    )
    uow = unit_of_work()
    with exclusive_import(uow, principal):
        stopping = _until_stopped(batches, body, settings["STOP_GRACE_SECONDS"])
        return report(write_profiles(uow, principal, stopping, services().suppression))


def _until_stopped(batches: Iterable, body: "ImportBody", grace: float) -> Iterable:
    """The batches, until this process is asked to stop: then the import ends before the
    next batch is written, and answers 503 with how far it got, within the grace period,
    instead of being cut off with the connection. The rest of the body is read first (and
    dropped), while the grace lasts: a client that sends its whole body before it reads
    gets the answer, where a close with its data unread would reset the connection."""
    for batch in batches:
        if stop_requested():
            body.drain(max(0.0, grace - 2.0 - seconds_since_stop()))
            raise ServiceStopping(
                "this replica is stopping; send the lines after lines_done again (to any"
                " replica), or the whole file"
            )
        yield batch


class ImportBody(io.RawIOBase):
    """The request body as the server hands it over, held to the import's limits: it
    must end where its Content-Length says, stay under `max_bytes`, and arrive within
    `max_seconds`. Read from the server's stream itself: werkzeug's own wrapper ends a
    chunked body at the limit without a word, and would have it taken as complete."""

    def __init__(
        self,
        stream,
        length: int | None,
        *,
        max_bytes: int,
        max_seconds: float,
        clock: Callable[[], float],
    ):
        if length is not None and length > max_bytes:
            raise RequestEntityTooLarge()
        self.stream = stream
        self.length = length
        self.max_bytes = max_bytes
        self.clock = clock
        self.deadline = clock() + max_seconds
        self.received = 0

    def readable(self) -> bool:
        return True

    def drain(self, seconds: float) -> None:
        """Read the rest of the body and drop it, for at most `seconds`."""
        if isinstance(self.stream, DeadlineInput):
            self.stream.allow(seconds)
        with contextlib.suppress(Exception):  # too slow, gone: the answer goes out anyway
            while self.stream.read(_DRAIN_READ):
                pass

    def readinto(self, buffer) -> int:
        if self.clock() > self.deadline:
            raise ImportTooSlow("the body took longer to arrive than an import may take")
        want = len(buffer)
        if self.length is not None:
            want = min(want, self.length - self.received)
            if want == 0:
                return 0
        try:
            chunk = self.stream.read(want)
        except HTTPException:  # the body's deadline passed (408)
            raise
        except Exception:  # each server says "the client went away" its own way
            raise IncompleteBody(_CUT_OFF) from None
        if not chunk:
            if self.length is not None and self.received < self.length:
                raise IncompleteBody(_CUT_OFF)
            return 0
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise RequestEntityTooLarge()
        buffer[: len(chunk)] = chunk
        return len(chunk)


def report(outcomes: Iterable[Outcome]) -> Response:
    """The report (one JSON line per outcome, then a summary line), sent once the body is
    read to its end. An import that stops part-way answers a problem that says how far it
    got instead; the pipeline's own errors answer as this endpoint always has."""
    try:
        pieces = spooled_report(outcomes)
    except EmptyImport:
        raise EmptyBody() from None
    except ImportStopped as stopped:
        if isinstance(stopped.cause, TooManyImportLines):
            cause = TooManyLines(stopped.cause.detail)
            raise ImportStopped(cause, stopped.lines_done) from stopped.cause
        raise
    return Response(pieces, mimetype=NDJSON)
