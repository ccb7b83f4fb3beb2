"""Minimal profiles: what the sites know about an address, one at a time or in bulk."""

import csv
import io
import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from http import HTTPStatus

from flask import Response, current_app, g, request, url_for
from flask.views import MethodView
from marshmallow import RAISE, ValidationError

from identity.api import Blueprint, accepts
from identity.db import get_conn
from identity.errors import InvalidInput
from identity.services.profiles import import_profiles, record_profile
from schemas.profiles import (
    USER_EXAMPLE,
    ImportQuerySchema,
    ProfileResultSchema,
    ProfileSubmissionSchema,
)

blp = Blueprint(
    "profiles",
    __name__,
    url_prefix="/v1/profiles",
    description="Make minimal profiles, or add to the record an address already has.",
)

NDJSON = "application/x-ndjson"
CSV = "text/csv"

# A longer line is rejected on its own rather than read into memory.
MAX_LINE_BYTES = 64 * 1024
# The report is kept in memory up to this size, on disk beyond it.
_REPORT_IN_MEMORY = 1024 * 1024

_submission_schema = ProfileSubmissionSchema()

_TOO_LONG = {"line": [f"longer than {MAX_LINE_BYTES} bytes"]}

_SUBMISSION_EXAMPLE = {
    "email": "Anna.vanderBerg@Example.com",
    "source": "webinar",
    "first_name": "Anna",
    "infix": "van der",
    "last_name": "Berg",
    "phone": "020 123 4567",
    "country": "NL",
}


@blp.route("")
class Profiles(MethodView):
    @blp.site_key("profiles:write")
    @blp.arguments(ProfileSubmissionSchema, example=_SUBMISSION_EXAMPLE)
    @blp.response(
        HTTPStatus.CREATED,
        ProfileResultSchema,
        description="A new minimal record was made.",
        example=USER_EXAMPLE | {"filled": ["first_name", "infix", "last_name", "phone"]},
    )
    @blp.alt_response(
        HTTPStatus.OK,
        schema=ProfileResultSchema,
        description="The address already had a record; its blanks were filled.",
        example=USER_EXAMPLE | {"filled": ["phone"]},
        success=True,
    )
    def post(self, submission):
        """Submit what a site knows about an address

        New address: `201` and a minimal record. Known address (in any case): `200`, and
        only the record's blank fields are filled; a value the record already has is never
        overwritten, whoever gave it. Each filled field keeps its source, site and time in
        `field_sources`. Phone numbers in national form need `country`.
        """
        record, outcome = record_profile(get_conn(), g.site.site_name, submission)
        record["filled"] = list(outcome.filled)
        if outcome.status == "merged":
            return record, HTTPStatus.OK
        location = url_for("users.UserById", user_id=record["id"])
        return record, HTTPStatus.CREATED, {"Location": location}


_IMPORT_REPORT_EXAMPLE = "\n".join(
    json.dumps(line)
    for line in (
        {"line": 1, "status": "created", "id": "7d5c3f0e-2b1a-4c8e-9f6d-0a1b2c3d4e5f"},
        {"line": 2, "status": "merged", "id": "0b9e8f7a-6d5c-4b3a-8f1e-2d3c4b5a6f7e"},
        {
            "line": 3,
            "status": "rejected",
            "errors": {"email": ["An email address must have an @-sign."]},
        },
        {"summary": {"lines": 3, "created": 1, "merged": 1, "rejected": 1}},
    )
)


