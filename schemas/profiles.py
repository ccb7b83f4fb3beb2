"""Records: what a site may submit about an address, and the record it gets back."""

import marshmallow as ma
from marshmallow import fields, validate

from schemas.common import UtcDateTime, Uuid
from schemas.text import EMAIL, Text

SOURCES = (
    "newsletter",
    "webinar",
    "whitepaper",
    "event",
    "invitation",
    "staff",
    "social",
    "import",
)
GENDERS = ("female", "male", "non_binary", "unspecified")
LANGUAGES = ("en", "nl")
STATUSES = ("minimal", "registered")

_name = {"max_length": 100, "allow_none": True}
_phone = {"max_length": 40, "allow_none": True}


class ProfileFieldsSchema(ma.Schema):
    """The optional fields of the record."""

    first_name = Text(**_name, metadata={"example": "Anna"})
    infix = Text(**_name, metadata={"description": "Dutch tussenvoegsel", "example": "van der"})
    last_name = Text(**_name, metadata={"example": "Berg"})
    suffix = Text(**_name, metadata={"example": "jr."})
    gender = fields.String(validate=validate.OneOf(GENDERS), allow_none=True)
    phone = Text(
        **_phone,
        metadata={
            "description": "any common notation; stored in E.164",
            "example": "+31 20 123 4567",
        },
    )
    mobile = Text(**_phone, metadata={"example": "06 12345678"})
    fax = Text(**_phone)
    language = fields.String(
        validate=validate.OneOf(LANGUAGES),
        allow_none=True,
        metadata={
            "description": "the language of the mails the person gets; `en` until one is set",
            "example": "nl",
        },
    )


class ProfileSubmissionSchema(ProfileFieldsSchema):
    """What a site knows about an address, and how it came to know it."""

    email = Text(
        required=True,
        max_length=320,
        metadata=EMAIL | {"example": "anna.vanderberg@example.com"},
    )
    source = fields.String(
        required=True,
        validate=validate.OneOf(SOURCES),
        metadata={"description": "how the site came to know the address"},
    )
    country = fields.String(
        validate=validate.Regexp(r"^[A-Z]{2}$", error="an ISO 3166 alpha-2 code, e.g. NL"),
        allow_none=True,
        metadata={
            "description": "ISO 3166 alpha-2 country for reading national phone numbers",
            "example": "NL",
        },
    )


class FieldSourceSchema(ma.Schema):
    source = fields.String(metadata={"description": "how the value came in (see `source`)"})
    site = fields.String(metadata={"description": "the site that sent it"})
    at = fields.String(metadata={"description": "when, RFC 3339 UTC"})


class FieldSources(fields.Dict):
    """{field: {source, site, at}}, documented as such but written as stored: the database
    keeps it as JSON already, and every look-up would otherwise rebuild it."""

    def _serialize(self, value, attr, obj, **kwargs):
        return value


class UserSchema(ProfileFieldsSchema):
    """The one record of one email address."""

    id = Uuid(dump_only=True)
    email = fields.String(dump_only=True)
    status = fields.String(
        dump_only=True,
        validate=validate.OneOf(STATUSES),
        metadata={"description": "`minimal` until the person registers"},
    )
    field_sources = FieldSources(
        keys=fields.String(),
        values=fields.Nested(FieldSourceSchema),
        dump_only=True,
        metadata={"description": "where each field's value came from"},
    )
    created_at = UtcDateTime(dump_only=True)
    updated_at = UtcDateTime(dump_only=True)
    registered_at = UtcDateTime(dump_only=True, allow_none=True)


class ProfileResultSchema(UserSchema):
    """What a submission did: the record's id, created or merged, the fields it filled;
    and the record itself for a key with `users:read`."""

    outcome = fields.String(
        dump_only=True,
        metadata={"enum": ["created", "merged"], "description": "a new record, or added to"},
    )

    filled = fields.List(
        fields.String(),
        dump_only=True,
        metadata={"description": "the fields this submission filled; the rest were kept"},
    )


class UserQuerySchema(ma.Schema):
    email = Text(
        required=True,
        max_length=320,
        metadata=EMAIL
        | {
            "description": "the address to look up, in any case",
            "example": "Anna@Example.com",
        },
    )


class ImportQuerySchema(ma.Schema):
    source = fields.String(
        load_default="import",
        validate=validate.OneOf(SOURCES),
        metadata={
            "description": "the source of lines that do not name their own",
            "example": "event",
        },
    )


class ImportSummarySchema(ma.Schema):
    lines = fields.Integer(metadata={"description": "input lines read (blank ones not counted)"})
    created = fields.Integer()
    merged = fields.Integer()
    rejected = fields.Integer()


class ImportReportLineSchema(ma.Schema):
    """One line of the import report: the outcome of one input line, or, last, the summary."""

    line = fields.Integer(
        metadata={"description": "the input line; a CSV record over several lines by its first"}
    )
    status = fields.String(validate=validate.OneOf(("created", "merged", "rejected")))
    id = Uuid(metadata={"description": "the record, unless rejected"})
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "why the line was rejected: {field: [messages]}"},
    )
    newsletters_kept = fields.List(
        fields.String(),
        metadata={
            "description": "lists whose consent the line brought but the person already"
            " had a flag on (subscribed, pending or unsubscribed): left as it was"
        },
    )
    summary = fields.Nested(
        ImportSummarySchema, metadata={"description": "only on the last line, alone"}
    )


_EXAMPLE_TIME = "2026-11-25T09:30:00Z"

USER_EXAMPLE = {
    "id": "7d5c3f0e-2b1a-4c8e-9f6d-0a1b2c3d4e5f",
    "email": "anna.vanderberg@example.com",
    "first_name": "Anna",
    "infix": "van der",
    "last_name": "Berg",
    "suffix": None,
    "gender": "unspecified",
    "phone": "+31201234567",
    "mobile": None,
    "fax": None,
    "language": "en",
    "status": "minimal",
    "field_sources": {
        name: {"source": "webinar", "site": "copernica.com", "at": _EXAMPLE_TIME}
        for name in ("email", "first_name", "infix", "last_name", "phone")
    },
    "created_at": _EXAMPLE_TIME,
    "updated_at": _EXAMPLE_TIME,
    "registered_at": None,
}
