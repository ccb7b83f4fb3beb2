"""Logging in, its second step when a second factor is on, and the throttles that make
repeated failures wait: one answer and one time for an unknown address, an unproven one
and a wrong password, with or without a second factor."""

from dataclasses import dataclass
from datetime import datetime

from identity.errors import TooManyRequests, Unauthenticated
from identity.security.access_tokens import KeyRing
from identity.security.passwords import Passwords, normalise_password
from identity.security.secret_tokens import new_secret, secret_hash
from identity.services.accounts import common, proofs
from identity.services.accounts.common import AccountSettings, Tokens
from identity.services.accounts.proofs import Proof
from identity.services.contact import email_key, normalise_email
from identity.services.principal import Principal
from identity.services.security_events import security_event
from identity.store import second_factors, sessions, throttles
from identity.store import users as users_store
from identity.store.transactions import UnitOfWork

INVALID_LOGIN = "the email address or the password is not right"
INVALID_STEP = "this second step is not valid (used, expired, or of another site): log in again"
_WAIT = "too many failed logins; wait before trying again, or reset the password"

# A client IP the account logged in from within this many days is the owner's own: the
# account's failure limit does not hold there (the IP's own limit does).
_KNOWN_IP_DAYS = common.KNOWN_NETWORK_DAYS


@dataclass(frozen=True)
class SecondFactorRequired:
    """A right password of an account with a second factor: no tokens yet, but the
    mfa_token of the second step (`complete`)."""

    mfa_token: str
    mfa_required: bool = True


