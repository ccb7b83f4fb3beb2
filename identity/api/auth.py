"""Signing up and in, for the sites: register, prove the address, log in, refresh, log
out, reset a password. The sites call these with their key (scope `auth`) and pass on
what they know of the person's browser."""

import time
from http import HTTPStatus

from flask import current_app
from flask.views import MethodView

from identity.api.guards import Blueprint, caller, proof, services
from identity.db import unit_of_work
from identity.services.accounts import Tokens
from schemas.accounts import (
    ACCEPTED,
    AcceptedSchema,
    LoginAnswerSchema,
    LoginSchema,
    LoginSecondFactorSchema,
    PasswordResetConfirmSchema,
    PasswordResetSchema,
    RefreshedTokensSchema,
    RefreshSchema,
    RegisterSchema,
    TokenSchema,
    TokensSchema,
)
from schemas.profiles import USER_EXAMPLE, UserSchema

blp = Blueprint(
    "auth", __name__, url_prefix="/v1/auth", description="Sign people up and in, for the sites."
)

TOKENS_EXAMPLE = {
    "access_token": "eyJhbGciOiJFZERTQSIsImtpZCI6IjEyMyIsInR5cCI6IkpXVCJ9.e30.c2ln",
    "refresh_token": "idrt_Vq3h4B0o0yE0nq1lqj4c0p7N2b8lW9dQ2m1xYv5s6t8",
    "token_type": "Bearer",
    "expires_in": 900,
    "user": USER_EXAMPLE | {"status": "registered"},
}
_PASSWORD = "plum tractor quietly 83 violins"  # noqa: S105 - an example in the document
# What the site passes on of the person's browser, in every example: each of these takes it.
_BROWSER_EXAMPLE = {"client_ip": "203.0.113.7", "user_agent": "Mozilla/5.0"}
_REFRESH_EXAMPLE = {"refresh_token": TOKENS_EXAMPLE["refresh_token"], **_BROWSER_EXAMPLE}
_MFA_TOKEN = "idmfa_r8Kq2mXv0pLw7NdT4sYc9HbE1uJf6AoZ3gQiV5xWnBk"  # noqa: S105 - an example


def answer_of(tokens) -> dict:
    """The answer to a login or refresh: the tokens; or that a second factor's code is
    needed, and the mfa_token to send it with."""
    answer = {key: value for key, value in tokens.__dict__.items() if value is not None}
    return answer | {"token_type": "Bearer"} if isinstance(tokens, Tokens) else answer


@blp.route("/register")
class Register(MethodView):
    @blp.site_key("auth")
    @blp.arguments(
        RegisterSchema,
        example={
            "email": "anna@example.com",
            "password": _PASSWORD,
            "first_name": "Anna",
            "language": "nl",
            **_BROWSER_EXAMPLE,
        },
    )
    @blp.response(HTTPStatus.ACCEPTED, AcceptedSchema, example=ACCEPTED)
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.TOO_MANY_REQUESTS, response="TOO_MANY_REQUESTS")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    def post(self, body):
        """Register a person

        Always `202` with the same body, after the same work (one argon2 hash and three
        checks), whether or not the address was known: a new
        address gets an account waiting for proof and a verification mail; an address
        held by a minimal profile or an unproven account is claimed once the person
        proves it (`POST /v1/auth/verify-email`), and nothing sent here reaches the record
        before; an address with an account gets a "someone tried to register" notice.
        A password the policy refuses is a `422` that says why. `client_ip` is required
        (`422` without it): registrations are counted before the password is hashed, per
        `client_ip`, and past a few within 15 minutes the next must wait (`429` with
        `Retry-After`). The mail goes out in the site's brand, from its sender, with the
        link on its pages (`{pages}/verify-email?token=…`): a site without pages is a
        `409`, for every address alike, and nothing is counted or written.
        """
        services().accounts.registration.register(unit_of_work(), caller(body), body)
        return ACCEPTED


@blp.route("/verify-email")
class VerifyEmail(MethodView):
    @blp.site_key("auth")
    @blp.arguments(TokenSchema, example={"token": "Zk3v9S0m3T0k3nFr0mTh3L1nk", **_BROWSER_EXAMPLE})
    @blp.response(HTTPStatus.OK, UserSchema, example=USER_EXAMPLE | {"status": "registered"})
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    def post(self, body):
        """Prove an address

        With the `token` of the link mailed on registration: the account is ready, the
        record it claimed keeps its earlier data with the person's own fields winning,
        and every earlier sign-in ends. With the token of an address change: the record
        moves to the new address. With the token of the link a first social sign-in
        mailed (`{pages}/verify-email` as well): that provider's identity is joined to
        the record, which becomes an account if it was a minimal profile; the person then
        signs in with the provider again (a `409` when that identity was joined to
        another record meanwhile, and a `422` when the record has moved to another
        address since the link was mailed). A used, expired or unknown token is a `422`. When
        several registrations were made for the address, none of their passwords is
        taken and a link to choose one is mailed (`{pages}/reset-password`): so a site
        without pages is a `409` here too.
        """
        registration = services().accounts.registration
        return registration.verify_email(unit_of_work(), caller(body), body["token"])


