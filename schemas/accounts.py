"""Accounts: what the sites send to sign people up and in, and what they get back."""

import marshmallow as ma
from marshmallow import ValidationError, fields, post_load, validate, validates, validates_schema

from schemas.common import UtcDateTime, Uuid, older_than, page_limit
from schemas.companies import MyCompanySchema
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


class CodeSchema(ma.Schema):
    """A second factor's code, where one may be needed: the authenticator app's, or one
    of the recovery codes (in `recovery_code`, or in `code` too)."""

    code = Text(
        max_length=64,
        load_default=None,
        metadata={
            "description": "the 6-digit code the authenticator app shows now (needed when"
            " the account has a second factor, unless a recovery code is sent)",
            "example": "492039",
        },
    )
    recovery_code = Text(
        max_length=64,
        load_default=None,
        metadata={
            "description": "one of the recovery codes given when the second factor was"
            " turned on, instead of `code`; each works once",
            "example": "k7dq-mx3a-p9rt",
        },
    )


class LoginSchema(CodeSchema, BrowserWithIpSchema):
    """The password, and, only to sign in while the account's logins wait (429), the
    second factor's code with it."""

    email = Text(required=True, max_length=320, metadata=EMAIL | {"example": "anna@example.com"})
    password = fields.String(**_password, metadata={"example": "correct horse battery staple"})


class LoginSecondFactorSchema(CodeSchema, BrowserWithIpSchema):
    mfa_token = Text(**_token, metadata={"description": "the `mfa_token` of the login's answer"})

    @validates_schema
    def one_code(self, data, **kwargs):
        if not (data.get("code") or data.get("recovery_code")):
            raise ValidationError("send the code of the authenticator app", "code")


class TokensSchema(ma.Schema):
    access_token = fields.String(
        metadata={"description": "a JWT for `Authorization: Bearer` on /v1/me, about 15 min"}
    )
    refresh_token = fields.String(
        metadata={"description": "opaque; spent by POST /v1/auth/refresh for a new pair"}
    )
    token_type = fields.String(metadata={"example": "Bearer"})
    expires_in = fields.Integer(metadata={"description": "seconds the access token lives"})
    user = fields.Nested(UserSchema)


class LoginAnswerSchema(TokensSchema):
    """The tokens; or, for an account with a second factor, `mfa_required` and the
    `mfa_token` for `POST /v1/auth/login/second-factor` instead."""

    mfa_required = fields.Boolean(
        metadata={"description": "true: no tokens yet; send a code with the `mfa_token`"}
    )
    mfa_token = fields.String(
        metadata={
            "description": "for POST /v1/auth/login/second-factor: works once, through this"
            " site, for 5 minutes and up to 5 wrong codes"
        }
    )


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


class ReauthenticationSchema(CodeSchema, BrowserWithIpSchema):
    """The person proves it is them again: the current password, and a code of the second
    factor when one is on."""

    current_password = fields.String(**_password)


class PasswordChangeSchema(ReauthenticationSchema):
    new_password = fields.String(**_new_password)


class EmailChangeSchema(ReauthenticationSchema):
    new_email = Text(
        required=True, max_length=320, metadata=EMAIL | {"example": "anna@work.example"}
    )


class SecondFactorConfirmSchema(BrowserSchema):
    code = fields.String(
        required=True,
        validate=validate.Regexp(r"^[0-9]{6}$", error="the 6 digits the app shows"),
        metadata={"description": "the 6-digit code the app shows now", "example": "492039"},
    )


class MeSchema(UserSchema):
    """The signed-in person's own record: the record, where their picture is, and their
    companies."""

    companies = fields.List(
        fields.Nested(MyCompanySchema),
        dump_only=True,
        metadata={"description": "the companies the person belongs to, and their role"},
    )
    picture_url = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "`GET` it with the person's access token for their picture;"
            " null when they have none",
            "example": "https://identity.example.com/v1/me/picture",
        },
    )


_PICTURE_TYPES = ("image/png", "image/jpeg", "image/webp")


class PictureSchema(ma.Schema):
    """The picture as it is kept: re-encoded, at most 1024 pixels a side."""

    content_type = fields.String(dump_only=True, metadata={"enum": list(_PICTURE_TYPES)})
    width = fields.Integer(dump_only=True, metadata={"description": "in pixels"})
    height = fields.Integer(dump_only=True, metadata={"description": "in pixels"})
    etag = fields.String(
        dump_only=True,
        metadata={"description": "what `GET` answers as its `ETag` (without the quotes)"},
    )
    url = fields.String(dump_only=True, metadata={"description": "where to `GET` it"})


class TotpSetupSchema(ma.Schema):
    secret = fields.String(
        metadata={"description": "the TOTP secret (base32), for typing into an app by hand"}
    )
    otpauth_uri = fields.String(
        metadata={"description": "the otpauth:// URI, for showing as a QR code"}
    )


class RecoveryCodesSchema(ma.Schema):
    recovery_codes = fields.List(
        fields.String(),
        metadata={"description": "ten single-use codes, shown this once: keep them on paper"},
    )


class SecondFactorStatusSchema(ma.Schema):
    totp = fields.Boolean(metadata={"description": "whether a TOTP second factor is on"})
    since = UtcDateTime(allow_none=True)
    recovery_codes_left = fields.Integer()


class LoginAttemptsQuerySchema(ma.Schema):
    limit = page_limit("attempts")
    after = older_than("attempt")


class LoginAttemptSchema(ma.Schema):
    id = fields.Integer(metadata={"description": "the cursor to page on (`after`)"})
    at = UtcDateTime()
    outcome = fields.String(
        validate=validate.OneOf(
            (
                "success",
                "wrong_password",
                "no_account",
                "throttled",
                "second_factor_required",
                "wrong_code",
            )
        )
    )
    site = fields.String(allow_none=True)
    client_ip = fields.String(allow_none=True)
    user_agent = fields.String(allow_none=True)


class SessionsQuerySchema(ma.Schema):
    limit = page_limit("sign-ins")
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