class Login:
    def __init__(self, settings: AccountSettings, passwords: Passwords, ring: KeyRing):
        self.settings = settings
        self.passwords = passwords
        self.ring = ring

    def log_in(
        self,
        uow: UnitOfWork,
        principal: Principal,
        address: str,
        password: str,
        proof: Proof = proofs.NO_CODE,
    ) -> Tokens | SecondFactorRequired:
        """Tokens for a right address and password; for an account with a second factor,
        the mfa_token of the second step instead (or, with `proof`, the tokens at once).
        Every attempt is recorded; failures are counted per account and per client IP,
        and past a few, logins wait (429).

        Three steps, each committed: the attempt counted (before the check, so parallel
        attempts cannot slip past the count), the password checked with no connection
        held, then the sign-in written (or the second step begun), or the failure
        recorded and refused. Whether an account has a second factor is read in the first
        step, for every address alike: a wrong password takes the same path either way."""
        key = email_key(normalise_email(address, field="email"))
        limits = [common.account_throttle(self.settings, key)]
        if principal.browser.client_ip:
            limits.append(common.ip_throttle(principal.browser.client_ip))
        account, waiting = self._start(uow, principal, limits, key, proof.given)
        uow.commit()
        password = normalise_password(password)
        usable = account is not None and account["email_verified_at"] and account["password_hash"]
        if usable:
            right = self.passwords.verify(account["password_hash"], password)
        else:
            self.passwords.verify_nothing(password)
            right = False
        if proof.given:
            return self._with_code(uow, principal, account, limits, right, proof, waiting)
        if not right:
            self._refuse(uow, principal, account, "wrong_password" if usable else "no_account")
        rehashed = None
        if self.passwords.needs_rehash(account["password_hash"]):
            rehashed = self.passwords.hash(password)
        if account["second_factor"] is not None:
            return self._second_step(uow, principal, account, limits, rehashed)
        return self._sign_in(uow, principal, account, limits, rehashed, proofs.PASSWORD_ONLY)

    def complete(
        self, uow: UnitOfWork, principal: Principal, mfa_token: str, proof: Proof
    ) -> Tokens:
        """The second step: tokens for a live mfa_token of the calling site and a right
        code of the person's second factor (or an unused recovery code), as login gives
        them. Wrong codes are counted before they are checked, against the person and
        the client IP (429 past a few), recorded as login attempts, and each counts
        against the mfa_token, which dies at the fifth. The mfa_token is spent by the
        sign-in it gives: of two uses, one signs in."""
        s, token_hash = self.settings, secret_hash(mfa_token)
        site = principal.site_name
        # Whose second step it is, to count against them (the lock ends with the statement).
        found = second_factors.lock_challenge(
            uow.one_statement, token_hash, site, s.mfa_token_failures
        )
        if found is None:
            raise Unauthenticated(INVALID_STEP)
        user_id = found["user_id"]
        limits = [proofs.code_limit(s, user_id)]
        if principal.browser.client_ip:
            ip = common.ip_throttle(principal.browser.client_ip)
            limits.append(common.Limit(ip, s.ip_free_failures, s.ip_block_cap_seconds))
        try:
            common.count_attempt(uow, s, limits, "too many wrong codes; wait before trying again")
        except TooManyRequests:
            security_event("login.throttled", principal, user_id=user_id)
            raise
        conn = uow.conn
        challenge = second_factors.lock_challenge(conn, token_hash, site, s.mfa_token_failures)
        if challenge is None:  # spent meanwhile by a parallel second step: no try was made
            common.take_back(conn, limits)
            uow.refuse(Unauthenticated(INVALID_STEP))
        amr = proofs.take_proof(conn, s, user_id, challenge["secret_sealed"], proof)
        if amr is None:
            second_factors.count_challenge_failure(conn, token_hash)
            self._refuse(uow, principal, {"id": user_id}, "wrong_code", "the code is not right")
        if challenge["first_factor"] != "pwd":  # begun by a provider's sign-in
            amr = tuple(challenge["first_factor"] if way == "pwd" else way for way in amr)
        second_factors.spend_challenge(conn, token_hash)
        uow.commit()
        security_event("second_factor.succeeded", principal, user_id=user_id, method=_method(amr))
        # The code's count is taken back; the IP's, by the sign-in, which also forgets the
        # account's failed logins, as a good login does.
        common.take_back(uow.one_statement, limits[:1])
        keys = [common.account_throttle(s, challenge["email_key"])]
        keys += [limit.throttle for limit in limits[1:]]
        return self._sign_in(uow, principal, {"id": user_id}, keys, None, amr)

    def _start(
        self, uow: UnitOfWork, principal: Principal, limits: list[str], key: str, with_code: bool
    ) -> tuple[dict | None, datetime | None]:
        """The account, once this attempt's password check is counted against the client
        IP and the account, and until when the account's logins wait if they do and the
        attempt came with a code (else such an attempt is refused, as one the IP's wait
        holds always is). The account's own limit does not hold for an IP it logged in
        from before: a stranger's failures elsewhere do not lock the owner out on their
        own device; nor for a sign-in completed with a second factor (`_with_code`)."""
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
        if ip_until is None and account_until and account is not None and browser.client_ip:
            network = common.network(browser.client_ip)
            if throttles.signed_in_from(conn, account["id"], network, _KNOWN_IP_DAYS):
                account_until = None
        if ip_until is None and (account_until is None or with_code):
            return account, account_until
        if ip_until is None and len(limits) > 1:
            # No check is made, so the IP's count of one is taken back: a stranger keeping
            # an account waiting must not get the owner's network blocked.
            throttles.take_back_attempt(conn, limits[1])
        throttles.record_attempt(
            conn,
            user_id=account["id"] if account else None,
            site_id=_site_id(principal),
            outcome="throttled",
            **browser.__dict__,
        )
        security_event("login.throttled", principal, user_id=account and account["id"])
        uow.refuse(common.waiting(ip_until or account_until, _WAIT))

    def _with_code(
        self,
        uow: UnitOfWork,
        principal: Principal,
        account: dict | None,
        limits: list[str],
        right: bool,
        proof: Proof,
        waiting: datetime | None,
    ) -> Tokens:
        """A login that brought the second factor's code with the password: tokens when
        both are right and the account has a second factor, even while the account's
        logins wait (a stranger's wrong passwords cannot keep out an owner with a code).
        Anything else fails exactly as a wrong password does at that moment (401, or the
        account's 429), so the attempt tells nothing more than one without a code: not
        whether the password was right, nor whether a second factor is on, and a stranger
        tests passwords no faster (to learn anything they need the code too).

        The person's count of wrong codes is taken only when the password was right, so
        a stranger cannot use it up; in one statement made for every attempt alike, so
        that the time does not tell either."""
        s = self.settings
        sealed = account["second_factor"] if right else None
        limit = proofs.code_limit(s, account["id"]) if sealed is not None else None
        conn = uow.one_statement
        until = common.reserve(
            conn,
            s,
            limit.throttle if limit else None,
            s.account_free_failures,
            s.account_block_cap_seconds,
        )
        amr = None
        if sealed is not None and until is None:
            amr = proofs.take_proof(conn, s, account["id"], sealed, proof)
        elif right and sealed is None and waiting is None:
            amr = proofs.PASSWORD_ONLY  # no second factor: the code was not needed
        if amr is None:
            if right:
                outcome = "wrong_code" if sealed is not None else "throttled"
            else:
                usable = account and account["email_verified_at"] and account["password_hash"]
                outcome = "wrong_password" if usable else "no_account"
            refusal = common.waiting(waiting, _WAIT) if waiting else INVALID_LOGIN
            self._refuse(uow, principal, account, outcome, refusal)
        if limit is not None:
            common.take_back(conn, [limit])
            security_event(
                "second_factor.succeeded", principal, user_id=account["id"], method=_method(amr)
            )
        return self._sign_in(uow, principal, account, limits, None, amr)

    def signed_in_elsewhere(
        self, uow: UnitOfWork, principal: Principal, user_id, key: str, first_factor: str
    ) -> "Tokens | SecondFactorRequired":
        """A sign-in the person made elsewhere (a provider's: `first_factor` "fed"), as a
        right password's goes on: the tokens, or the second step when a second factor is
        on. `key` is the person's address key (their failed logins are forgotten, as a
        good login forgets them)."""
        limits = [common.account_throttle(self.settings, key)]
        if principal.browser.client_ip:
            limits.append(common.ip_throttle(principal.browser.client_ip))
        account = {"id": user_id}
        factor = second_factors.factor_of(uow.one_statement, user_id)
        if factor is not None and factor["confirmed_at"] is not None:
            return self._second_step(uow, principal, account, limits, None, first_factor)
        return self._sign_in(uow, principal, account, limits, None, (first_factor,))

    def _second_step(
        self,
        uow: UnitOfWork,
        principal: Principal,
        account: dict,
        limits: list[str],
        rehashed,
        first_factor: str = "pwd",
    ) -> SecondFactorRequired:
        """A right password of an account with a second factor: the second step begun (its
        mfa_token, kept hashed), the attempt recorded, and the password check taken back
        from the counts, as a good login does; no tokens yet."""
        conn = uow.one_statement  # each statement below stands alone
        if rehashed is not None:
            users_store.rehash_password(conn, account["id"], account["password_hash"], rehashed)
        mfa_token = new_secret("idmfa_")
        second_factors.insert_challenge(
            conn,
            token_hash=secret_hash(mfa_token),
            user_id=account["id"],
            site_id=_site_id(principal),
            site_name=principal.site_name,
            seconds=self.settings.mfa_token_seconds,
            account_throttle=limits[0],
            ip_throttle=limits[1] if len(limits) > 1 else None,
            first_factor=first_factor,
            **principal.browser.__dict__,
        )
        security_event("second_factor.required", principal, user_id=account["id"])
        return SecondFactorRequired(mfa_token)

    def _refuse(
        self,
        uow: UnitOfWork,
        principal: Principal,
        account: dict | None,
        outcome: str,
        refusal: Unauthenticated | TooManyRequests | str = INVALID_LOGIN,
    ):
        """Record the failed attempt (its check was counted before it was made), say so in
        the security log, and refuse."""
        user_id = account and account["id"]
        if outcome == "throttled":
            security_event("login.throttled", principal, user_id=user_id)
        elif outcome == "wrong_code":
            security_event("second_factor.failed", principal, user_id=user_id)
        else:
            security_event("login.failed", principal, user_id=user_id)
        throttles.record_attempt(
            uow.one_statement,
            user_id=account["id"] if account else None,
            site_id=_site_id(principal),
            outcome=outcome,
            **principal.browser.__dict__,
        )
        uow.refuse(Unauthenticated(refusal) if isinstance(refusal, str) else refusal)

    def _sign_in(
        self, uow: UnitOfWork, principal: Principal, account: dict, limits, rehashed, amr
    ) -> Tokens:
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
            amr=amr,
            **principal.browser.__dict__,
        )
        session_id = user.pop("session_id")
        # Signing takes CPU, and the key ring may borrow a connection of its own to read
        # the keys: the request's goes back first (outside a transaction it may).
        uow.release()
        security_event("login.succeeded", principal, user_id=account["id"], session_id=session_id)
        access, expires_in = common.access_token(
            self.ring, s, account["id"], principal.site_name, session_id, amr
        )
        return Tokens(access, refresh, expires_in, user)


def _method(amr) -> str:
    """How a second step was passed, as the security log says it."""
    return "totp" if "otp" in amr else "recovery_code"


def _site_id(principal: Principal):
    return principal.site.site_id if principal.site else None
