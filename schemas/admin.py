"""Staff work: the reason every staff request gives, a search, a record as staff see it,
an impersonation's token, the trail; and the person's own erasure."""

import marshmallow as ma
from marshmallow import fields, validate

from schemas.accounts import BrowserWithIpSchema, CodeSchema
from schemas.common import UtcDateTime, Uuid, older_than, page_limit
from schemas.profiles import ProfileFieldsSchema, UserSchema
from schemas.text import Text

REASON_LENGTH = 500
_REASON = "why: the request or ticket this handles (kept in the trail with what you did)"


class ReasonSchema(ma.Schema):
    """The `reason` every staff request gives."""

    reason = Text(
        required=True,
        blank=False,
        max_length=REASON_LENGTH,
        validate=validate.Length(min=3, error="Say why, in a few words at least."),
        metadata={"description": _REASON, "example": "ticket 4711: asked for a copy of her data"},
    )


class SearchQuerySchema(ReasonSchema):
    q = Text(
        required=True,
        blank=False,
        max_length=320,
        metadata={
            "description": "the beginning of an address, a first or last name, or a"
            " company's name (any case)",
            "example": "anna",
        },
    )
    limit = page_limit("records")
    after = Uuid(
        load_default=None,
        metadata={"description": "the `id` of the last record received: the next page"},
    )


class FoundSchema(ma.Schema):
    id = Uuid()
    email = fields.String()
    first_name = fields.String(allow_none=True)
    infix = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    status = fields.String()
    created_at = UtcDateTime()
    companies = fields.List(fields.String(), metadata={"description": "their companies' names"})


class StaffCompanySchema(ma.Schema):
    id = Uuid()
    name = fields.String()
    role = fields.String(metadata={"enum": ["admin", "member"]})


class StaffViewSchema(UserSchema):
    """The record as staff see it to handle a request."""

    email_verified_at = UtcDateTime(allow_none=True)
    has_password = fields.Boolean()
    companies = fields.List(fields.Nested(StaffCompanySchema))
    staff_role = fields.String(allow_none=True, metadata={"enum": ["support", "dpo", "admin"]})
    second_factor = fields.Boolean(metadata={"description": "whether a second factor is on"})
    social_identities = fields.List(
        fields.String(), metadata={"description": "the providers they sign in with"}
    )


class CorrectionSchema(ProfileFieldsSchema):
    """The fields to correct (a field sent as null is cleared); the address is the
    mailbox owner's to change."""

    country = fields.String(
        validate=validate.Regexp(r"^[A-Z]{2}$", error="an ISO 3166 alpha-2 code, e.g. NL"),
        metadata={"description": "for reading national phone numbers", "example": "NL"},
    )


class ImpersonationSchema(ma.Schema):
    access_token = fields.String(
        metadata={"description": "the person's access token, its `act` claim naming you"}
    )
    token_type = fields.String(metadata={"example": "Bearer"})
    expires_in = fields.Integer(metadata={"description": "seconds; there is no refresh token"})


class AuditQuerySchema(ReasonSchema):
    user_id = Uuid(load_default=None, metadata={"description": "only what was done to this person"})
    actor_id = Uuid(
        load_default=None, metadata={"description": "only what this person or staff member did"}
    )
    since = fields.AwareDateTime(
        load_default=None, metadata={"description": "from this time on (RFC 3339)"}
    )
    until = fields.AwareDateTime(
        load_default=None, metadata={"description": "before this time (RFC 3339)"}
    )
    limit = page_limit("events")
    after = older_than("event")


class AuditEventSchema(ma.Schema):
    id = fields.Integer(metadata={"description": "the cursor to page on (`after`)"})
    at = UtcDateTime(metadata={"description": "when it happened"})
    recorded_at = UtcDateTime(
        metadata={"description": "when it was written: the database's clock, never set"}
    )
    event = fields.String(metadata={"example": "staff.read"})
    actor = fields.String(
        metadata={
            "enum": ["person", "staff", "impersonation", "site", "link", "operator", "anyone"],
            "description": "who acted: the person, staff, staff acting as the person, a"
            " site, an unsubscribe link, an operator's command, or an unproven caller",
        }
    )
    actor_id = Uuid(allow_none=True, metadata={"description": "the person or staff member"})
    subject_id = Uuid(allow_none=True, metadata={"description": "whose record"})
    site = fields.String(allow_none=True)
    key_prefix = fields.String(allow_none=True)
    client_ip = fields.String(allow_none=True)
    reason = fields.String(allow_none=True, metadata={"description": "what staff gave"})
    details = fields.Dict(metadata={"description": "ids, counts and fixed words"})


class EraseMeSchema(CodeSchema, BrowserWithIpSchema):
    """Proof that it is the person: their password (and a code when a second factor is
    on), or a sign-in made in the last minutes."""

    current_password = fields.String(
        load_default=None,
        validate=validate.Length(max=4096, error="Use at most 1,000 characters."),
        metadata={"description": "left out: the sign-in must be a few minutes old at most"},
    )