@blp.route("/login")
class Login(MethodView):
    @blp.site_key("auth")
    @blp.arguments(
        LoginSchema,
        example={
            "email": "anna@example.com",
            "password": _PASSWORD,
            **_BROWSER_EXAMPLE,
        },
    )
    @blp.response(
        HTTPStatus.OK,
        LoginAnswerSchema,
        example=TOKENS_EXAMPLE,
        description='The tokens; for an account with a second factor, `{"mfa_required":'
        ' true, "mfa_token": …}` instead.',
    )
    @blp.alt_response(HTTPStatus.TOO_MANY_REQUESTS, response="TOO_MANY_REQUESTS")
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    def post(self, body):
        """Log a person in

        An access token (a JWT for `/v1/me`, about 15 minutes; its `amr` says how the
        person signed in, RFC 8176) and a refresh token. For an account with a second
        factor, a right password gives no tokens but `{"mfa_required": true,
        "mfa_token": …}`: send the code of the person's authenticator app with it to
        `POST /v1/auth/login/second-factor`. Every attempt is recorded. A wrong password,
        an unknown address and an unproven one get the same `401`, with or without a
        second factor. Repeated failures for one account or one `client_ip` (required:
        `422` without it) make logins wait a while (`429` with `Retry-After`); a password
        reset lifts it.

        A stranger's wrong passwords can make the account's logins wait, but not for an
        owner with a second factor: a login that sends the app's `code` (or a
        `recovery_code`) with the password signs in at once when both are right, even
        while the account's logins wait. Anything else such a login sends fails exactly
        as a wrong password does at that moment (`401`, or the `429`), so it tells nothing
        more: offer the code field beside a `429`, to everyone.
        """
        login = services().accounts.login
        signed_in = login.log_in(
            unit_of_work(), caller(body), body["email"], body["password"], proof(body)
        )
        return answer_of(signed_in)


@blp.route("/login/second-factor")
class LoginSecondFactor(MethodView):
    @blp.site_key("auth")
    @blp.arguments(
        LoginSecondFactorSchema,
        example={"mfa_token": _MFA_TOKEN, "code": "492039", **_BROWSER_EXAMPLE},
    )
    @blp.response(HTTPStatus.OK, TokensSchema, example=TOKENS_EXAMPLE)
    @blp.alt_response(HTTPStatus.TOO_MANY_REQUESTS, response="TOO_MANY_REQUESTS")
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    def post(self, body):
        """Complete a login with the second factor

        The `mfa_token` of a login's `{"mfa_required": true}` answer and the 6-digit
        `code` the person's authenticator app shows (or one of their `recovery_code`s)
        give the tokens, as a login does; the access token's `amr` is `["pwd", "otp",
        "mfa"]`, or `["pwd", "mfa"]` with a recovery code. An app's code is taken once
        (not again, nor an earlier one); a recovery code works once. The `mfa_token` works
        once, only with the key of the site whose login made it, for 5 minutes, and not
        after 5 wrong codes: then log in again (`401`). A wrong code is a `401`, recorded
        as a login attempt; wrong codes are counted per person and per `client_ip`
        (required), and past a few the next must wait (`429` with `Retry-After`).
        """
        login = services().accounts.login
        return answer_of(
            login.complete(unit_of_work(), caller(body), body["mfa_token"], proof(body))
        )


@blp.route("/refresh")
class Refresh(MethodView):
    @blp.site_key("auth")
    @blp.arguments(RefreshSchema, example=_REFRESH_EXAMPLE)
    @blp.response(
        HTTPStatus.OK,
        RefreshedTokensSchema,
        example={k: v for k, v in TOKENS_EXAMPLE.items() if k != "user"},
    )
    def post(self, body):
        """Swap a refresh token for a new pair

        The refresh token is spent. Showing a spent one again means it was copied: the
        whole sign-in it belongs to ends, and the answer is `401`.
        """
        sessions = services().accounts.sessions
        return answer_of(sessions.refresh(unit_of_work(), caller(body), body["refresh_token"]))


