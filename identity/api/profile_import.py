"""Bulk import of profiles: reading NDJSON or CSV as it streams in, checking it, and the
per-line report."""

import csv
import io
import json
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import islice

from flask import Response, current_app, request
from marshmallow import ValidationError
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge, RequestTimeout

from identity import bulk
from identity.api import CLOCK
from identity.api.parsing import IncompleteBody
from identity.db import get_conn
from identity.deadlines import DeadlineInput
from identity.errors import ImportStopped, InvalidInput
from identity.services.principal import Principal
from identity.services.profiles import Outcome, exclusive_import
from identity.services.profiles import import_profiles as write_profiles
from identity.services.submissions import CheckedLine, check_line
from identity.strict_json import InvalidJson, parse_json
from schemas.common import QuickLoad
from schemas.messages import field_errors
from schemas.newsletters import ImportLineSchema

NDJSON = "application/x-ndjson"
CSV = "text/csv"

# A longer line (or CSV record) is rejected on its own rather than read into memory.
MAX_LINE_BYTES = 64 * 1024
_BOM = "\ufeff".encode()
# The report is kept in memory up to this size, on disk beyond it.
_REPORT_IN_MEMORY = 1024 * 1024
_READ_SIZE = 256 * 1024

# What the import says of a body that ended early; the problem adds how far it got.
_CUT_OFF = "the request body ended before its Content-Length; the incomplete line was not taken"
_TOO_LONG = {"line": [f"longer than {MAX_LINE_BYTES} bytes"]}

_submission_schema = ImportLineSchema()
# A line is loaded as the schema loads it, with less machinery (an import checks millions).
_load_line = QuickLoad(_submission_schema)

# A line as read: (line number, its fields (CSV) or its JSON text (NDJSON, parsed where
# it is checked), None), or (line number, None, why not).
ReadLine = tuple[int, dict | bytes | None, dict | None]


@dataclass(frozen=True)
class LongLine:
    """A line too long to take, read past and dropped. For CSV: whether a quoted cell
    is open at its end, if one was open at its start, and if not."""

    quoted_after_quoted: bool
    quoted_after_unquoted: bool


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
        stream.allow(settings["MAX_IMPORT_SECONDS"])
    body = ImportBody(
        stream,
        request.content_length,
        max_bytes=settings["MAX_IMPORT_BYTES"],
        max_seconds=settings["MAX_IMPORT_SECONDS"],
        clock=current_app.extensions[CLOCK],
    )
    reader = read_csv if request.mimetype == CSV else read_ndjson
    lines = reader(_numbered_lines(body, settings["MAX_IMPORT_LINES"]))
    batches = bulk.in_order(
        partial(check_batch, source=source),
        _batches(lines, settings["IMPORT_BATCH_SIZE"]),
        settings["IMPORT_PROCESSES"],
    )
    conn = get_conn()
    with exclusive_import(conn, principal):
        return report(write_profiles(conn, principal, batches))


class ImportBody(io.RawIOBase):
    """The request body as the server hands it over, held to the import's limits: it
    must end where its Content-Length says, stay under `max_bytes`, and arrive within
    `max_seconds`. Read from the server's stream itself: werkzeug's own wrapper ends a
    chunked body at the limit without a word, and would have it taken as complete."""

    def __init__(self, stream, length: int | None, *, max_bytes: int, max_seconds: float,
                 clock: Callable[[], float]):  # fmt: skip
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


def check_batch(batch: list[ReadLine], source: str) -> list[CheckedLine]:
    """Each line parsed (NDJSON), through the schema, then the service's own checks (in
    a helper process); `source` where a line names none. Whatever is wrong with a line
    rejects that line, and only that line."""
    return [_check(line_no, data, errors, source) for line_no, data, errors in batch]


def _check(
    line_no: int, data: dict | bytes | None, errors: dict | None, source: str
) -> CheckedLine:
    if errors is not None:
        return line_no, None, errors
    if isinstance(data, bytes):
        try:
            data = parse_json(data)
        except InvalidJson as exc:
            return line_no, None, {"line": [f"not valid JSON: {exc.why}"]}
        if not isinstance(data, dict):
            return line_no, None, {"line": ["not a JSON object"]}
    data.setdefault("source", source)
    try:
        return check_line(line_no, _load_line(data))
    except ValidationError as exc:
        return line_no, None, field_errors(exc.normalized_messages())
    except Exception as exc:  # a line must never stop the import; say what kind of failure
        return line_no, None, {"line": [f"could not be read ({type(exc).__name__})"]}