@blp.route("/import")
class ProfileImport(MethodView):
    @blp.site_key("profiles:write")
    @blp.arguments(ImportQuerySchema, location="query", unknown=RAISE)
    @blp.doc(
        requestBody={
            "required": True,
            "description": "One submission per line (NDJSON), or a CSV file whose header"
            " names the fields.",
            "content": {
                NDJSON: {
                    "schema": {"type": "string"},
                    "example": '{"email": "anna@example.com", "first_name": "Anna"}\n'
                    '{"email": "bob@example.com", "source": "event", "phone": "+31201234567"}\n',
                },
                CSV: {
                    "schema": {"type": "string"},
                    "example": "email,first_name,last_name\nanna@example.com,Anna,Berg\n",
                },
            },
        },
        responses={
            "200": {
                "description": "One JSON line per input line, in input order, then a summary line.",
                "content": {
                    NDJSON: {"schema": {"type": "string"}, "example": _IMPORT_REPORT_EXAMPLE}
                },
            }
        },
    )
    @blp.alt_response(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, response="UNSUPPORTED_MEDIA_TYPE")
    @blp.alt_response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, response="REQUEST_ENTITY_TOO_LARGE")
    @accepts(NDJSON, CSV)
    def post(self, query):
        """Import many submissions at once

        The body is NDJSON (`application/x-ndjson`, one submission object per line) or CSV
        (`text/csv`, a header row of field names, then one submission per row; empty cells
        are left out). Each line takes the same fields and merge rules as
        `POST /v1/profiles`; a line without `source` gets the `source` query parameter.

        The body is streamed, and written a batch of lines per transaction: a bad line is
        rejected and reported, and never stops the good ones. Importing the same file twice
        is harmless: the second run only merges. The answer is NDJSON: one line per input
        line (`created`, `merged` or `rejected` with its `errors`), then a `summary` line.
        """
        request.max_content_length = current_app.config["IDENTITY"]["MAX_IMPORT_BYTES"]
        if request.mimetype == CSV:
            lines = _csv_submissions(request.stream, query["source"])
        else:
            lines = _ndjson_submissions(request.stream, query["source"])
        outcomes = import_profiles(
            get_conn(),
            g.site.site_name,
            lines,
            current_app.config["IDENTITY"]["IMPORT_BATCH_SIZE"],
        )
        return _report(outcomes)


def _ndjson_submissions(stream, source: str) -> Iterator[tuple[int, dict | None, dict | None]]:
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
        yield _checked(line_no, data, source)


def _csv_submissions(stream, source: str) -> Iterator[tuple[int, dict | None, dict | None]]:
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
        yield _checked(line_no, {k: v for k, v in zip(header, row, strict=True) if v != ""}, source)


def _csv_header(row: list[str]) -> list[str]:
    header = [cell.strip().lstrip("\ufeff").lower() for cell in row]
    known = _submission_schema.fields
    unknown = [name for name in header if name not in known]
    if not header or "email" not in header or unknown:
        raise InvalidInput(
            "the first CSV row must name the columns, one of them email",
            errors={
                "header": [f"unknown column {name!r}" for name in unknown] or ["no email column"]
            },
        )
    return header


def _checked(line_no: int, data: dict, source: str) -> tuple[int, dict | None, dict | None]:
    data.setdefault("source", source)
    try:
        return line_no, _submission_schema.load(data), None
    except ValidationError as exc:
        return (
            line_no,
            None,
            {field: list(msgs) for field, msgs in exc.normalized_messages().items()},
        )


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


def _report(outcomes) -> Response:
    """The whole report, spooled to disk as it is made, then sent."""
    counts = Counter()
    report = tempfile.SpooledTemporaryFile(max_size=_REPORT_IN_MEMORY)  # noqa: SIM115 - see chunks
    try:
        for outcome in outcomes:
            counts[outcome.status] += 1
            line = {"line": outcome.ref, "status": outcome.status}
            if outcome.user_id is not None:
                line["id"] = str(outcome.user_id)
            if outcome.errors:
                line["errors"] = outcome.errors
            report.write(json.dumps(line).encode() + b"\n")
    except BaseException:
        report.close()
        raise
    summary = {"lines": counts.total(), **{s: counts[s] for s in ("created", "merged", "rejected")}}
    report.write(json.dumps({"summary": summary}).encode() + b"\n")
    report.seek(0)

    def chunks():
        with report:
            while chunk := report.read(64 * 1024):
                yield chunk

    return Response(chunks(), mimetype=NDJSON)
