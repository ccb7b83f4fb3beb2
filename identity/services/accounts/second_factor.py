"""The second factor: a TOTP secret the person sets up, turns on with a first code (which
gives recovery codes) and removes."""

import time

from identity.errors import Conflict, InvalidInput, NotFound
from identity.mail import enqueue as enqueue_mail
from identity.security import second_factor as totp
from identity.security.passwords import Passwords
from identity.services.accounts import common
from identity.services.accounts.common import AccountSettings
from identity.services.accounts.proofs import (
    NO_CODE,
    Proof,
    count_reauthentication,
    reauthenticate,
)
from identity.services.principal import Principal
from identity.services.security_events import security_event
from identity.services.sites import MailingSite, mailing_site
from identity.store import second_factors as store
from identity.store import sites as sites_store
from identity.store import users as users_store
from identity.store.transactions import UnitOfWork


class SecondFactor:
    def __init__(self, settings: AccountSettings, passwords: Passwords):
        self.settings = settings
        self.passwords = passwords

    def status(self, uow: UnitOfWork, principal: Principal) -> dict:
        """Whether the person's second factor is on, since when, and how many recovery
        codes are left."""
        conn, user_id = uow.one_statement, principal.user.user_id
        factor = store.factor_of(conn, user_id)
        on = factor is not None and factor["confirmed_at"] is not None
        return {
            "totp": on,
            "since": factor["confirmed_at"] if on else None,
            "recovery_codes_left": store.recovery_codes_left(conn, user_id) if on else 0,
        }

    def set_up(
        self, uow: UnitOfWork, principal: Principal, current_password: str
    ) -> dict[str, str]:
        """A new TOTP secret and its otpauth:// URI (issuer: the brand of the site the
        person signed in through; account: their address), after the current password
        (re-authentication). Not on until confirmed with a first code; asked again, a new
        secret replaces the one not confirmed. A second factor that is on is a 409: it is
        removed first (with a code), never replaced by whoever holds a sign-in."""
        user = principal.user
        if _is_on(store.factor_of(uow.one_statement, user.user_id)):
            raise Conflict("a second factor is on: remove it first, then set up a new one")
        limits = reauthenticate(
            uow, self.settings, self.passwords, principal, current_password, NO_CODE
        )
        secret = totp.new_totp_secret()
        sealed = totp.seal_secret(self.settings.secret_key, user.user_id, secret)
        conn = uow.conn
        if not store.set_up(conn, user.user_id, sealed):
            raise Conflict("a second factor is on: remove it first, then set up a new one")
        common.take_back(conn, limits)
        issuer = sites_store.brand_of(conn, user.site_name) or user.site_name
        return {
            "secret": secret,
            "otpauth_uri": totp.provisioning_uri(secret, user.record["email"], issuer),
        }

    def confirm(self, uow: UnitOfWork, principal: Principal, code: str) -> list[str]:
        """Turn the second factor set up on with a first code of it; the ten recovery codes,
        shown this once (only their keyed hashes are kept). Wrong codes count as wrong
        passwords do where the person proves it is them again (against this sign-in)."""
        site = mailing_site(uow, principal)  # the notice needs its pages: 409 first
        user_id = principal.user.user_id
        factor = store.factor_of(uow.one_statement, user_id)
        if factor is None:
            raise Conflict("no second factor is set up: POST /v1/me/second-factor/totp first")
        if _is_on(factor):
            raise Conflict("the second factor is on already")
        limits = count_reauthentication(uow, self.settings, principal)
        secret = totp.open_secret(self.settings.secret_key, user_id, factor["secret_sealed"])
        step = totp.code_step(secret, code, time.time())
        if step is None:
            security_event("reauthentication.failed", principal, reason="code")
            raise InvalidInput(
                "the code is not right", errors={"code": ["not the code the app shows now"]}
            )
        codes = totp.new_recovery_codes()
        hashes = [totp.recovery_code_hash(self.settings.secret_key, c) for c in codes]
        conn = uow.conn
        if not store.turn_on(conn, user_id, step, hashes):
            raise Conflict("the second factor was turned on or removed meanwhile")
        common.take_back(conn, limits)
        _tell(conn, user_id, site, turned_on=True)
        security_event("second_factor.enabled", principal)
        return codes

    def remove(
        self, uow: UnitOfWork, principal: Principal, current_password: str, proof: Proof
    ) -> None:
        """Remove the second factor and its recovery codes, after the current password and
        a code (an app's or a recovery code). The person's address is told."""
        site = mailing_site(uow, principal)
        user_id = principal.user.user_id
        if store.factor_of(uow.one_statement, user_id) is None:
            raise NotFound("no second factor is set up")
        limits = reauthenticate(
            uow, self.settings, self.passwords, principal, current_password, proof
        )
        conn = uow.conn
        store.remove(conn, user_id)
        common.take_back(conn, limits)
        _tell(conn, user_id, site, turned_on=False)
        security_event("second_factor.disabled", principal)


def _tell(conn, user_id, site: MailingSite, *, turned_on: bool) -> None:
    """A notice to the person's address that a second factor was turned on or removed
    (ASVS 6.3.7): a thief's one, added to keep the owner out, does not go unnoticed."""
    user = users_store.get_by_id(conn, user_id)
    enqueue_mail(
        conn,
        "second_factor_changed",
        user["email"],
        user["own_language"],
        site,
        turned_on=turned_on,
    )


def _is_on(factor: dict | None) -> bool:
    return factor is not None and factor["confirmed_at"] is not None
