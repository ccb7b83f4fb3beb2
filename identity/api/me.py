"""The signed-in person's own record, password, address, login attempts and sign-ins,
with the access token that login gave them."""

from http import HTTPStatus

from flask import Response
from flask.views import MethodView
from marshmallow import RAISE

from identity.api.guards import Blueprint, caller, principal, proof, services
from identity.api.paging import linked, next_link_header
from identity.api.pictures import picture_url
from identity.db import unit_of_work
from identity.services import rights
from schemas.accounts import (
    ACCEPTED,
    AcceptedSchema,
    EmailChangeSchema,
    LoginAttemptSchema,
    LoginAttemptsQuerySchema,
    MeEditSchema,
    MeSchema,
    PasswordChangeSchema,
    ReauthenticationSchema,
    RecoveryCodesSchema,
    SecondFactorConfirmSchema,
    SecondFactorStatusSchema,
    SessionSchema,
    SessionsQuerySchema,
    TotpSetupSchema,
)
from schemas.admin import EraseMeSchema
from schemas.profiles import USER_EXAMPLE

blp = Blueprint(
    "me", __name__, url_prefix="/v1/me", description="The signed-in person's own account."
)

_ME = USER_EXAMPLE | {
    "status": "registered",
    "registered_at": "2026-11-25T09:31:00Z",
    "picture_url": "https://identity.example.com/v1/me/picture",
    "companies": [
        {"id": "3b0c5d1e-7f2a-4b8c-9d6e-1a2b3c4d5e6f", "name": "Acme B.V.", "role": "admin"}
    ],
}
# What the site passes on of the person's browser: every write here takes it.
_BROWSER_EXAMPLE = {"client_ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11)"}
_REAUTHENTICATION = {"current_password": "plum tractor quietly 83 violins", "code": "492039"}
_SESSION = {
    "id": "3f2a9c1e-8b7d-4e6f-a5c4-b3a2f1e0d9c8",
    "site": "copernica.com",
    "created_at": "2026-11-25T09:31:00Z",
    "last_used_at": "2026-11-26T14:02:00Z",
    "user_agent": "Mozilla/5.0 (X11)",
    "client_ip": "203.0.113.7",
}


@blp.route("")
class Me(MethodView):
    @blp.user_token()
    @blp.response(HTTPStatus.OK, MeSchema, example=_ME)
    def get(self):
        """The signed-in person's record

        Name parts, gender, phones, language, status and timestamps, where each field's
        value came from, the URL of their picture (`GET /v1/me/picture`; null when they
        have none), and the companies the person belongs to with their role.
        """
        return _me(principal().user.record)

    @blp.user_token()
    @blp.arguments(MeEditSchema, example={"first_name": "Anna", "phone": None, **_BROWSER_EXAMPLE})
    @blp.response(HTTPStatus.OK, MeSchema, example=_ME)
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    def patch(self, body):
        """Change the signed-in person's record

        The fields sent are set (null clears one): the person's own edits win over
        anything a site sent, and `field_sources` marks them as the person's. The site
        may pass on the person's `client_ip` and `user_agent`, as on every write here.
        """
        record = services().accounts.settings.edit(unit_of_work(), caller(body), body)
        signed_in = principal().user.record
        return _me(record | {k: signed_in[k] for k in ("has_picture", "companies")})

    @blp.user_token(impersonated=False)
    @blp.arguments(EraseMeSchema, example={**_REAUTHENTICATION, **_BROWSER_EXAMPLE})
    @blp.response(HTTPStatus.NO_CONTENT, description="Erased: every token of theirs is dead.")
    @blp.alt_response(HTTPStatus.FORBIDDEN, response="FORBIDDEN")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.TOO_MANY_REQUESTS, response="TOO_MANY_REQUESTS")
    def delete(self, body):
        """Erase the signed-in person

        Removes the person from every table in one transaction (GDPR Art. 17): record,
        sign-ins and tokens (every one stops at once), flags and consent events,
        memberships, picture, social identities, the trail about them. Only a keyed hash
        of the address stays, on a suppression list: no list subscribes it again without
        consent confirmed from the mailbox.

        Proof that it is them: `current_password` (and `code` with a second factor on;
        wrong ones are counted as at a change of password), or, without it, a sign-in
        made in the last 5 minutes (`403` otherwise: sign in again). `409` for the only
        admin of a company (another admin first) and for staff (an operator revokes the
        role first).
        """
        services().erasure.erase_own(
            unit_of_work(), caller(body), body.get("current_password"), proof(body)
        )


