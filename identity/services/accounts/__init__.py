"""Accounts on the one record, a flow a module: registration (and the claim of the
record an address had), login (its throttles and its second step), sessions (whether a
sign-in is live, refresh, logout), recovery (password reset), the person's own settings,
and their second factor; proofs: the one check of a code, and of the password and code
again before whatever can take an account over.

Answers that could tell whether an address has an account have one shape, whatever the
address: registration and password reset always answer the same, and a login fails the
same way (and takes the same time) for an unknown address, an unproven one and a wrong
password. argon2 and zxcvbn never run while a connection, a transaction or a row lock is
held: each flow checks, computes, then writes.
"""

from dataclasses import dataclass

from identity.security.access_tokens import KeyRing
from identity.security.passwords import Passwords
from identity.services.accounts.common import AccountSettings, Tokens, account_settings
from identity.services.accounts.login import Login
from identity.services.accounts.recovery import Recovery
from identity.services.accounts.registration import Registration
from identity.services.accounts.second_factor import SecondFactor
from identity.services.accounts.sessions import Sessions
from identity.services.accounts.settings import OwnSettings

__all__ = ["AccountSettings", "Accounts", "Tokens", "account_settings"]


@dataclass(frozen=True)
class Accounts:
    """The account flows of one process, built once from the settings."""

    registration: Registration
    login: Login
    sessions: Sessions
    recovery: Recovery
    settings: OwnSettings
    second_factor: SecondFactor

    @classmethod
    def build(cls, settings: AccountSettings, passwords: Passwords, ring: KeyRing) -> "Accounts":
        return cls(
            registration=Registration(settings, passwords),
            login=Login(settings, passwords, ring),
            sessions=Sessions(settings, ring),
            recovery=Recovery(settings, passwords),
            settings=OwnSettings(settings, passwords),
            second_factor=SecondFactor(settings, passwords),
        )
