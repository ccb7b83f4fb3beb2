"""Recovering an account: a reset link mailed to an address that has one (the same answer
when it has not), and the new password set with it."""

from datetime import timedelta

from identity.errors import InvalidInput
from identity.mail import enqueue as enqueue_mail
from identity.security.passwords import Passwords
from identity.services import mailed_tokens
from identity.services.accounts import common
from identity.services.accounts.common import INVALID_TOKEN, AccountSettings
from identity.services.accounts.settings import PasswordChange
from identity.services.contact import email_key, normalise_email
from identity.services.principal import Principal
from identity.services.security_events import security_event
from identity.services.sites import mailing_site
from identity.store import throttles
from identity.store import users as users_store
from identity.store.transactions import UnitOfWork

_TOO_MANY_REQUESTS = "too many password resets asked for from this network; wait a while"
_TOO_MANY_TRIES = "too many tries at setting a password from this network; wait a while"


class Recovery:
    def __init__(self, settings: AccountSettings, passwords: Passwords):
        self.settings = settings
        self.passwords = passwords

    def request_reset(self, uow: UnitOfWork, principal: Principal, address: str) -> None:
        """Mail a reset link when the address has an account; the same answer if not. A
        site without pages for the link is refused (409) before the address is looked up,
        so that answer too is the same for every address. Then counted per client IP,
        before the address is looked at, so a request that must wait is refused alike for
        every address; per account, the mail limits hold (past which nothing is sent and
        the answer stays the same): a few an hour per asking network, and a cap for all
        the networks the account has not logged in from, which a stranger may spend, but
        not the budget of the owner's own networks (mailed_tokens.may_mail).

        A new link voids none mailed before: each works until it is used or expires,
        and using one voids the rest (PasswordChange.write). Voiding them was a way for
        a stranger to kill the owner's link with a request of their own."""
        site = mailing_site(uow, principal)
        client_ip = principal.browser.client_ip
        limits = common.ip_limit(self.settings, "password-reset", client_ip)
        common.count_attempt(uow, self.settings, limits, _TOO_MANY_REQUESTS)
        conn = uow.conn
        user = users_store.lock_by_email_key(conn, email_key(normalise_email(address)))
        security_event("password_reset.requested", principal, user_id=user and user["id"])
        if user is None or user["email_verified_at"] is None:
            return
        known = common.known_network(conn, user["id"], client_ip)
        asked_from = common.mail_network(client_ip, known=known)
        if not mailed_tokens.may_mail(conn, user["id"], "password_reset", asked_from, known=known):
            return
        minutes = self.settings.password_reset_minutes
        token = mailed_tokens.issue(
            conn,
            "password_reset",
            user["id"],
            timedelta(minutes=minutes),
            asked_from=asked_from,
            site=principal.site_name,
        )
        enqueue_mail(
            conn,
            "password_reset",
            user["email"],
            user["own_language"],
            site,
            token=token,
            valid_minutes=minutes,
        )

    def reset(self, uow: UnitOfWork, principal: Principal, token: str, new_password: str) -> None:
        """Set the password with a reset token: every sign-in ends, the throttle lifts,
        and the person is told (in the calling site's name: a site without pages is
        refused first, 409). The token is checked and the new password checked and
        hashed before the transaction that spends the token; a token spent meanwhile by a
        second request is a refusal, as any spent one. Tries are counted per client IP
        first (a wrong token or a refused password costs a check, a good one is taken
        back); per account, the token is good for one reset."""
        site = mailing_site(uow, principal)
        limits = common.ip_limit(
            self.settings, "password-reset-confirm", principal.browser.client_ip
        )
        common.count_attempt(uow, self.settings, limits, _TOO_MANY_TRIES)
        owner = mailed_tokens.peek(
            uow.one_statement, token, ("password_reset",), principal.site_name
        )
        if owner is None:
            raise InvalidInput(INVALID_TOKEN, errors={"token": [INVALID_TOKEN]})
        change = PasswordChange.prepare(uow, self.passwords, owner, new_password)
        conn = uow.conn
        taken = mailed_tokens.take(conn, token, ("password_reset",), principal.site_name)
        if taken is None:
            raise InvalidInput(INVALID_TOKEN, errors={"token": [INVALID_TOKEN]})
        user = change.write(conn, site)
        security_event("password_reset.completed", principal, user_id=user["id"])
        throttles.clear_throttle(conn, common.account_throttle(self.settings, user["email_key"]))
        common.take_back(conn, limits)