@blp.route("/logout")
class Logout(MethodView):
    @blp.site_key("auth")
    @blp.arguments(RefreshSchema, example=_REFRESH_EXAMPLE)
    @blp.response(HTTPStatus.NO_CONTENT, description="The sign-in has ended (or never was).")
    def post(self, body):
        """Log out

        Ends the sign-in the refresh token belongs to: its refresh tokens stop working,
        and so do its access tokens at `/v1/me`. Always `204`.
        """
        services().accounts.sessions.log_out(unit_of_work(), caller(body), body["refresh_token"])


@blp.route("/password-reset")
class PasswordReset(MethodView):
    @blp.site_key("auth")
    @blp.arguments(PasswordResetSchema, example={"email": "anna@example.com", **_BROWSER_EXAMPLE})
    @blp.response(HTTPStatus.ACCEPTED, AcceptedSchema, example=ACCEPTED)
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    @blp.alt_response(HTTPStatus.TOO_MANY_REQUESTS, response="TOO_MANY_REQUESTS")
    def post(self, body):
        """Ask for a password reset

        Always `202` with the same body, after the same time (at least a tenth of a
        second), whether the address has an account or not; when it has, a single-use
        link that expires in 30 minutes is mailed to it, on the site's pages
        (`{pages}/reset-password?token=…`): at most three an hour asked from one network,
        and ten from all the networks the account has not logged in from. A new link
        voids none sent before; using one voids the rest. A site
        without pages is a `409`, for every address alike. `client_ip` is required: past
        ten requests from one client's network within 15 minutes, the next must wait
        (`429` with `Retry-After`, up to 15 minutes), whatever the address, so the refusal
        says nothing about it either.
        """
        started = time.monotonic()
        services().accounts.recovery.request_reset(unit_of_work(), caller(body), body["email"])
        unit_of_work().commit()  # before the wait: no connection is held while sleeping
        # Queueing the mail takes a few milliseconds more than finding no account: an
        # answer that came sooner for unknown addresses would tell them apart.
        least = current_app.config["IDENTITY"]["PASSWORD_RESET_ANSWER_SECONDS"]
        time.sleep(max(0.0, least - (time.monotonic() - started)))
        return ACCEPTED


@blp.route("/password-reset/confirm")
class PasswordResetConfirm(MethodView):
    @blp.site_key("auth")
    @blp.arguments(
        PasswordResetConfirmSchema,
        example={
            "token": "Zk3v9S0m3T0k3nFr0mTh3L1nk",
            "new_password": _PASSWORD,
            **_BROWSER_EXAMPLE,
        },
    )
    @blp.response(HTTPStatus.NO_CONTENT, description="The password is set.")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.TOO_MANY_REQUESTS, response="TOO_MANY_REQUESTS")
    def post(self, body):
        """Set a new password with a reset link

        The policy and the account's last five passwords apply (`422` says why). Every
        sign-in ends, failed-login waits are lifted, and a notice is mailed. Should another
        change of the password land while this one is checked, this one is a `409` and the
        link stays good: send it again. A site without pages (where the notice comes
        from) is a `409` too. `client_ip` is required: past ten tries that did not set a
        password (a used or wrong link, a refused password) from one client's network
        within 15 minutes, the next must wait (`429` with `Retry-After`).
        """
        recovery = services().accounts.recovery
        recovery.reset(unit_of_work(), caller(body), body["token"], body["new_password"])


@blp.route("/email-change/undo")
class EmailChangeUndo(MethodView):
    @blp.site_key("auth")
    @blp.arguments(TokenSchema, example={"token": "Zk3v9S0m3T0k3nFr0mTh3L1nk", **_BROWSER_EXAMPLE})
    @blp.response(HTTPStatus.OK, UserSchema, example=USER_EXAMPLE | {"status": "registered"})
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    def post(self, body):
        """Undo a change of address

        With the `token` of the link (`{pages}/email-change-undo?token=…`, valid 7 days)
        that the notices to the old address carry, when a change is asked and when it is
        done. The record is back at the old address and a pending confirmation is void;
        every sign-in ends; the password ends too (whoever asked for the change knew it),
        and a link to choose a new one is mailed to the old address
        (`{pages}/reset-password?token=…`). The second factor the person had when the
        change was asked stays when it had been on for 7 days by then; one turned on later
        goes. Links of earlier changes of address stay good. The record. A used, expired or
        unknown token is a `422`. A profile made for the old address meanwhile (a form
        or an import: anyone may post an address) is joined into the account, its
        newsletter flags and their consent kept, its values filling blanks only. When
        another account holds the old address by now (only someone reading its mail
        could have made it), nothing changes and the link stays good: `409`. A site
        without pages (for the mail) is a `409` as well.
        """
        settings = services().accounts.settings
        return settings.undo_email_change(unit_of_work(), caller(body), body["token"])
