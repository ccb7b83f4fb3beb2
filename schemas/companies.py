"""Companies: their profiles, members, invitations and partners."""

import marshmallow as ma
from marshmallow import fields, validate

from schemas.common import UtcDateTime, Uuid, page_limit
from schemas.text import EMAIL, Text

ROLES = ("admin", "member")
RELATIONS = (*ROLES, "partner", "staff")

_text = {"allow_none": True}


class CompanyFieldsSchema(ma.Schema):
    """The company's profile, as its admins set it."""

    name = Text(max_length=200, blank=False, metadata={"example": "Acme B.V."})
    street = Text(max_length=200, **_text, metadata={"example": "Herengracht"})
    house_number = Text(max_length=20, **_text, metadata={"example": "101-A"})
    postal_code = Text(max_length=20, **_text, metadata={"example": "1015 BE"})
    city = Text(max_length=100, **_text, metadata={"example": "Amsterdam"})
    province = Text(max_length=100, **_text, metadata={"example": "Noord-Holland"})
    country = Text(
        max_length=2,
        **_text,
        metadata={"description": "ISO 3166-1 alpha-2", "example": "NL"},
    )
    attention_of = Text(max_length=200, **_text, metadata={"example": "Accounts payable"})
    email = Text(max_length=320, **_text, metadata=EMAIL | {"example": "info@acme.example"})
    phone = Text(
        max_length=40,
        **_text,
        metadata={
            "description": "E.164, or national in the company's country",
            "example": "+31201234567",
        },
    )
    vat_number = Text(
        max_length=40,
        **_text,
        metadata={
            "description": "checked per country (python-stdnum); kept compact, with its"
            " country prefix",
            "example": "NL004495445B01",
        },
    )
    internal_description = Text(
        max_length=4000,
        multiline=True,
        **_text,
        metadata={
            "description": "for staff only: shown to and set by staff (signed in with a"
            " second factor); anyone else sending it gets a 403, and never sees it",
            "example": "Key account; invoices by post.",
        },
    )
    bank_account = Text(
        max_length=50,
        **_text,
        metadata={"description": "an IBAN, checked; kept compact", "example": "NL91ABNA0417164300"},
    )


class CompanyCreateSchema(CompanyFieldsSchema):
    name = Text(max_length=200, blank=False, required=True, metadata={"example": "Acme B.V."})


class CompanySchema(CompanyFieldsSchema):
    id = Uuid()
    is_partner = fields.Boolean(
        metadata={"description": "customers may choose this company as their partner"}
    )
    partner_id = Uuid(
        allow_none=True, metadata={"description": "the partner company this one chose"}
    )
    field_sources = fields.Dict(
        metadata={"description": "who changed each field, through which site, when"}
    )
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    your_role = fields.String(
        validate=validate.OneOf(RELATIONS),
        metadata={
            "description": "`admin` or `member` of this company, `partner`: a member of"
            " the partner it chose (who only reads), or `staff`"
        },
    )


class MemberSchema(ma.Schema):
    """A member's contact data and role: what members and the partner's people see."""

    user_id = Uuid()
    email = fields.String()
    first_name = fields.String(allow_none=True)
    infix = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    mobile = fields.String(allow_none=True)
    role = fields.String(validate=validate.OneOf(ROLES))
    joined_at = UtcDateTime()


class CustomerSchema(CompanySchema):
    members = fields.List(fields.Nested(MemberSchema))


class RoleSchema(ma.Schema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class InviteSchema(ma.Schema):
    email = Text(required=True, max_length=320, metadata=EMAIL | {"example": "bob@acme.example"})
    role = fields.String(load_default="member", validate=validate.OneOf(ROLES))


class InvitationSchema(ma.Schema):
    id = Uuid(metadata={"description": "to withdraw it"})
    email = fields.String()
    role = fields.String(validate=validate.OneOf(ROLES))
    created_at = UtcDateTime()
    expires_at = UtcDateTime()


class AcceptSchema(ma.Schema):
    token = Text(
        required=True,
        max_length=200,
        metadata={"description": "the `token=` of the invitation mail's link"},
    )


class PartnerSchema(ma.Schema):
    partner_id = Uuid(required=True, metadata={"description": "a company that is a partner"})


class CustomersQuerySchema(ma.Schema):
    limit = page_limit("companies")
    after = Uuid(
        load_default=None,
        metadata={"description": "the `id` of the last company received: the next ones"},
    )


class MyCompanySchema(ma.Schema):
    id = Uuid()
    name = fields.String()
    role = fields.String(validate=validate.OneOf(ROLES))
