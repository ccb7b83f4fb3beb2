"""Signing in with Google, LinkedIn or Facebook, for the sites (scope `auth`); and the
identities a signed-in person has joined."""

from http import HTTPStatus

from flask.views import MethodView
from marshmallow import RAISE

from identity.api.auth import TOKENS_EXAMPLE, answer_of
from identity.api.guards import Blueprint, caller, principal, services
from identity.db import unit_of_work
from identity.services.accounts.social import AddressProofRequired
from schemas.social import (
    AuthorizeAnswerSchema,
    AuthorizeQuerySchema,
    CallbackAnswerSchema,
    CallbackSchema,
    IdentitySchema,
)

blp = Blueprint(
    "social",
    __name__,
    url_prefix="/v1",
    description="Sign in with Google, LinkedIn or Facebook; the identities joined.",
)

_PROVIDER = "<any(google, linkedin, facebook):provider>"
_STATE = "Jx0v2Yw8QeT3rN5mK7pL1sA9dF4gH6jZ0cV2bX8nM3q"
_BROWSER_EXAMPLE = {"client_ip": "203.0.113.7", "user_agent": "Mozilla/5.0"}
_IDENTITY = {
    "provider": "google",
    "joined_at": "2026-12-08T09:30:00Z",
    "joined_site": "copernica.com",
    "last_used_at": "2026-12-08T09:30:00Z",
}


@blp.route(f"/auth/social/{_PROVIDER}/authorize")
class Authorize(MethodView):
    @blp.site_key("auth")
    @blp.arguments(AuthorizeQuerySchema, location="query", unknown=RAISE)
    @blp.response(
        HTTPStatus.OK,
        AuthorizeAnswerSchema,
        example={
            "authorization_url": "https://accounts.google.com/o/oauth2/v2/auth?response_type"
            f"=code&client_id=…&redirect_uri=…&scope=openid+email+profile&state={_STATE}"
            "&nonce=…&code_challenge=…&code_challenge_method=S256",
            "state": _STATE,
        },
    )
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    @blp.alt_response(HTTPStatus.TOO_MANY_REQUESTS, response="TOO_MANY_REQUESTS")
    @blp.alt_response(HTTPStatus.BAD_GATEWAY, response="BAD_GATEWAY")
    def get(self, query, provider):
        """Begin a sign-in with a provider

        The provider's URL to send the person's browser to, and the `state` it will bring
        back to `redirect_uri`, which must be one of the redirect URIs the site
        registered (`identity sites update NAME --redirect-uri URL`), character for
        character (`422` otherwise). `client_ip` is required: sign-ins begun are counted
        per client network, and past 60 in 15 minutes the next waits (`429` with
        `Retry-After`). The state, the OpenID Connect nonce and the PKCE
        verifier (S256) stay here, bound to the site, the provider and the redirect URI,
        for 10 minutes and one `callback`, which any replica can take. A provider that
        is not set up here is a `404`; one whose discovery document cannot be read, a
        `502`.
        """
        social = services().social
        return social.authorize(unit_of_work(), caller(query), provider, query["redirect_uri"])


@blp.route(f"/auth/social/{_PROVIDER}/callback")
class Callback(MethodView):
    @blp.site_key("auth")
    @blp.arguments(
        CallbackSchema, example={"code": "4/0AQlEd8x…", "state": _STATE, **_BROWSER_EXAMPLE}
    )
    @blp.response(
        HTTPStatus.OK,
        CallbackAnswerSchema,
        example=TOKENS_EXAMPLE,
        description="The tokens, as a login gives them; for an account with a second factor,"
        ' `{"mfa_required": true, "mfa_token": …}` instead.',
    )
    @blp.alt_response(
        HTTPStatus.ACCEPTED,
        schema=CallbackAnswerSchema,
        example={"verification_required": True},
        description="A first sign-in whose address must prove itself first: a link went to it.",
    )
    @blp.alt_response(HTTPStatus.UNAUTHORIZED, response="UNAUTHORIZED")
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    @blp.alt_response(HTTPStatus.TOO_MANY_REQUESTS, response="TOO_MANY_REQUESTS")
    @blp.alt_response(HTTPStatus.BAD_GATEWAY, response="BAD_GATEWAY")
    def post(self, body, provider):
        """Finish a sign-in with a provider

        With what the provider sent back to the redirect URI: `code` and `state` (or
        `error` and `state` when the person declined: a `401`); neither or both is a
        `422`, and the state stays good. The state works once,
        for 10 minutes, with the key of the site that began it (`401` otherwise). The
        code is exchanged with the PKCE verifier; Google's and LinkedIn's ID token must
        be signed by the provider's published keys (never `alg: none`), name this
        service's client as audience, carry the sign-in's nonce and be fresh (`401`
        otherwise, nothing written). A provider that is down, slow (10 s) or answers
        garbage is a `502`.

        Only the provider's subject id, the address, and the first and last name are
        read. An identity already joined signs its record in, as a login does (the
        tokens, or the second step when a second factor is on; `amr` is `["fed"]`). A
        first sign-in joins the record of its address at once when the provider vouches
        for the address (Google's and LinkedIn's `email_verified`; Facebook vouches for
        none) and the record is a minimal profile (it becomes an account, its data kept,
        the provider's names filling blanks) or an account whose address is proven; a new
        address becomes a new account. Otherwise nothing is joined yet: `202` with
        `{"verification_required": true}`, and the address gets a link
        (`{pages}/verify-email?token=…`, for `POST /v1/auth/verify-email`) that joins the
        identity; then the person signs in again. Every join is told to the record's
        address in the site's brand. A provider that shares no address is a `422`.
        `client_ip` is required.
        """
        signed_in = services().social.callback(
            unit_of_work(),
            caller(body),
            provider,
            body["state"],
            body.get("code"),
            body.get("error"),
        )
        if isinstance(signed_in, AddressProofRequired):
            return {"verification_required": True}, HTTPStatus.ACCEPTED
        return answer_of(signed_in)


@blp.route("/me/identities")
class Identities(MethodView):
    @blp.user_token()
    @blp.response(HTTPStatus.OK, IdentitySchema(many=True), example=[_IDENTITY])
    def get(self):
        """The social identities joined

        Each provider whose account signs the person in: when and through which site it
        was joined, and when it was last used. Nothing else of the provider is kept.
        """
        return services().social.identities(unit_of_work(), principal())


@blp.route(f"/me/identities/{_PROVIDER}")
class Identity(MethodView):
    @blp.user_token(impersonated=False)
    @blp.response(HTTPStatus.NO_CONTENT, description="The provider no longer signs in.")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    def delete(self, provider):
        """Remove a social identity

        The provider's account no longer signs the person in (a later sign-in with it
        joins again as a first one would). Refused (`409`) when it is the account's only
        way to sign in: no password and no other provider (a password reset sets one).
        No identity of that provider is a `404`.
        """
        services().social.leave(unit_of_work(), principal(), provider)
