"""The signed-in person's own settings: their fields, their password, their address (and
the undo of a change of it), their other sign-ins."""

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import psycopg

from identity.errors import Conflict, InvalidInput, TooManyRequests, Unauthenticated
from identity.mail import enqueue as enqueue_mail
from identity.security.passwords import Passwords
from identity.services import mailed_tokens
from identity.services.accounts import common
from identity.services.accounts.common import INVALID_TOKEN, PASSWORD_HISTORY, AccountSettings
from identity.services.accounts.proofs import NO_CODE, Proof, code_throttle, reauthenticate
from identity.services.accounts.sessions import SIGN_IN_ENDED
from identity.services.contact import email_key, normalise_email
from identity.services.principal import Principal
from identity.services.security_events import security_event
from identity.services.sites import MailingSite, mailing_site
from identity.store import second_factors, sessions, throttles
from identity.store import social as social_store
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
        # sign-in that this change of password is meant to end. So do logins waiting for
        # their second factor, and the count of wrong codes that whoever knew the old
        # password made. The second factor itself stays.
        mailed_tokens.void(conn, self.user_id, ("password_reset", "email_change"))
        second_factors.void_challenges(conn, self.user_id)
        throttles.clear_throttle(conn, code_throttle(self.user_id))
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

    def change_password(
        self, uow: UnitOfWork, principal: Principal, current: str, new: str, proof: Proof = NO_CODE
    ):
        """The signed-in person's new password, after the current one (and a code when a
        second factor is on: `reauthenticate`); their other sign-ins end. A site without
        pages (where the notice comes from) is refused first (409), before anything is
        counted."""
        site = mailing_site(uow, principal)
        caller = principal.user
        # The history as it is before the check: a change that lands while the current
        # password is checked is seen at `write` (409).
        history = users_store.previous_password_hashes(
            uow.one_statement, caller.user_id, PASSWORD_HISTORY
        )
        limits = reauthenticate(uow, self.settings, self.passwords, principal, current, proof)
        stored = users_store.account_of(uow.one_statement, caller.user_id)
        change = PasswordChange.prepare(
            uow, self.passwords, caller.user_id, new, seen=(stored, history)
        )
        conn = uow.conn
        common.take_back(conn, limits)
        change.write(conn, site, keep_session=caller.session_id)
        security_event("password.changed", principal)

    def end_other_sign_ins(
        self, uow: UnitOfWork, principal: Principal, current: str, proof: Proof
    ) -> None:
        """End every sign-in of the person but this one, after the current password (and a
        code when a second factor is on): a stolen access token cannot throw the owner
        out."""
        limits = reauthenticate(uow, self.settings, self.passwords, principal, current, proof)
        conn = uow.conn
        user = principal.user
        ended = sessions.revoke_sessions(conn, user.user_id, except_id=user.session_id)
        common.take_back(conn, limits)
        security_event("sessions.revoked", principal, by="person", count=ended)

    def request_email_change(
        self, uow: UnitOfWork, principal: Principal, new_email: str, current: str, proof: Proof
    ):
        """Mail a confirmation to the new address and a notice to the old one, with a link
        that undoes the change for a week; the change happens on proof, while this sign-in
        lasts. Only after the current password (and a code when a second factor is on):
        an access token alone must not move the account to a thief's mailbox, from where
        a password reset would make it theirs for good.

        An address another record holds is refused the same way seen from the caller: the
        same answer, the same notice to the old address, an earlier pending change voided
        alike; its holder gets a notice instead of a link, so whether an address is known
        is not for anyone signed in to learn. At most a few requests an hour (429, the
        request counted), and a few more per client IP in a while, whoever is signed in
        there. A site without pages for the link is refused first (409)."""
        site = mailing_site(uow, principal)
        limits = common.ip_limit(self.settings, "email-change", principal.browser.client_ip)
        common.count_attempt(uow, self.settings, limits, _TOO_MANY_ADDRESS_CHANGES)
        address = normalise_email(new_email, field="new_email")
        proven = reauthenticate(uow, self.settings, self.passwords, principal, current, proof)
        conn = uow.conn
        user = users_store.lock_user(conn, principal.user.user_id)
        if not mailed_tokens.may_mail(conn, user["id"], "email_change"):
            uow.refuse(
                TooManyRequests(
                    "too many changes of address asked for; try again in an hour", retry_after=3600
                )
            )
        common.take_back(conn, proven)
        kept = _what_an_undo_keeps(conn, principal, self.settings)
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
                {
                    "email": address,
                    "session": str(principal.user.session_id),
                    **kept,
                },
                site=site.name,
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
        _offer_undo(conn, self.settings, user, site, "email_change_notice", kept)
        security_event("email_change.requested", principal)

    def undo_email_change(self, uow: UnitOfWork, principal: Principal, token: str) -> dict:
        """With the link the notices to the old address carry: the change of address is
        undone, asked or done. The record is back at the old address (a confirmation still
        pending is void), every sign-in ends, and so does the password, which whoever asked
        for the change knew: a link to choose a new one goes to the old address. The second
        factor and the social identities stay when they were there for the undo's window
        before the change was asked; later ones go (`_what_an_undo_keeps`). Undo links of
        earlier changes stay good.
        A minimal profile made for the old address meanwhile (a newsletter form, say: anyone
        may post an address) is joined into the account, its flags and their consent kept;
        another account there (only the owner could have proven the address) is a refusal
        (409, nothing changed, the link still good). A site without pages is refused first
        (409): the mail needs them. The record."""
        site = mailing_site(uow, principal)
        conn = uow.conn
        found = mailed_tokens.take(conn, token, ("email_change_undo",), principal.site_name)
        if found is None:
            raise InvalidInput(INVALID_TOKEN, errors={"token": [INVALID_TOKEN]})
        user_id, payload = found["user_id"], found["payload"]
        old = payload["email"]
        holder = users_store.lock_holder(conn, email_key(old))
        if holder is not None and holder["id"] != user_id:
            if not common.profile_only(holder):
                raise Conflict(
                    "another account holds the old address by now: it cannot be put back;"
                    " reset the password with the address the account has"
                )
            users_store.join_minimal_into(conn, user_id, holder)
        if holder is None or holder["id"] != user_id:
            users_store.change_email(
                conn, user_id, old, email_key(old), common.person_source(principal)
            )
        users_store.clear_password(conn, user_id)
        sessions.revoke_sessions(conn, user_id)
        second_factors.void_challenges(conn, user_id)
        factor = second_factors.factor_of(conn, user_id)
        if factor is not None and _since(factor) != payload.get("second_factor"):
            second_factors.remove(conn, user_id)
        # So do the social identities joined within the window (or all, for a link that
        # does not say when it began): a thief's Google would sign in as the owner.
        social_store.leave_joined_since(conn, user_id, payload.get("settled") or "-infinity")
        mailed_tokens.void(conn, user_id, ("email_change", "password_reset", "social_join"))
        # Undo links of later changes undo what this one undid, and those back to the same
        # address would do it again; links of earlier changes stay good: the owner's link
        # to the first address outlives a thief's undo of a change the thief made since.
        mailed_tokens.void_undo_links(conn, user_id, after=found["created_at"], to=old)
        user = users_store.lock_user(conn, user_id)
        minutes = self.settings.password_reset_minutes
        reset = mailed_tokens.issue(
            conn, "password_reset", user_id, timedelta(minutes=minutes), site=site.name
        )
        enqueue_mail(
            conn,
            "email_change_undone",
            user["email"],
            user["own_language"],
            site,
            token=reset,
            valid_minutes=minutes,
        )
        security_event("email_change.undone", principal, user_id=user_id)
        return users_store.get_by_id(conn, user_id)


