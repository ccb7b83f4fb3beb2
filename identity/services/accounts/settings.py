"""The signed-in person's own settings: their fields, their password, their address."""

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import psycopg

from identity.errors import Conflict, InvalidInput, TooManyRequests, Unauthenticated
from identity.mail import enqueue as enqueue_mail
from identity.security.passwords import Passwords, normalise_password
from identity.services import mailed_tokens
from identity.services.accounts import common
from identity.services.accounts.common import INVALID_TOKEN, PASSWORD_HISTORY, AccountSettings
from identity.services.accounts.sessions import SIGN_IN_ENDED
from identity.services.contact import email_key, normalise_email
from identity.services.principal import Principal
from identity.services.security_events import security_event
from identity.services.sites import MailingSite, mailing_site
from identity.store import sessions
from identity.store import users as users_store
from identity.store.transactions import UnitOfWork


@dataclass(frozen=True)
class PasswordChange:
    """A new password, checked against the policy and the account's history and hashed
    with no connection held (`prepare`), then written in the caller's transaction
    (`write`), which checks the history has not changed meanwhile."""

    user_id: UUID
    password_hash: str
    history: tuple[str, ...]

    @classmethod
    def prepare(
        cls,
        uow: UnitOfWork,
        passwords: Passwords,
        user_id: UUID,
        new: str,
        field: str = "new_password",
        seen: tuple[dict, list[str]] | None = None,
    ) -> "PasswordChange":
        """The new password checked and hashed with no connection held, against the
        account and history as read now, or as `seen` (read before the caller checked
        the current password, so that a change landing since is noticed at `write`)."""
        if seen is None:
            conn = uow.one_statement
            seen = (
                users_store.account_of(conn, user_id),
                users_store.previous_password_hashes(conn, user_id, PASSWORD_HISTORY),
            )
        user, history = seen
        uow.commit()
        password = common.acceptable_password(
            passwords,
            new,
            email=user["email"],
            names=common.names(user),
            previous=history,
            field=field,
        )
        return cls(user_id, passwords.hash(password), tuple(history))

    def write(
        self, conn: psycopg.Connection, site: MailingSite, keep_session: UUID | None = None
    ) -> dict:
        """Set it: every other sign-in ends, a pending change of address is void, the
        person is told (as `site`). The account, locked. Refused when the history changed
        since it was read (another change landed: 409), or when `keep_session`, the
        sign-in that asks, has ended meanwhile (401)."""
        user = users_store.lock_user(conn, self.user_id)
        now = users_store.previous_password_hashes(conn, self.user_id, PASSWORD_HISTORY)
        if tuple(now) != self.history:
            raise Conflict("the password was changed meanwhile; try again")
        if keep_session is not None and (
            sessions.signed_in_user(conn, self.user_id, keep_session) is None
        ):
            raise Unauthenticated(SIGN_IN_ENDED)
        users_store.set_password(conn, self.user_id, self.password_hash)
        users_store.remember_password(conn, self.user_id, self.password_hash, PASSWORD_HISTORY)
        sessions.revoke_sessions(conn, self.user_id, except_id=keep_session)
        # A pending change of address goes too: it may be a thief's, made with a stolen
        # sign-in that this change of password is meant to end.
        mailed_tokens.void(conn, self.user_id, ("password_reset", "email_change"))
        enqueue_mail(conn, "password_changed", user["email"], user["own_language"], site)
        return user


_TOO_MANY_ADDRESS_CHANGES = "too many changes of address asked for from this network; wait a while"


