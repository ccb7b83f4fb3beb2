"""Logging in, and the throttles that make repeated failures wait: one answer and one
time for an unknown address, an unproven one and a wrong password."""

from identity.errors import Unauthenticated
from identity.security.access_tokens import KeyRing
from identity.security.passwords import Passwords, normalise_password
from identity.security.secret_tokens import new_secret, secret_hash
from identity.services.accounts import common
from identity.services.accounts.common import AccountSettings, Tokens
from identity.services.contact import email_key, normalise_email
from identity.services.principal import Principal
from identity.services.security_events import security_event
from identity.store import sessions, throttles
from identity.store import users as users_store
from identity.store.transactions import UnitOfWork

INVALID_LOGIN = "the email address or the password is not right"

# A client IP the account logged in from within this many days is the owner's own: the
# account's failure limit does not hold there (the IP's own limit does).
_KNOWN_IP_DAYS = common.KNOWN_NETWORK_DAYS


class Login:
    def __init__(self, settings: AccountSettings, passwords: Passwords, ring: KeyRing):
        self.settings = settings
        self.passwords = passwords
        self.ring = ring

    def log_in(self, uow: UnitOfWork, principal: Principal, address: str, password: str) -> Tokens:
        """Tokens for a right address and password. Every attempt is recorded; failures
        are counted per account and per client IP, and past a few, logins wait (429).

        Three steps, each committed: the attempt counted (before the check, so parallel
        attempts cannot slip past the count), the password checked with no connection
        held, then the sign-in written, or the failure recorded and refused."""
        key = email_key(normalise_email(address, field="email"))
        limits = [common.account_throttle(self.settings, key)]
        if principal.browser.client_ip:
            limits.append(common.ip_throttle(principal.browser.client_ip))
        account = self._start(uow, principal, limits, key)
        uow.commit()
        password = normalise_password(password)
        usable = account is not None and account["email_verified_at"] and account["password_hash"]
        if usable:
            right = self.passwords.verify(account["password_hash"], password)
        else:
            self.passwords.verify_nothing(password)
            right = False
        if not right:
            # The check was counted before it was made (_start).
            throttles.record_attempt(
                uow.one_statement,
                user_id=account["id"] if account else None,
                site_id=_site_id(principal),
                outcome="wrong_password" if usable else "no_account",
                **principal.browser.__dict__,
            )
            security_event("login.failed", principal, user_id=account and account["id"])
            uow.refuse(Unauthenticated(INVALID_LOGIN))
        rehashed = None
        if self.passwords.needs_rehash(account["password_hash"]):
            rehashed = self.passwords.hash(password)
        return self._sign_in(uow, principal, account, limits, rehashed)

    def _start(self, uow: UnitOfWork, principal: Principal, limits: list[str], key: str):
        """The account, once this attempt's password check is counted against the client
        IP and the account; or the refusal of an attempt that must wait. The account's
        own limit does not hold for an IP it logged in from before: a stranger's failures
        elsewhere do not lock the owner out on their own device."""
        s, conn, browser = self.settings, uow.conn, principal.browser
        started = throttles.start_login(
            conn,
            key,
            ip_throttle=limits[1] if len(limits) > 1 else None,
            account_throttle=limits[0],
            window_seconds=s.throttle_window_seconds,
            ip_free=s.ip_free_failures,
            ip_cap_seconds=s.ip_block_cap_seconds,
            account_free=s.account_free_failures,
            account_cap_seconds=s.account_block_cap_seconds,
        )
        ip_until, account_until = started.pop("ip_until"), started.pop("account_until")
        account = None if started["id"] is None else started
        until = ip_until or account_until
        if account_until is not None:
            if account is not None and browser.client_ip:
                network = common.network(browser.client_ip)
                if throttles.signed_in_from(conn, account["id"], network, _KNOWN_IP_DAYS):
                    until = None
            if until is not None and len(limits) > 1:
                # No check is made, so the IP's count of one is taken back: a stranger
                # keeping an account waiting must not get the owner's network blocked.
                throttles.take_back_attempt(conn, limits[1])
        if until is None:
            return account
        throttles.record_attempt(
            conn,
            user_id=account["id"] if account else None,
            site_id=_site_id(principal),
            outcome="throttled",
            **browser.__dict__,
        )
        security_event("login.throttled", principal, user_id=account and account["id"])
        uow.refuse(
            common.waiting(
                until, "too many failed logins; wait before trying again, or reset the password"
            )
        )

    def _sign_in(self, uow: UnitOfWork, principal: Principal, account: dict, limits, rehashed):
        conn = uow.one_statement  # each statement below stands alone
        if rehashed is not None:
            users_store.rehash_password(conn, account["id"], account["password_hash"], rehashed)
        refresh = new_secret("idrt_")
        s = self.settings
        user = sessions.sign_in(
            conn,
            user_id=account["id"],
            site_id=_site_id(principal),
            site_name=principal.site_name,
            throttle_key=limits[0],
            ip_throttle_key=limits[1] if len(limits) > 1 else None,
            refresh_hash=secret_hash(refresh),
            idle_seconds=s.refresh_idle_seconds,
            absolute_seconds=s.refresh_absolute_seconds,
            **principal.browser.__dict__,
        )
        session_id = user.pop("session_id")
        security_event("login.succeeded", principal, user_id=account["id"], session_id=session_id)
        access, expires_in = common.access_token(
            self.ring, s, account["id"], principal.site_name, session_id
        )
        return Tokens(access, refresh, expires_in, user)


def _site_id(principal: Principal):
    return principal.site.site_id if principal.site else None