def _what_an_undo_keeps(
    conn: psycopg.Connection, principal: Principal, settings: AccountSettings
) -> dict:
    """What an undo of the change asked now keeps, as its links remember it: the second
    factor (when it was turned on; None: none) and the social identities joined before
    `settled`: those that were there for the undo's whole window (7 days) before the
    sign-in that asks began. One added later may be a thief's, who signed in with the
    stolen password, turned a factor on or joined their own Google to keep the owner out
    after the undo, and signed in again before asking; its notice went to the owner's
    address, who had the window to act on it. So it goes with the undo (the owner turns
    a factor on, or joins a provider, again)."""
    caller = principal.user
    factor = second_factors.factor_of(conn, caller.user_id)
    asking = sessions.session_of(conn, caller.user_id, caller.session_id)
    if asking is None:
        return {"second_factor": None, "settled": None}
    settled = asking["created_at"] - timedelta(days=settings.email_change_undo_days)
    on = factor is not None and factor["confirmed_at"] is not None
    return {
        "second_factor": _since(factor) if on and factor["confirmed_at"] < settled else None,
        "settled": settled.isoformat(),
    }


def _since(factor: dict | None) -> str | None:
    """When a second factor was turned on, as an undo link remembers it (None: off)."""
    if factor is None or factor["confirmed_at"] is None:
        return None
    return factor["confirmed_at"].isoformat()


def _offer_undo(
    conn: psycopg.Connection,
    settings: AccountSettings,
    user: dict,
    site: MailingSite,
    template: str,
    kept: dict,
) -> None:
    """Mail the account's (old) address `template`, with a link that puts the address
    back for a week (`{pages}/email-change-undo?token=…`): it remembers the address and
    what an undo keeps (`_what_an_undo_keeps`)."""
    days = settings.email_change_undo_days
    token = mailed_tokens.issue(
        conn,
        "email_change_undo",
        user["id"],
        timedelta(days=days),
        {"email": user["email"], **kept},
        site=site.name,
    )
    enqueue_mail(
        conn, template, user["email"], user["own_language"], site, token=token, valid_days=days
    )


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


def change_email(
    conn: psycopg.Connection,
    settings: AccountSettings,
    principal: Principal,
    site: MailingSite,
    user_id: UUID,
    payload: dict,
):
    """Move the record to the address a change-of-address token was mailed to (its proof),
    while the sign-in that asked for it lasts. The old address is told it happened, with
    a link that undoes it for a week from now (mailed as `site`)."""
    address = payload["email"]
    session = payload.get("session")
    if session is not None and sessions.signed_in_user(conn, user_id, UUID(session)) is None:
        # The sign-in that asked has ended (logged out, a password reset): so has this.
        raise InvalidInput(INVALID_TOKEN, errors={"token": [INVALID_TOKEN]})
    holder = users_store.get_by_email(conn, email_key(address))
    if holder is not None and holder["id"] != user_id:
        raise Conflict("this address is in use by another record now")
    before = users_store.lock_user(conn, user_id)
    users_store.change_email(
        conn, user_id, address, email_key(address), common.person_source(principal)
    )
    # Reset links and links that join a provider went to the old address, which is no
    # longer the account's.
    mailed_tokens.void(conn, user_id, ("password_reset", "social_join"))
    security_event("email.changed", principal, user_id=user_id, session_id=session)
    # The second factor as it was when the change was asked (a change asked before there
    # were second factors had none).
    kept = {name: payload.get(name) for name in ("second_factor", "settled")}
    _offer_undo(conn, settings, before, site, "email_changed", kept)
