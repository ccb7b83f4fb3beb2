"""What a person shows to prove it is them: the password and, with a second factor on, a
code. The one check of a code (at login, its second step, and wherever the signed-in
person proves themselves again), and the one re-authentication that guards whatever can
take an account over (ASVS 7.5): a change of password or of address, setting up or
removing the second factor, ending the other sign-ins."""

import time
from dataclasses import dataclass
from uuid import UUID

import psycopg

from identity.errors import InvalidInput, TooManyRequests
from identity.security import second_factor as totp
from identity.security.passwords import Passwords, normalise_password
from identity.services.accounts import common
from identity.services.accounts.common import AccountSettings
from identity.services.principal import Principal
from identity.services.security_events import security_event
from identity.store import second_factors as store
from identity.store import users as users_store
from identity.store.transactions import UnitOfWork

# How a sign-in was made, as RFC 8176 names it (the access token's `amr`): a password; a
# password and a code of an authenticator app (`otp`); a password and a recovery code,
# which is a second factor (`mfa`) but no one-time password of a device. The app's code
# carries `mfa` too, so a site asks one question of a token: is "mfa" in it?
PASSWORD_ONLY = ("pwd",)
WITH_APP_CODE = ("pwd", "otp", "mfa")
WITH_RECOVERY_CODE = ("pwd", "mfa")

WRONG_CODE = "not the code of your authenticator app, nor an unused recovery code"
_CODE_NEEDED = "this account has a second factor: send the code of the authenticator app"
_TOO_MANY = "too many wrong passwords or codes; wait before trying again"


@dataclass(frozen=True)
class Proof:
    """What a person sends beside the password when a second factor is on: the 6-digit
    `code` of the authenticator app, or a `recovery_code` (also taken in `code`: it does
    not look like an app's code)."""

    code: str | None = None
    recovery_code: str | None = None

    @property
    def given(self) -> bool:
        return bool(self.code or self.recovery_code)


# Nothing beside the password: enough while no second factor is on.
NO_CODE = Proof()


def take_proof(
    conn: psycopg.Connection, settings: AccountSettings, user_id: UUID, sealed, proof: Proof
) -> tuple[str, ...] | None:
    """How the person signed in (`amr`) when `proof` is right for their second factor (its
    sealed secret), the code now spent: a recovery code once, an app's code once and no
    code of its time step or one before after it; None when it is not right, or was spent
    before. A statement only for a code that could be right."""
    recovery = proof.recovery_code
    if recovery is None and proof.code and not totp.CODE.fullmatch(proof.code):
        recovery = proof.code
    if recovery is not None:
        taken = store.use_recovery_code(
            conn, user_id, totp.recovery_code_hash(settings.secret_key, recovery)
        )
        return WITH_RECOVERY_CODE if taken else None
    secret = totp.open_secret(settings.secret_key, user_id, sealed)
    step = totp.code_step(secret, proof.code or "", time.time())
    if step is not None and store.take_step(conn, user_id, step):
        return WITH_APP_CODE
    return None


def code_throttle(user_id: UUID) -> str:
    """The count of one person's wrong codes at login and its second step. Only someone who
    knew the password can make one, so a stranger cannot use it up to keep the owner out;
    a new password lifts it."""
    return f"second-factor:{user_id}"


def code_limit(settings: AccountSettings, user_id: UUID) -> common.Limit:
    return common.Limit(
        code_throttle(user_id),
        settings.account_free_failures,
        settings.account_block_cap_seconds,
    )


def count_reauthentication(
    uow: UnitOfWork, settings: AccountSettings, principal: Principal
) -> list[common.Limit]:
    """Count one try at proving it is them against the signed-in person's sign-in and the
    client's network (committed; past a few the next waits: 429); the limits, for taking
    the count back once the try came out well."""
    limits = [
        *common.ip_limit(settings, "reauthenticate", principal.browser.client_ip),
        common.Limit(
            f"reauthenticate:{principal.user.session_id}",
            settings.account_free_failures,
            settings.account_block_cap_seconds,
        ),
    ]
    try:
        common.count_attempt(uow, settings, limits, _TOO_MANY)
    except TooManyRequests:
        security_event("reauthentication.failed", principal, reason="throttled")
        raise
    return limits


def reauthenticate(
    uow: UnitOfWork,
    settings: AccountSettings,
    passwords: Passwords,
    principal: Principal,
    current_password: str,
    proof: Proof,
) -> list[common.Limit]:
    """The signed-in person proves it is them again: the current password, and a code when
    a second factor is on (spent). A stolen access token is no way to take the account
    over, nor to guess the password quickly: each try is counted first (committed)
    against this sign-in and against the client's network, like a login's check, and past
    a few the next must wait (429). Not against the account's logins: a stranger's failed
    logins elsewhere must not keep the owner from securing the account. A wrong password
    or code is a 422 naming the field; the limits are returned for the caller to take
    back once its change is made (a person's own success never uses up a shared count).

    A missing code when one is needed is refused before anything is counted. The password
    is checked with no connection held."""
    s, caller = settings, principal.user
    conn = uow.one_statement
    factor = store.factor_of(conn, caller.user_id)
    sealed = factor["secret_sealed"] if factor and factor["confirmed_at"] else None
    if sealed is not None and not proof.given:
        raise InvalidInput(_CODE_NEEDED, errors={"code": [_CODE_NEEDED]})
    limits = count_reauthentication(uow, s, principal)
    stored = users_store.account_of(uow.one_statement, caller.user_id)
    uow.commit()
    if not passwords.verify(stored["password_hash"] or "", normalise_password(current_password)):
        security_event("reauthentication.failed", principal, reason="password")
        raise InvalidInput(
            "the current password is not right",
            errors={"current_password": ["not the current password"]},
        )
    if (
        sealed is not None
        and take_proof(uow.one_statement, s, caller.user_id, sealed, proof) is None
    ):
        security_event("reauthentication.failed", principal, reason="code")
        raise InvalidInput("the code is not right", errors={"code": [WRONG_CODE]})
    return limits