def _me(record: dict) -> dict:
    """The record with its picture's URL and the person's companies and roles (both read
    with the sign-in, in the same statement: `has_picture`, `companies`)."""
    return record | {"picture_url": picture_url() if record["has_picture"] else None}


@blp.route("/password")
class Password(MethodView):
    @blp.user_token(impersonated=False)
    @blp.arguments(
        PasswordChangeSchema,
        example={
            "current_password": "an old one",
            "new_password": "correct horse battery",
            **_BROWSER_EXAMPLE,
        },
    )
    @blp.response(HTTPStatus.NO_CONTENT, description="The password is changed.")
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.TOO_MANY_REQUESTS, response="TOO_MANY_REQUESTS")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    def put(self, body):
        """Change the password

        Needs the current password (and the `code` of the second factor when one is on:
        the same re-authentication as a change of address, setting up or removing the
        second factor, and ending the other sign-ins), which is checked like a login's:
        wrong ones count against this sign-in and against the `client_ip` (required), and
        past a few (five for the sign-in, ten for the client's network within 15 minutes)
        the next must wait (`429` with `Retry-After`); a change that is made takes its
        count back. The policy and the last five passwords apply (`422` says why). Every
        other sign-in ends, a pending change of address is void, and a notice is mailed.
        Should another change of the password land while this one is checked, this one is
        a `409`: send it again. The notice goes out as the site the person signed in
        through; a site without pages is a `409`, before the password is checked.
        """
        services().accounts.settings.change_password(
            unit_of_work(),
            caller(body),
            body["current_password"],
            body["new_password"],
            proof(body),
        )


@blp.route("/email")
class Email(MethodView):
    @blp.user_token(impersonated=False)
    @blp.arguments(
        EmailChangeSchema,
        example={"new_email": "anna@work.example", **_REAUTHENTICATION, **_BROWSER_EXAMPLE},
    )
    @blp.response(
        HTTPStatus.ACCEPTED,
        AcceptedSchema,
        description="A confirmation is on its way to the new address (when it can be"
        " used), a notice to the old.",
        example=ACCEPTED,
    )
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.TOO_MANY_REQUESTS, response="TOO_MANY_REQUESTS")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    def post(self, body):
        """Move the account to another address

        Needs the current password, and the `code` of the second factor when one is on
        (wrong ones count as at `PUT /v1/me/password`): a stolen access token alone must
        not move the account to a thief's mailbox. The change happens when the new address
        proves itself with the mailed link (`POST /v1/auth/verify-email`) while this
        sign-in lasts; the link expires in a day, and a password change or reset voids
        it, as does a later request. The old address gets a notice with a link that
        undoes the change for 7 days (`{pages}/email-change-undo?token=…`, whose page
        calls `POST /v1/auth/email-change/undo`), and once the change is done another such
        notice. The answer is the same whatever the address: one that another record
        holds gets a notice instead of a link, and nothing changes (whether an address is
        known is not for anyone signed in to learn). At most five requests an hour
        (`429`), and `client_ip` is required: past ten requests from one client's network
        within 15 minutes, whoever asks, the next must wait (`429` with `Retry-After`).
        The mails go out as the site the person signed in through, the links on its pages
        (`{pages}/email-change?token=…`, whose page calls `POST /v1/auth/verify-email`); a
        site without pages is a `409`.
        """
        settings = services().accounts.settings
        settings.request_email_change(
            unit_of_work(),
            caller(body),
            body["new_email"],
            body["current_password"],
            proof(body),
        )
        return ACCEPTED


@blp.route("/second-factor")
class SecondFactor(MethodView):
    @blp.user_token()
    @blp.response(
        HTTPStatus.OK,
        SecondFactorStatusSchema,
        example={"totp": True, "since": "2026-11-26T14:02:00Z", "recovery_codes_left": 9},
    )
    def get(self):
        """The person's second factor

        Whether a TOTP second factor (an authenticator app) is on, since when, and how
        many of its recovery codes are left unused.
        """
        return services().accounts.second_factor.status(unit_of_work(), principal())


