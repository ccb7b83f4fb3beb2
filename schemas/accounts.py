"""Accounts: what the sites send to sign people up and in, and what they get back."""

import marshmallow as ma
from marshmallow import ValidationError, fields, post_load, validate, validates

from schemas.common import QueryInteger, UtcDateTime, Uuid
from schemas.profiles import ProfileFieldsSchema, UserSchema
from schemas.text import EMAIL, Text

# A password to check (a login's, the current one): only bounds the work, and is told
# in the policy's words when past it. Whatever was once accepted can still be tried.
_password = {
    "required": True,
    "validate": [
        validate.Length(min=1, error="Send the password."),
        validate.Length(max=4096, error="Use at most 1,000 characters."),
    ],
}
# A password to choose: the policy's 1,000 characters, as the document says. The policy
# itself judges the rest (and counts after NFKC, so a few short ones may still be long).
_new_password = {
    "required": True,
    "validate": [
        validate.Length(min=1, error="Send the password."),
        validate.Length(max=1000, error="Use at most 1,000 characters."),
    ],
}
_token = {"required": True, "max_length": 200}


USER_AGENT_LENGTH = 512
# The fields of the person's browser, which every endpoint a site calls for a person takes.
BROWSER_FIELDS = ("client_ip", "user_agent")
_CLIENT_IP = {
    "description": "the person's IP address (v4 or v6), as the site saw it",
    "example": "203.0.113.7",
    "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
}


class BrowserSchema(ma.Schema):
    """What the site knows of the person's browser: it is the site that calls."""

    client_ip = fields.IP(load_default=None, metadata=_CLIENT_IP)
    user_agent = Text(
        max_length=USER_AGENT_LENGTH,
        load_default=None,
        metadata={"description": "the person's browser", "example": "Mozilla/5.0 (X11)"},
    )

    @validates("client_ip")
    def no_zone(self, value, **kwargs):
        # Python reads "fe80::1%eth0"; a zone names an interface of the site's machine,
        # not anything about the person, and PostgreSQL's inet does not take it.
        if value is not None and getattr(value, "scope_id", None):
            raise ValidationError("an IP address without a %zone")

    @post_load
    def ip_as_text(self, data, **kwargs):
        """The address as text; an IPv4 address written as IPv6 (::ffff:192.0.2.7) as the
        IPv4 address it is, so it counts as that one."""
        ip = data.get("client_ip")
        if ip is not None:
            mapped = getattr(ip, "ipv4_mapped", None)
            data["client_ip"] = str(mapped or ip)
        return data


_IP_REQUIRED = "send the person's IP address as the site saw it: this is limited per client IP"


class BrowserWithIpSchema(BrowserSchema):
    """The browser, its address required: for what is limited per client IP as well as
    per account (registering, logging in, a password's reset and change, a change of
    address), so that a site that forgets to send it is told, rather than every one of
    its people sharing one limit, or none."""

    client_ip = fields.IP(
        required=True,
        error_messages={"required": _IP_REQUIRED, "null": _IP_REQUIRED},
        metadata=_CLIENT_IP,
    )


class RegisterSchema(ProfileFieldsSchema, BrowserWithIpSchema):
    email = Text(required=True, max_length=320, metadata=EMAIL | {"example": "anna@example.com"})
    password = fields.String(**_new_password, metadata={"example": "correct horse battery staple"})
    country = fields.String(
        validate=validate.Regexp(r"^[A-Z]{2}$", error="an ISO 3166 alpha-2 code, e.g. NL"),
        metadata={"description": "for reading national phone numbers", "example": "NL"},
    )


class AcceptedSchema(ma.Schema):
    status = fields.String(metadata={"example": "accepted"})
    detail = fields.String()


# The one answer of every request whose answer must not tell whether an address is known.
ACCEPTED = {
    "status": "accepted",
    "detail": "if the address can be used for this, a mail is on its way to it",
}


class TokenSchema(BrowserSchema):
    token = Text(**_token, metadata={"description": "the `token=` of the link in the mail"})


class LoginSchema(BrowserWithIpSchema):
    email = Text(required=True, max_length=320, metadata=EMAIL | {"example": "anna@example.com"})
    password = fields.String(**_password, metadata={"example": "correct horse battery staple"})


class TokensSchema(ma.Schema):
    access_token = fields.String(
        metadata={"description": "a JWT for `Authorization: Bearer` on /v1/me, about 15 min"}
    )
    refresh_token = fields.String(
        metadata={"description": "opaque; spent by POST /v1/auth/refresh for a new pair"}
    )
    token_type = fields.String(dump_default="Bearer")
    expires_in = fields.Integer(metadata={"description": "seconds the access token lives"})
    user = fields.Nested(UserSchema)


class RefreshedTokensSchema(TokensSchema):
    """A new pair; the record comes with a login only."""

    class Meta:
        exclude = ("user",)


class RefreshSchema(BrowserSchema):
    refresh_token = Text(**_token)


class PasswordResetSchema(BrowserWithIpSchema):
    email = Text(required=True, max_length=320, metadata=EMAIL | {"example": "anna@example.com"})


class PasswordResetConfirmSchema(BrowserWithIpSchema):
    token = Text(**_token)
    new_password = fields.String(**_new_password)


class MeEditSchema(ProfileFieldsSchema, BrowserSchema):
    """The person's own edits; a field sent as null is cleared."""

    country = fields.String(
        validate=validate.Regexp(r"^[A-Z]{2}$", error="an ISO 3166 alpha-2 code, e.g. NL"),
        metadata={"description": "for reading national phone numbers", "example": "NL"},
    )


class PasswordChangeSchema(BrowserWithIpSchema):
    current_password = fields.String(**_password)
    new_password = fields.String(**_new_password)


class EmailChangeSchema(BrowserWithIpSchema):
    new_email = Text(
        required=True, max_length=320, metadata=EMAIL | {"example": "anna@work.example"}
    )


def _page_limit(items: str) -> QueryInteger:
    return QueryInteger(
        load_default=50,
        validate=validate.Range(min=1, max=100),
        metadata={"description": f"at most this many {items} (1 to 100; 50 when left out)"},
    )


class LoginAttemptsQuerySchema(ma.Schema):
    limit = _page_limit("attempts")
    after = QueryInteger(
        load_default=None,
        validate=validate.Range(min=1, max=2**63 - 1),
        metadata={"description": "the `id` of the last attempt received: the older ones"},
    )


class LoginAttemptSchema(ma.Schema):
    id = fields.Integer(metadata={"description": "the cursor to page on (`after`)"})
    at = UtcDateTime()
    outcome = fields.String(
        validate=validate.OneOf(("success", "wrong_password", "no_account", "throttled"))
    )
    site = fields.String(allow_none=True)
    client_ip = fields.String(allow_none=True)
    user_agent = fields.String(allow_none=True)


class SessionsQuerySchema(ma.Schema):
    limit = _page_limit("sign-ins")
    after = Uuid(
        load_default=None,
        metadata={"description": "the `id` of the last sign-in received: the older ones"},
    )


class SessionSchema(ma.Schema):
    id = Uuid(metadata={"description": "the sign-in to end, and the cursor (`after`)"})
    site = fields.String()
    created_at = UtcDateTime()
    last_used_at = UtcDateTime()
    user_agent = fields.String(allow_none=True)
    client_ip = fields.String(allow_none=True)
