"""Staff work, for staff members' access tokens (a role, and a sign-in made with their
second factor): search, handle a person's request (read, correct, export, erase), act as
the person, read the trail. Each operation needs its right (identity.services.staff's
table) and a `reason`; everything is in the trail with it."""

from http import HTTPStatus

from flask import Response
from flask.views import MethodView
from marshmallow import RAISE

from identity.api.guards import Blueprint, principal, services
from identity.api.paging import next_link, next_link_header
from identity.db import unit_of_work
from schemas.admin import (
    AuditEventSchema,
    AuditQuerySchema,
    CorrectionSchema,
    FoundSchema,
    ImpersonationSchema,
    ReasonSchema,
    SearchQuerySchema,
    StaffViewSchema,
)
from schemas.profiles import USER_EXAMPLE

blp = Blueprint(
    "admin",
    __name__,
    url_prefix="/v1/admin",
    description="Staff work: search, a person's requests, acting as them, the trail.",
)

_ID = USER_EXAMPLE["id"]
_REASON = "ticket 4711: asked for a copy of her data"
_FOUND = {
    "id": _ID,
    "email": USER_EXAMPLE["email"],
    "first_name": "Anna",
    "infix": "de",
    "last_name": "Vries",
    "status": "registered",
    "created_at": "2026-11-25T09:30:00Z",
    "companies": ["Acme B.V."],
}
_VIEW = USER_EXAMPLE | {
    "status": "registered",
    "email_verified_at": "2026-11-25T09:31:00Z",
    "has_password": True,
    "companies": [
        {"id": "3b0c5d1e-7f2a-4b8c-9d6e-1a2b3c4d5e6f", "name": "Acme B.V.", "role": "admin"}
    ],
    "staff_role": None,
    "second_factor": True,
    "social_identities": ["google"],
}
_EVENT = {
    "id": 1042,
    "at": "2026-11-26T10:02:00Z",
    "recorded_at": "2026-11-26T10:02:00Z",
    "event": "staff.read",
    "actor": "staff",
    "actor_id": "5b1e9f0a-3c2d-4e8f-9a7b-6c5d4e3f2a1b",
    "subject_id": _ID,
    "site": "copernica.com",
    "key_prefix": None,
    "client_ip": "198.51.100.4",
    "reason": _REASON,
    "details": {},
}
_SEARCH_NEXT = f"/v1/admin/users?q=anna&reason=...&limit=50&after={_ID}"
_AUDIT_NEXT = "/v1/admin/audit?reason=...&limit=50&after=1042"


@blp.route("/users")
class Search(MethodView):
    @blp.staff("search_users")
    @blp.arguments(SearchQuerySchema, location="query", unknown=RAISE)
    @blp.response(
        HTTPStatus.OK,
        FoundSchema(many=True),
        example=[_FOUND],
        headers={"Link": next_link_header(_SEARCH_NEXT)},
    )
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    def get(self, query):
        """Search records

        Records whose address, first or last name, or one of whose companies' names
        begins with `q` (any case), by address, a page at a time (`Link` names the next).
        Each person shown is a read of their data: it goes into the trail with the
        `reason`. Role `support`, `dpo` or `admin`.
        """
        page, last = services().staff_work.search(
            unit_of_work(), principal(), query["q"], query["after"], query["limit"], query["reason"]
        )
        return page, next_link(last, query["limit"], q=query["q"], reason=query["reason"])