def _batches(lines: Iterable[ReadLine], size: int) -> Iterator[list[ReadLine]]:
    lines = iter(lines)
    while batch := list(islice(lines, size)):
        yield batch


def read_ndjson(lines: Iterable[tuple[int, bytes | LongLine]]) -> Iterator[ReadLine]:
    """The lines that are not blank, as they came: parsing them is the helpers' work. A
    byte order mark before the first line (Windows tools write one) is not part of it."""
    for line_no, raw in lines:
        if line_no == 1 and isinstance(raw, bytes) and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if isinstance(raw, LongLine):
            yield line_no, None, _TOO_LONG
        elif raw.strip():
            yield line_no, raw, None


def read_csv(lines: Iterable[tuple[int, bytes | LongLine]]) -> Iterator[ReadLine]:
    records = _csv_records(lines)
    header = _csv_header(next(records, (1, b"", None)))
    # One reader over whole records: a record that is not valid CSV fails alone, and the
    # reader starts afresh on the next one.
    current: list = [None]

    def texts():
        for line_no, text, errors in records:
            current[0] = (line_no, errors)
            yield text

    reader = csv.reader(texts(), strict=True)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield current[0][0], None, {"line": [_csv_reason(exc)]}
            continue
        line_no, errors = current[0]
        if errors:
            yield line_no, None, errors
            continue
        if not row:
            continue
        if len(row) != len(header):
            yield line_no, None, {"line": [f"{len(row)} cells; the header names {len(header)}"]}
            continue
        yield line_no, {name: value for name, value in zip(header, row, strict=True) if value}, None


def _csv_records(
    lines: Iterable[tuple[int, bytes | LongLine]],
) -> Iterator[tuple[int, str, dict | None]]:
    """Whole CSV records: (first line number, text, None), or (line number, "", why not).

    A quoted cell may hold line breaks, so a record ends at the first line end outside a
    quoted cell. Only a quote at the start of a cell opens one (RFC 4180); a quote inside
    an unquoted cell is a character like any other, as the csv module reads it, so a
    stray `Robert "Bob` cannot swallow the lines after it. A record over MAX_LINE_BYTES
    is rejected and skipped to its end, so a long cell cannot turn the rows after it
    into cells; a quote never closed takes the rest of the body with it.
    """
    parts: list[bytes] = []
    first = size = 0
    quoted = oversized = False
    for line_no, raw in lines:
        if not parts and not oversized:
            first = line_no
        if isinstance(raw, LongLine):
            oversized = True
            quoted = raw.quoted_after_quoted if quoted else raw.quoted_after_unquoted
        else:
            size += len(raw)
            oversized = oversized or size > MAX_LINE_BYTES
            if quoted or b'"' in raw:
                quoted = _still_quoted(raw, quoted)
            parts.append(raw)
        if oversized:
            parts.clear()
        if quoted:
            continue
        if oversized:
            yield first, "", _TOO_LONG
        else:
            try:
                yield first, b"".join(parts).decode("utf-8"), None
            except UnicodeDecodeError:
                yield first, "", {"line": ["not UTF-8"]}
        parts, size, oversized = [], 0, False
    if parts or oversized:
        yield first, "", {"line": ["a quoted cell is never closed"]}


_CELL_START = frozenset(b",\n")


def _still_quoted(line: bytes, quoted: bool, starts_cell: bool = True) -> bool:
    """Whether a quoted cell is still open at the end of this line, given whether one
    was open at its start. For a line read in pieces, `starts_cell` says whether this
    piece begins a cell (the one before ended in a comma). (A doubled quote split across
    two pieces may be misread; such a line is rejected anyway.)"""
    at = line.find(b'"')
    while at != -1:
        if quoted:
            if line[at + 1 : at + 2] == b'"':  # a doubled quote: one quote in the cell
                at = line.find(b'"', at + 2)
                continue
            quoted = False  # closed; text after it is the csv module's to refuse
        elif (line[at - 1] in _CELL_START) if at else starts_cell:
            quoted = True
        at = line.find(b'"', at + 1)
    return quoted