@blp.route("/second-factor/totp")
class Totp(MethodView):
    @blp.user_token(impersonated=False)
    @blp.arguments(
        ReauthenticationSchema,
        example={"current_password": "plum tractor quietly 83 violins", **_BROWSER_EXAMPLE},
    )
    @blp.response(
        HTTPStatus.OK,
        TotpSetupSchema,
        example={
            "secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
            "otpauth_uri": "otpauth://totp/Copernica:anna%40example.com"
            "?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Copernica",
        },
    )
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.TOO_MANY_REQUESTS, response="TOO_MANY_REQUESTS")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    def post(self, body):
        """Set up a second factor (TOTP)

        Needs the current password (re-authentication, counted as at `PUT
        /v1/me/password`). A new TOTP secret (RFC 6238: 6 digits, 30 seconds) and its
        `otpauth://` URI, for the person's authenticator app (show the URI as a QR code):
        its issuer is the brand of the site the person signed in through, its account
        name their address. It is not on yet: `POST /v1/me/second-factor/totp/confirm`
        with a first code turns it on. Asked again before that, a new secret replaces
        this one. While a second factor is on, this is a `409`: remove it first.
        """
        second_factor = services().accounts.second_factor
        return second_factor.set_up(unit_of_work(), caller(body), body["current_password"])

    @blp.user_token(impersonated=False)
    @blp.arguments(ReauthenticationSchema, example=_REAUTHENTICATION | _BROWSER_EXAMPLE)
    @blp.response(HTTPStatus.NO_CONTENT, description="The second factor is off.")
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.TOO_MANY_REQUESTS, response="TOO_MANY_REQUESTS")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    def delete(self, body):
        """Remove the second factor

        Needs the current password and a `code` of the app (or a `recovery_code`), each
        checked and counted as at `PUT /v1/me/password` (`422` names a wrong one). The
        secret and every recovery code are gone; logins need the password alone again.
        `404` when there is no second factor.
        """
        second_factor = services().accounts.second_factor
        second_factor.remove(unit_of_work(), caller(body), body["current_password"], proof(body))


@blp.route("/second-factor/totp/confirm")
class TotpConfirm(MethodView):
    @blp.user_token(impersonated=False)
    @blp.arguments(SecondFactorConfirmSchema, example={"code": "492039", **_BROWSER_EXAMPLE})
    @blp.response(
        HTTPStatus.OK,
        RecoveryCodesSchema,
        example={"recovery_codes": ["k7dq-mx3a-p9rt", "c2hw-9fnb-xe4u", "…"]},
    )
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.TOO_MANY_REQUESTS, response="TOO_MANY_REQUESTS")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    def post(self, body):
        """Turn the second factor on

        With the first `code` the authenticator app shows for the secret just set up:
        from now on a login needs a code after the password. The answer holds ten
        recovery codes, shown this once (only a keyed hash of each is kept): each works
        once instead of a code, for when the phone is lost. A wrong code is a `422`,
        counted as a wrong current password is (`429` past a few); nothing set up, or a
        second factor on already, a `409`.
        """
        second_factor = services().accounts.second_factor
        codes = second_factor.confirm(unit_of_work(), caller(body), body["code"])
        return {"recovery_codes": codes}


@blp.route("/login-attempts")
class LoginAttempts(MethodView):
    @blp.user_token()
    @blp.arguments(LoginAttemptsQuerySchema, location="query", unknown=RAISE)
    @blp.response(
        HTTPStatus.OK,
        LoginAttemptSchema(many=True),
        example=[
            {
                "id": 5012,
                "at": "2026-11-26T14:01:58Z",
                "outcome": "success",
                "site": "copernica.com",
                "client_ip": "203.0.113.7",
                "user_agent": "Mozilla/5.0 (X11)",
            }
        ],
        headers={"Link": next_link_header("…?limit=50&after=5012")},
    )
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    def get(self, query):
        """The person's own login attempts

        Newest first, a page at a time (`limit`, 50 unless said): when, through which
        site, from where, and how it went. While older ones remain, the `Link` header
        names the next page (`rel="next"`: the same `limit`, `after` = the last `id` of
        this page). An `after` that is not one of the person's attempts is a `422`.
        """
        sessions, limit = services().accounts.sessions, query["limit"]
        page = sessions.login_attempts(unit_of_work(), principal(), limit, query["after"])
        return linked(page, limit)