@blp.route("/users/<uuid:user_id>")
class Person(MethodView):
    @blp.staff("read_users")
    @blp.arguments(ReasonSchema, location="query", unknown=RAISE)
    @blp.response(HTTPStatus.OK, StaffViewSchema, example=_VIEW)
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    def get(self, query, user_id):
        """Read a person's record

        The record, where each value came from, its state, companies and roles, staff
        role, whether a second factor is on, the social identities. Goes into the trail
        with the `reason`. Role `support`, `dpo` or `admin`.
        """
        return services().staff_work.read(unit_of_work(), principal(), user_id, query["reason"])

    @blp.staff("correct_users")
    @blp.arguments(ReasonSchema, location="query", unknown=RAISE)
    @blp.arguments(CorrectionSchema, example={"last_name": "de Vries", "phone": None})
    @blp.response(HTTPStatus.OK, StaffViewSchema, example=_VIEW)
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    def patch(self, query, body, user_id):
        """Correct a person's record

        Sets the fields sent (null clears one), marked as staff's in `field_sources`; the
        trail keeps which fields and the `reason`. Not the address: only the mailbox's
        owner moves it. Role `dpo` or `admin`.
        """
        return services().staff_work.correct(
            unit_of_work(), principal(), user_id, body, query["reason"]
        )

    @blp.staff("erase_users")
    @blp.arguments(ReasonSchema, location="query", unknown=RAISE)
    @blp.response(HTTPStatus.NO_CONTENT, description="Erased.")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    def delete(self, query, user_id):
        """Erase a person

        As `DELETE /v1/me`, for the person's request made to staff: every table in one
        transaction, the address's keyed hash on the suppression list, the id in the
        erasure ledger, and in the trail that an erasure happened (its ledger number and
        the `reason`, nothing of the person). `409` for the only admin of a company, for
        a staff member, for yourself. Role `dpo` or `admin`.
        """
        services().staff_work.erase(unit_of_work(), principal(), user_id, query["reason"])


@blp.route("/users/<uuid:user_id>/export")
class PersonExport(MethodView):
    @blp.staff("export_users")
    @blp.arguments(ReasonSchema, location="query", unknown=RAISE)
    @blp.response(
        HTTPStatus.OK,
        description="Everything stored about the person, as `GET /v1/me/export` gives it.",
        example={"exported_at": "2026-11-26T10:02:00Z", "profile": USER_EXAMPLE},
        content_type="application/json",
    )
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    def get(self, query, user_id):
        """Export a person's data

        The document of `GET /v1/me/export`, for the person's request made to staff. Goes
        into the trail with the `reason`. Role `dpo` or `admin`.
        """
        document = services().staff_work.export(
            unit_of_work(), principal(), user_id, query["reason"]
        )
        return Response(document, mimetype="application/json")


@blp.route("/users/<uuid:user_id>/impersonate")
class Impersonation(MethodView):
    @blp.staff("impersonate")
    @blp.arguments(ReasonSchema, location="query", unknown=RAISE)
    @blp.response(
        HTTPStatus.OK,
        ImpersonationSchema,
        example={
            "access_token": "eyJhbGciOiJFUzI1NiIs...",
            "token_type": "Bearer",
            "expires_in": 600,
        },
    )
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    def post(self, query, user_id):
        """Act as a person

        An access token of the person (`sub`) whose `act` claim names you (RFC 8693),
        for at most 10 minutes, with no refresh token: to see what they see. It does
        what the person's token does, except what takes an account over or away
        (password, address, second factor, social identities, erasure: `403`), and
        never staff work. Every request made with it goes into the trail with both of
        you. `403` for a staff member's account, for yourself, for a profile without an
        account. Role `support` or `admin`.
        """
        return services().staff_work.impersonate(
            unit_of_work(), principal(), user_id, query["reason"]
        )


@blp.route("/audit")
class Audit(MethodView):
    @blp.staff("read_audit")
    @blp.arguments(AuditQuerySchema, location="query", unknown=RAISE)
    @blp.response(
        HTTPStatus.OK,
        AuditEventSchema(many=True),
        example=[_EVENT],
        headers={"Link": next_link_header(_AUDIT_NEXT)},
    )
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    def get(self, query):
        """Read the trail

        Who read or changed whose data, when, from where and why, newest first, a page
        at a time (`Link` names the next): every security event, every staff read,
        every change by anyone but the person. Filter by person (`user_id`), by who did
        it (`actor_id`), by time (`since`, `until`). The reading goes into the trail too.
        Role `dpo` or `admin`.
        """
        filters = {k: query[k] for k in ("user_id", "actor_id", "since", "until", "after")}
        page, last = services().staff_work.audit(
            unit_of_work(), principal(), filters, query["limit"], query["reason"]
        )
        kept = {k: query[k] for k in ("user_id", "actor_id") if query[k]}
        kept |= {k: query[k].isoformat() for k in ("since", "until") if query[k]}
        return page, next_link(last, query["limit"], reason=query["reason"], **kept)