def _csv_reason(error: csv.Error) -> str:
    """The csv module's complaint in the words of someone writing a CSV file."""
    text = str(error)
    if "new-line character" in text:
        return "not valid CSV: a line break inside an unquoted cell; lines end in LF or CRLF"
    if "expected after" in text:
        return "not valid CSV: text after the closing quote of a cell; double a quote inside one"
    return "not valid CSV"


def _csv_header(record: tuple[int, str, dict | None]) -> list[str]:
    _, text, errors = record
    try:
        row = next(csv.reader([text], strict=True), []) if errors is None else None
    except csv.Error as exc:
        row, errors = None, {"line": [_csv_reason(exc)]}
    if row is None:
        raise InvalidInput(
            "the first CSV row must name the columns, one of them email; lines end in LF or CRLF",
            errors={"header": errors["line"]},
        )
    header = [cell.strip().lstrip("\ufeff").lower() for cell in row]
    problems = [
        f"unknown column {name!r}" for name in header if name not in _submission_schema.fields
    ]
    problems += [
        f"column {name!r} is named more than once"
        for name in sorted({name for name in header if header.count(name) > 1})
    ]
    if "email" not in header:
        problems.append("no email column")
    if problems:
        raise InvalidInput(
            "the first CSV row must name the columns, one of them email",
            errors={"header": problems},
        )
    return header


def _numbered_lines(stream: io.RawIOBase, max_lines: int) -> Iterator[tuple[int, bytes | LongLine]]:
    """(line number, bytes) of a binary stream, or a LongLine for a line too long to take."""
    reader = io.BufferedReader(stream, buffer_size=_READ_SIZE)
    line_no = 0
    while True:
        raw = reader.readline(MAX_LINE_BYTES + 1)
        if not raw:
            if line_no == 0:
                raise EmptyBody()
            return
        line_no += 1
        if line_no > max_lines:
            raise TooManyLines(f"an import takes at most {max_lines} lines")
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            # Whether it ends in a quoted cell depends on whether it starts in one.
            after_quoted, after_unquoted, starts_cell = True, False, True
            while raw:
                after_quoted = _still_quoted(raw, after_quoted, starts_cell)
                after_unquoted = _still_quoted(raw, after_unquoted, starts_cell)
                if raw.endswith(b"\n"):
                    break
                starts_cell = raw.endswith(b",")
                raw = reader.readline(MAX_LINE_BYTES)
            yield line_no, LongLine(after_quoted, after_unquoted)
            continue
        yield line_no, raw


def report(outcomes: Iterable[Outcome]) -> Response:
    """One JSON line per outcome, then a summary line; spooled to disk as it is made (the
    request body is read to its end before the answer starts), then sent. An import that
    stops part-way answers a problem that says how far it got instead."""
    counts = Counter()
    spool = tempfile.SpooledTemporaryFile(max_size=_REPORT_IN_MEMORY)  # noqa: SIM115 - see chunks
    last_line = 0
    try:
        for outcome in outcomes:
            counts[outcome.status] += 1
            last_line = outcome.ref
            spool.write(_report_line(outcome))
    except (InvalidInput, EmptyBody):
        spool.close()
        raise  # no line, or the CSV header: nothing was read past it, nothing written
    except Exception as exc:
        spool.close()
        raise ImportStopped(exc, last_line) from exc
    summary = {"lines": counts.total(), **{s: counts[s] for s in ("created", "merged", "rejected")}}
    spool.write(json.dumps({"summary": summary}).encode() + b"\n")
    spool.seek(0)

    def chunks():
        with spool:
            while chunk := spool.read(64 * 1024):
                yield chunk

    return Response(chunks(), mimetype=NDJSON)


def _report_line(outcome: Outcome) -> bytes:
    if outcome.errors:
        line = {"line": outcome.ref, "status": outcome.status, "errors": outcome.errors}
        return json.dumps(line).encode() + b"\n"
    if outcome.newsletters_kept:
        line = {"line": outcome.ref, "status": outcome.status, "id": str(outcome.user_id),
                "newsletters_kept": list(outcome.newsletters_kept)}  # fmt: skip
        return json.dumps(line).encode() + b"\n"
    # Most lines: nothing to escape, so no need for the JSON encoder.
    return b'{"line": %d, "status": "%s", "id": "%s"}\n' % (
        outcome.ref,
        outcome.status.encode(),
        str(outcome.user_id).encode(),
    )
