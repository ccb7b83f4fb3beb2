"""Bulk import of profiles: reading NDJSON or CSV as it streams in, checking it, and the
per-line report."""

import csv
import io
import json
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import islice

from flask import Response
from marshmallow import ValidationError

from identity.api import bulk
from identity.errors import InvalidInput
from identity.services.profiles import CheckedLine, Outcome, check_line
from schemas.profiles import ProfileSubmissionSchema

NDJSON = "application/x-ndjson"
CSV = "text/csv"

# A longer line is rejected on its own rather than read into memory.
MAX_LINE_BYTES = 64 * 1024
# The report is kept in memory up to this size, on disk beyond it.
_REPORT_IN_MEMORY = 1024 * 1024

_TOO_LONG = {"line": [f"longer than {MAX_LINE_BYTES} bytes"]}

_submission_schema = ProfileSubmissionSchema()

# A line as read: (line number, its fields, None), or (line number, None, why not).
ReadLine = tuple[int, dict | None, dict | None]


def checked_batches(
    stream, media_type: str, source: str, batch_size: int, processes: int
) -> Iterator[list[CheckedLine]]:
    """The body's lines in batches, each line checked; `processes` check in parallel."""
    lines = read_csv(stream, source) if media_type == CSV else read_ndjson(stream, source)
    return bulk.in_order(check_batch, _batches(lines, batch_size), processes)


def check_batch(batch: list[ReadLine]) -> list[CheckedLine]:
    """Each line through the schema, then the service's own checks (in a helper process)."""
    checked = []
    for line_no, data, errors in batch:
        if errors is None:
            try:
                data = _submission_schema.load(data)
            except ValidationError as exc:
                errors = exc.normalized_messages()
        checked.append(check_line(line_no, data) if errors is None else (line_no, None, errors))
    return checked


def _batches(lines: Iterable[ReadLine], size: int) -> Iterator[list[ReadLine]]:
    lines = iter(lines)
    while batch := list(islice(lines, size)):
        yield batch


def read_ndjson(stream, source: str) -> Iterator[ReadLine]:
    for line_no, raw in _numbered_lines(stream):
        if raw is None:
            yield line_no, None, _TOO_LONG
            continue
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            yield line_no, None, {"line": ["not a JSON object in UTF-8"]}
            continue
        if not isinstance(data, dict):
            yield line_no, None, {"line": ["not a JSON object"]}
            continue
        data.setdefault("source", source)
        yield line_no, data, None


def read_csv(stream, source: str) -> Iterator[ReadLine]:
    too_long: set[int] = set()

    def text():
        for line_no, raw in _numbered_lines(stream):
            if raw is None:
                too_long.add(line_no)
                raw = b"\n"
            yield raw.decode("utf-8", "surrogateescape")

    reader = csv.reader(text(), strict=True)
    header = _csv_header(next(reader, []))
    while True:
        # A record may span lines (a quoted newline); it is reported by its first line.
        line_no = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield line_no, None, {"line": [f"not valid CSV: {exc}"]}
            continue
        if not row:
            if line_no in too_long:
                yield line_no, None, _TOO_LONG
            continue
        if len(row) != len(header):
            yield line_no, None, {"line": [f"{len(row)} cells; the header names {len(header)}"]}
            continue
        try:
            "".join(row).encode("utf-8")
        except UnicodeEncodeError:
            yield line_no, None, {"line": ["not UTF-8"]}
            continue
        data = {name: value for name, value in zip(header, row, strict=True) if value != ""}
        data.setdefault("source", source)
        yield line_no, data, None


def _csv_header(row: list[str]) -> list[str]:
    header = [cell.strip().lstrip("\ufeff").lower() for cell in row]
    unknown = [name for name in header if name not in _submission_schema.fields]
    if not header or "email" not in header or unknown:
        raise InvalidInput(
            "the first CSV row must name the columns, one of them email",
            errors={
                "header": [f"unknown column {name!r}" for name in unknown] or ["no email column"]
            },
        )
    return header


def _numbered_lines(stream) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) of a binary stream; None for a line too long to take."""
    reader = io.BufferedReader(stream, buffer_size=256 * 1024)
    line_no = 0
    while True:
        raw = reader.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        line_no += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = reader.readline(MAX_LINE_BYTES)
            yield line_no, None
            continue
        yield line_no, raw


def report(outcomes: Iterable[Outcome]) -> Response:
    """One JSON line per outcome, then a summary line; spooled to disk as it is made (the
    request body is read to its end before the answer starts), then sent."""
    counts = Counter()
    spool = tempfile.SpooledTemporaryFile(max_size=_REPORT_IN_MEMORY)  # noqa: SIM115 - see chunks
    try:
        for outcome in outcomes:
            counts[outcome.status] += 1
            spool.write(_report_line(outcome))
    except BaseException:
        spool.close()
        raise
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
    # Most lines: nothing to escape, so no need for the JSON encoder.
    return b'{"line": %d, "status": "%s", "id": "%s"}\n' % (
        outcome.ref,
        outcome.status.encode(),
        str(outcome.user_id).encode(),
    )