class OwnSettings:
    def __init__(self, settings: AccountSettings, passwords: Passwords):
        self.settings = settings
        self.passwords = passwords

    def edit(self, uow: UnitOfWork, principal: Principal, data: dict) -> dict:
        """The person's own edits: they win over anything a site sent, and are marked as
        theirs in `field_sources`. A field sent as null is cleared."""
        fields = common.own_fields(data, keep_nulls=True)
        conn = uow.conn
        users_store.edit_fields(
            conn, principal.user.user_id, fields, common.person_sources(fields, principal)
        )
        return users_store.get_by_id(conn, principal.user.user_id)

    def change_password(self, uow: UnitOfWork, principal: Principal, current: str, new: str):
        """The signed-in person's new password; their other sign-ins end. The current
        password is checked like a login's, counted first (committed), so a stolen access
        token is no way to guess it quickly; but against this sign-in and the client's
        network, not the account's logins: a stranger's failed logins elsewhere must not
        keep the owner from changing a password they fear is known. The network's count
        catches a guesser spreading over many stolen sign-ins; a change that is made takes
        its counts back. A site without pages (where the notice comes from) is refused
        first (409), before anything is counted."""
        site = mailing_site(uow, principal)
        s, caller = self.settings, principal.user
        limits = [
            *common.ip_limit(s, "password-change", principal.browser.client_ip),
            common.Limit(
                f"password-change:{caller.session_id}",
                s.account_free_failures,
                s.account_block_cap_seconds,
            ),
        ]
        common.count_attempt(uow, s, limits, "too many wrong passwords; wait before trying again")
        # The account and its history as they are before the check: a change that lands
        # while the current password is checked is seen at `write` (409).
        conn = uow.one_statement
        stored = users_store.account_of(conn, caller.user_id)
        history = users_store.previous_password_hashes(conn, caller.user_id, PASSWORD_HISTORY)
        uow.commit()
        if not self.passwords.verify(stored["password_hash"] or "", normalise_password(current)):
            security_event("reauthentication.failed", principal, action="password_change")
            raise InvalidInput(
                "the current password is not right",
                errors={"current_password": ["not the current password"]},
            )
        change = PasswordChange.prepare(
            uow, self.passwords, caller.user_id, new, seen=(stored, history)
        )
        conn = uow.conn
        common.take_back(conn, limits)
        change.write(conn, site, keep_session=caller.session_id)
        security_event("password.changed", principal)

    def request_email_change(self, uow: UnitOfWork, principal: Principal, new_email: str):
        """Mail a confirmation to the new address and a notice to the old one; the change
        happens on proof, while this sign-in lasts. An address another record holds is
        refused the same way seen from the caller: the same answer, the same notice to
        the old address, an earlier pending change voided alike; its holder gets a
        notice instead of a link, so whether an address is known is not for anyone
        signed in to learn. At most a few requests an hour (429, the request counted), and
        a few more per client IP in a while, whoever is signed in there. A site without
        pages for the link is refused first (409)."""
        site = mailing_site(uow, principal)
        limits = common.ip_limit(self.settings, "email-change", principal.browser.client_ip)
        common.count_attempt(uow, self.settings, limits, _TOO_MANY_ADDRESS_CHANGES)
        address = normalise_email(new_email, field="new_email")
        conn = uow.conn
        user = users_store.lock_user(conn, principal.user.user_id)
        if not mailed_tokens.may_mail(conn, user["id"], "email_change"):
            uow.refuse(
                TooManyRequests(
                    "too many changes of address asked for; try again in an hour", retry_after=3600
                )
            )
        mailed_tokens.void(conn, user["id"], ("email_change",))
        holder = users_store.get_by_email(conn, email_key(address))
        if holder is not None and holder["id"] != user["id"]:  # their own: a new spelling
            mailed_tokens.count_only(conn, "email_change", user["id"])
            _notify_holder(conn, holder, site)
        else:
            hours = self.settings.email_change_hours
            token = mailed_tokens.issue(
                conn,
                "email_change",
                user["id"],
                timedelta(hours=hours),
                {"email": address, "session": str(principal.user.session_id)},
            )
            enqueue_mail(
                conn,
                "email_change_confirm",
                address,
                user["own_language"],
                site,
                token=token,
                valid_hours=hours,
            )
        enqueue_mail(conn, "email_change_notice", user["email"], user["own_language"], site)
        security_event("email_change.requested", principal)


def _notify_holder(conn: psycopg.Connection, holder: dict, site: MailingSite) -> None:
    """Tell a record's address that an account asked to move onto it: at most a few times
    an hour, however many accounts ask (counted per record). The advice fits the holder:
    an account signs in; a record without one (a newsletter's, an import's, a
    registration never proven) is made an account by signing up with the address."""
    if not mailed_tokens.may_mail(conn, holder["id"], "email_change_notice"):
        return
    mailed_tokens.count_only(conn, "email_change_notice", holder["id"])
    enqueue_mail(
        conn,
        "email_change_attempt",
        holder["email"],
        holder["own_language"],
        site,
        account=holder["status"] == "registered",
    )


def change_email(conn: psycopg.Connection, principal: Principal, user_id: UUID, payload: dict):
    """Move the record to the address a change-of-address token was mailed to (its proof),
    while the sign-in that asked for it lasts."""
    address = payload["email"]
    session = payload.get("session")
    if session is not None and sessions.signed_in_user(conn, user_id, UUID(session)) is None:
        # The sign-in that asked has ended (logged out, a password reset): so has this.
        raise InvalidInput(INVALID_TOKEN, errors={"token": [INVALID_TOKEN]})
    holder = users_store.get_by_email(conn, email_key(address))
    if holder is not None and holder["id"] != user_id:
        raise Conflict("this address is in use by another record now")
    users_store.lock_user(conn, user_id)
    users_store.change_email(
        conn, user_id, address, email_key(address), common.person_source(principal)
    )
    # Reset links went to the old address, which is no longer the account's.
    mailed_tokens.void(conn, user_id, ("password_reset",))
    security_event("email.changed", principal, user_id=user_id, session_id=session)