@blp.route("/sessions")
class Sessions(MethodView):
    @blp.user_token()
    @blp.arguments(SessionsQuerySchema, location="query", unknown=RAISE)
    @blp.response(
        HTTPStatus.OK,
        SessionSchema(many=True),
        example=[_SESSION],
        headers={"Link": next_link_header(f"…?limit=50&after={_SESSION['id']}")},
    )
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    def get(self, query):
        """The live sign-ins

        Each one a login and its refresh tokens: site, when it began, when it was last
        used, and the browser. The latest begun first, a page at a time (`limit`, 50
        unless said; using a sign-in does not move it between pages): while older ones
        remain, the `Link` header names the next page (`rel="next"`: the same `limit`,
        `after` = the last `id` of this page). An `after` that is not one of the
        person's sign-ins (live or ended) is a `422`.
        """
        sessions, limit = services().accounts.sessions, query["limit"]
        return linked(sessions.sign_ins(unit_of_work(), principal(), limit, query["after"]), limit)

    @blp.user_token(impersonated=False)
    @blp.arguments(ReauthenticationSchema, example=_REAUTHENTICATION | _BROWSER_EXAMPLE)
    @blp.response(HTTPStatus.NO_CONTENT, description="Every other sign-in has ended.")
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.TOO_MANY_REQUESTS, response="TOO_MANY_REQUESTS")
    def delete(self, body):
        """End every other sign-in

        Needs the current password (and the `code` of the second factor when one is on),
        checked and counted as at `PUT /v1/me/password`. Every sign-in of the person but
        the calling one ends: their refresh tokens stop working at once, and so do their
        access tokens here.
        """
        own = services().accounts.settings
        own.end_other_sign_ins(unit_of_work(), caller(body), body["current_password"], proof(body))


@blp.route("/sessions/<uuid:session_id>")
class Session(MethodView):
    @blp.user_token(impersonated=False)
    @blp.response(HTTPStatus.NO_CONTENT, description="The sign-in has ended.")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    def delete(self, session_id):
        """End one sign-in

        Its refresh tokens stop working at once, and so do its access tokens here.
        """
        services().accounts.sessions.end(unit_of_work(), principal(), session_id)


_EXPORT_EXAMPLE = {
    "exported_at": "2026-12-08T09:30:00.000000+00:00",
    "profile": {"id": "7d5c3f0e-2b1a-4c8e-9f6d-0a1b2c3d4e5f", "email": "anna@example.com"},
    "newsletters": [
        {"newsletter": "copernica", "state": "subscribed", "changed_at": "2026-11-25T09:31:00Z"}
    ],
    "consent_events": [],
    "companies": [],
    "invitations": [],
    "social_identities": [],
    "login_attempts": [],
    "sign_ins": [],
    "second_steps": [],
    "mailed_links": [],
    "pending_confirmations": [],
    "notification_settings": [],
    "earlier_passwords": {"kept": 0, "oldest": None, "note": "…"},
    "second_factor": None,
    "recovery_codes": {"left": 0, "used": 0},
    "picture": None,
    "staff_role": None,
    "audit_trail": [
        {
            "at": "2026-11-26T10:02:00Z",
            "recorded_at": "2026-11-26T10:02:00Z",
            "event": "login.succeeded",
            "actor": "site",
            "site": "copernica.com",
            "reason": None,
            "details": {"session_id": "3f2a9c1e-8b7d-4e6f-a5c4-b3a2f1e0d9c8"},
            "client_ip": "203.0.113.7",
        }
    ],
}


@blp.route("/export")
class Export(MethodView):
    @blp.user_token(impersonated=False)
    @blp.response(
        HTTPStatus.OK,
        description="Everything stored about the person, as one JSON document.",
        example=_EXPORT_EXAMPLE,
        content_type="application/json",
    )
    def get(self):
        """Everything stored about the person

        One JSON document (GDPR Art. 15 and 20): the record and where each value came
        from (`profile`), `newsletters` and every `consent_events` entry, pending
        confirmations, `notification_settings`, `companies` and `invitations`,
        `social_identities` (provider and subject), `login_attempts`, `sign_ins` and
        `second_steps`, `mailed_links`, the `picture` (base64), any `staff_role`, and
        the `audit_trail` about them (of staff: that it was staff and why). Of
        secrets, that they exist and when, never the secret: earlier passwords are
        counted, the second factor and recovery codes are described, mailed links have no
        token. Read in one snapshot.
        """
        document = rights.export_own(unit_of_work(), principal())
        return Response(document, mimetype="application/json")
