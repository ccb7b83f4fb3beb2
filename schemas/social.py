"""Social sign-in: what a site sends to begin and finish a sign-in with Google, LinkedIn
or Facebook, and the identities a person has joined."""

import marshmallow as ma
from marshmallow import ValidationError, fields, validates_schema

from schemas.accounts import BrowserWithIpSchema, LoginAnswerSchema
from schemas.common import UtcDateTime
from schemas.text import Text

PROVIDERS = ("google", "linkedin", "facebook")

_URL = {"max_length": 2000}


class AuthorizeQuerySchema(BrowserWithIpSchema):
    """Where the provider sends the person back, and the person's browser: sign-ins begun
    are limited per client network."""

    redirect_uri = Text(
        required=True,
        blank=False,
        **_URL,
        metadata={
            "description": "where the provider sends the person back: one of the redirect"
            " URIs the site registered, character for character",
            "example": "https://www.copernica.com/sign-in/google",
        },
    )


class AuthorizeAnswerSchema(ma.Schema):
    authorization_url = fields.String(
        metadata={"description": "send the person's browser here (a 302 from the site's page)"}
    )
    state = fields.String(
        metadata={
            "description": "the provider gives it back on the redirect URI; keep it in the"
            " person's session and send it to `callback` (once, within 10 minutes)"
        }
    )


class CallbackSchema(BrowserWithIpSchema):
    """What the provider sent back to the site's redirect URI: `code` and `state`, or
    `error` and `state` when the person declined."""

    state = Text(
        required=True,
        blank=False,
        max_length=200,
        metadata={"description": "the `state` the provider sent back, as `authorize` gave it"},
    )
    code = Text(max_length=2000, metadata={"description": "the `code` the provider sent back"})
    error = Text(
        max_length=200,
        metadata={"description": "the `error` the provider sent back instead of a code"},
    )
    error_description = Text(max_length=2000, metadata={"description": "ignored"})

    @validates_schema
    def code_or_error(self, data, **kwargs):
        if bool(data.get("code")) == bool(data.get("error")):
            raise ValidationError(
                "send the `code` the provider sent back, or its `error`: one of the two",
                field_name="code",
            )


class CallbackAnswerSchema(LoginAnswerSchema):
    """As a login answers; or, for a first sign-in whose address must prove itself first,
    only `verification_required`."""

    verification_required = fields.Boolean(
        metadata={
            "description": "true: no tokens; a link went to the address, which joins this"
            " provider once clicked (`POST /v1/auth/verify-email`); then sign in again"
        }
    )


class IdentitySchema(ma.Schema):
    provider = fields.String(metadata={"enum": list(PROVIDERS), "example": "google"})
    joined_at = UtcDateTime(metadata={"description": "when it was joined"})
    joined_site = fields.String(
        metadata={"description": "the site it was joined through", "example": "copernica.com"}
    )
    last_used_at = UtcDateTime(allow_none=True)
