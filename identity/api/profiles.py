"""Minimal profiles: what the sites know about an address, one at a time or in bulk."""

import json
from http import HTTPStatus

from flask import url_for
from flask.views import MethodView
from marshmallow import RAISE

from identity.api.guards import Blueprint, accepts, principal, services
from identity.api.profile_import import CSV, NDJSON, run_import
from identity.db import unit_of_work
from identity.services.profiles import record_profile
from schemas.profiles import (
    USER_EXAMPLE,
    ImportQuerySchema,
    ImportReportLineSchema,
    ProfileResultSchema,
    ProfileSubmissionSchema,
)

blp = Blueprint(
    "profiles",
    __name__,
    url_prefix="/v1/profiles",
    description="Make minimal profiles, or add to the record an address already has.",
)

_SUBMISSION_EXAMPLE = {
    "email": "Anna.vanderBerg@Example.com",
    "source": "webinar",
    "first_name": "Anna",
    "infix": "van der",
    "last_name": "Berg",
    "phone": "020 123 4567",
    "country": "NL",
}


# Where the answer leads: the record it describes, by its id (for a key that may read it).
_RECORD_LINKS = {
    "GetUserById": {
        "operationRef": "#/paths/~1v1~1users~1{user_id}/get",
        "parameters": {"user_id": "$response.body#/id"},
        "description": "The record, by its `id` (a key with the `users:read` scope).",
    },
}


def _answer(record: dict, outcome) -> dict:
    """What the calling key may learn: the id, created or merged, and the fields this
    submission filled; the whole record only with `users:read`, so a key that may only
    write profiles cannot read what a person entered on another site."""
    answer = {"id": record["id"], "outcome": outcome.status, "filled": list(outcome.filled)}
    if principal().has_scope("users:read"):
        answer = record | answer
    return answer


@blp.route("")
class Profiles(MethodView):
    @blp.site_key("profiles:write")
    @blp.arguments(ProfileSubmissionSchema, example=_SUBMISSION_EXAMPLE)
    @blp.doc(
        responses={
            HTTPStatus.CREATED: {"links": _RECORD_LINKS},
            HTTPStatus.OK: {"links": _RECORD_LINKS},
        }
    )
    @blp.response(
        HTTPStatus.CREATED,
        ProfileResultSchema,
        description="A new minimal record was made.",
        example=USER_EXAMPLE
        | {"outcome": "created", "filled": ["first_name", "infix", "last_name", "phone"]},
        headers={"Location": {"description": "the new record's URL", "schema": {"type": "string"}}},
    )
    @blp.alt_response(
        HTTPStatus.OK,
        schema=ProfileResultSchema,
        description="The address already had a record; its blanks were filled.",
        example={"id": USER_EXAMPLE["id"], "outcome": "merged", "filled": ["phone"]},
        success=True,
    )
    def post(self, submission):
        """Submit what a site knows about an address

        New address: `201` and a minimal record. Known address (in any case): `200`, and
        only the record's blank fields are filled; a value the record already has is never
        overwritten, whoever gave it. Each filled field keeps its source, site and time in
        `field_sources`. Phone numbers in national form need `country`.

        The answer is the record's `id`, `outcome` (`created` or `merged`) and the fields
        this submission `filled`; the whole record comes with it only for a key with the
        `users:read` scope (a key that may only write learns nothing the person gave
        another site).
        """
        record, outcome = record_profile(
            unit_of_work(), principal(), submission, services().suppression
        )
        if outcome.status == "merged":
            return _answer(record, outcome), HTTPStatus.OK
        location = url_for("users.UserById", user_id=record["id"])
        return _answer(record, outcome), HTTPStatus.CREATED, {"Location": location}


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


# The body as text; an empty one is a 400.
_IMPORT_BODY = {"type": "string", "minLength": 1}


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
                    "schema": _IMPORT_BODY,
                    "example": '{"email": "anna@example.com", "first_name": "Anna"}\n'
                    '{"email": "bob@example.com", "source": "event", "phone": "+31201234567"}\n',
                },
                CSV: {
                    "schema": _IMPORT_BODY,
                    "example": "email,first_name,last_name\nanna@example.com,Anna,Berg\n",
                },
            },
        },
        responses={
            "200": {
                "description": "One JSON line per input line, in input order, then a summary line.",
                "content": {
                    NDJSON: {"schema": ImportReportLineSchema, "example": _IMPORT_REPORT_EXAMPLE}
                },
            }
        },
    )
    @blp.body_problems
    @blp.alt_response(HTTPStatus.TOO_MANY_REQUESTS, response="TOO_MANY_REQUESTS")
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
        line (`created`, `merged` or `rejected` with its `errors`, each field named by its
        path as in every problem: `newsletters.copernica.consented_at`), then a `summary`
        line, always the last of a whole answer: a report that ends without it was cut
        on its way (its `lines` also counts the lines before it).

        One import per site runs at a time: a second gets `429` with `Retry-After`. An import
        has limits of bytes (`413`), lines (`413`) and time (`408`, also when its body stops
        arriving for 30 seconds). An import that stops part-way (a limit, a body shorter
        than its `Content-Length`, the database going away, the replica stopping: `503`)
        answers a problem whose `lines_done` says through which input line the work is
        done; nothing of a line after it was written. An empty body is a `400`; a CSV
        header that does not name known columns once each, `email` among them, a `422`.
        """
        return run_import(principal(), query["source"])
