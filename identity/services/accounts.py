"""Accounts: registering, proving the address (and claiming the record it had), logging in,
tokens, passwords and the person's own edits.

Every function joins the caller's transaction. Answers that could tell whether an address
has an account have one shape, whatever the address: registration and password reset
always answer the same, and a login fails the same way (and takes the same time) for an
unknown address, an unproven one and a wrong password.
"""

import functools
import hashlib
import hmac
import ipaddress
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg

from identity.concurrency import Batcher
from identity.errors import Conflict, InvalidInput, NotFound, TooManyRequests, Unauthenticated
from identity.mail import enqueue as enqueue_mail
from identity.security.access_tokens import KeyRing, issue_access_token
from identity.security.passwords import Passwords, check_password, normalise_password
from identity.services.contact import email_key, normalise_email, normalise_phones
from identity.services.principal import Principal, UserCaller
from identity.store import accounts as store
from identity.store import users as users_store

# What the person may set about themselves, and what registration may carry.
OWN_FIELDS = ("first_name", "infix", "last_name", "suffix", "gender", "phone", "mobile", "fax",
              "language")  # fmt: skip
PASSWORD_HISTORY = 5
# At most this many verification (or reset) mails to one address an hour: nobody can
# use the service to flood someone's mailbox.
_MAILS_AN_HOUR = 5

# A client IP the account logged in from within this many days is the owner's own: the
# account's failure limit does not hold there (the IP's own limit does).
_KNOWN_IP_DAYS = 90

# Access tokens a process keeps as checked (then it forgets them all and starts again).
_CHECKED_TOKENS = 10_000

INVALID_LOGIN = "the email address or the password is not right"
INVALID_TOKEN = "this link is not valid: it was used already, has expired, or was never made"  # noqa: S105


@dataclass(frozen=True)
class AccountSettings:
    issuer: str
    secret_key: str
    access_token_seconds: int = 900
    refresh_idle_seconds: int = 30 * 86400
    refresh_absolute_seconds: int = 90 * 86400
    verify_email_hours: int = 24
    password_reset_minutes: int = 30
    email_change_hours: int = 24
    # Failed logins: free ones inside the window, then waits of 1 s, 2 s, 4 s, ... up to
    # the cap, per account (so a stranger holds the owner up for minutes, not days; a
    # completed password reset lifts it) and per client IP (which a stranger cannot
    # spread over many accounts).
    account_free_failures: int = 5
    ip_free_failures: int = 20
    throttle_window_seconds: int = 900
    account_block_cap_seconds: int = 900
    ip_block_cap_seconds: int = 3600


def account_settings(config: dict) -> AccountSettings:
    """The account settings in `config` (identity.config's settings)."""
    return AccountSettings(
        issuer=config["PUBLIC_URL"],
        secret_key=config["SECRET_KEY"],
        access_token_seconds=config["ACCESS_TOKEN_SECONDS"],
        refresh_idle_seconds=config["REFRESH_IDLE_SECONDS"],
        refresh_absolute_seconds=config["REFRESH_ABSOLUTE_SECONDS"],
        account_free_failures=config["LOGIN_ACCOUNT_FAILURES"],
        ip_free_failures=config["LOGIN_IP_FAILURES"],
    )


@dataclass(frozen=True)
class Browser:
    """What the site knows of the person's browser, passed on in the body."""

    client_ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int
    user: dict | None  # a login answers the record; a refresh, only the new pair


@dataclass(frozen=True)
class Refused:
    """A login or refresh that failed, with what it recorded (the attempt, a failure
    counted, a copied token's sign-in ended) to be committed before the caller answers
    with `error`: raising inside the transaction would roll that back."""

    error: Exception


class Accounts:
    """The accounts of the one record: built once per process from the settings."""

    def __init__(self, settings: AccountSettings, passwords: Passwords, ring: KeyRing):
        self.settings = settings
        self.passwords = passwords
        self.ring = ring
        # Access tokens found genuine, with their claims: this process's memory only,
        # and only of what a signature already proved.
        self._checked: dict[str, dict] = {}
        # Refreshes that come together are rotated together; one token's never.
        self._rotations = Batcher(key=lambda rotation: rotation["old"])

    def authenticate_user(self, access_token: str) -> Principal:
        """The signed-in person an access token names, if the token is genuine and live.
        A token checked before is not checked again while it lives: a site sends the same
        one with every request of a person for its quarter of an hour."""
        claims = self._checked.get(access_token)
        if claims is None or claims["exp"] <= time.time():
            claims = self.ring.verify(access_token, audience=None, issuer=self.settings.issuer)
            if not isinstance(claims.get("aud"), str):  # one site's token, never a list
                raise Unauthenticated("this access token is not valid")
            if len(self._checked) >= _CHECKED_TOKENS:
                self._checked.clear()
            self._checked[access_token] = claims
        try:
            caller = UserCaller(
                user_id=UUID(claims["sub"]),
                site_name=str(claims["aud"]),
                session_id=UUID(claims["sid"]),
                issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
            )
        except (KeyError, ValueError, TypeError, OverflowError):
            raise Unauthenticated("this access token is not valid") from None
        return Principal(user=caller)

    # --- registering and proving the address -------------------------------------------

    def reserve_registration(self, conn: psycopg.Connection, data: dict) -> Refused | None:
        """Count a registration before its password is hashed (the dearest thing a
        stranger can make the service do), like login checks: past a few within the
        window, registrations wait. Per client IP; per address only when the site sends
        no client IP, because a limit per address is one a stranger can use up to keep
        its owner from registering. A statement of its own, committed."""
        s = self.settings
        if data.get("client_ip"):
            throttle = f"register-ip:{_network(data['client_ip'])}"
            free, cap = s.ip_free_failures, s.ip_block_cap_seconds
        else:
            key = email_key(normalise_email(data["email"]))
            throttle = f"register:{self._account_throttle(key)}"
            free, cap = s.account_free_failures, s.account_block_cap_seconds
        until = self._reserve(conn, throttle, free, cap)
        if until is None:
            return None
        return _waiting(until, "too many registrations; wait before trying again")

    def prepare_registration(self, data: dict) -> dict:
        """A registration checked and its password hashed, before any transaction: the
        hash takes tens of milliseconds, and always, so every answer takes that long."""
        address = normalise_email(data["email"])
        fields = _own_fields(data)
        password = self._acceptable_password(
            data["password"], email=address, names=_names(fields), previous=[]
        )
        return {"email": address, "fields": fields, "password": password,
                "password_hash": self.passwords.hash(password)}  # fmt: skip

    def register(self, conn: psycopg.Connection, principal: Principal, prepared: dict) -> None:
        """Start an account for a prepared registration; the same outcome for the caller
        whatever the address. Nothing the registering party sent reaches the record before
        the address is proven: it waits in the verification token."""
        address, fields = prepared["email"], prepared["fields"]
        password_hash = prepared["password_hash"]
        key = email_key(address)
        user = store.lock_by_email_key(conn, key)
        if user is None:
            users_store.insert_new(conn, [_new_record(address, key, principal)])
            user = store.lock_by_email_key(conn, key)
        may_mail = self._may_mail(conn, user["id"], "verify_email")
        if user["email_verified_at"] is not None:
            if may_mail:
                enqueue_mail(conn, "registration_attempt", user["email"], user["language"])
                # A token expired at birth: it only counts this mail for the hourly limit.
                store.insert_token(conn, _token()[1], "verify_email", user["id"], {},
                                   datetime.now(UTC))  # fmt: skip
            return
        # Every registration's link stays good (a later one, perhaps a stranger's, voids
        # none), and each is kept even when the hourly limit sends no mail for it: at
        # proof, more than one registration means none of their passwords is taken.
        # A registration made again with the same password (a double submit, "the mail
        # did not come") is the same person's: it replaces theirs rather than competing.
        again = [
            pending["token_hash"]
            for pending in store.pending_registrations(conn, user["id"])
            if self.passwords.verify(pending["password_hash"], prepared["password"])
        ]
        if again:
            store.supersede_registrations(conn, again)
        token, token_hash = _token()
        store.insert_token(
            conn, token_hash, "verify_email", user["id"],
            {"password_hash": password_hash, "fields": fields, "site": principal.site_name},
            datetime.now(UTC) + timedelta(hours=self.settings.verify_email_hours),
        )  # fmt: skip
        if may_mail:
            enqueue_mail(
                conn, "verify_email", user["email"], fields.get("language") or user["language"],
                token=token, valid_hours=self.settings.verify_email_hours,
            )  # fmt: skip

    def verify_email(self, conn: psycopg.Connection, principal: Principal, token: str) -> dict:
        """Prove an address with the token mailed to it: the registration it finishes (the
        record claimed, earlier data kept, the person's own fields winning, every session
        and token from before void), or the change of address it confirms."""
        found = self._take_token(conn, token, ("verify_email", "email_change"))
        if found is None:
            raise InvalidInput(INVALID_TOKEN, errors={"token": [INVALID_TOKEN]})
        user_id, payload = found["user_id"], found["payload"]
        if found["purpose"] == "email_change":
            self._change_email(conn, principal, user_id, payload)
        else:
            self._claim(conn, principal, user_id, payload)
        return users_store.get_by_id(conn, user_id)

    def _claim(self, conn, principal: Principal, user_id: UUID, payload: dict) -> None:
        """The address is proven. With one registration in its link's lifetime, the
        account takes that registration's password and fields. With more, the link's
        clicker cannot be told from whoever else registered the address (a stranger may
        have registered it after its owner, hoping the owner clicks the stranger's
        link): the address is proven, no password or field of any of them is taken, and
        the proven address gets a link to choose a password."""
        user = store.lock_user(conn, user_id)
        window = self.settings.verify_email_hours * 3600
        contested = store.registrations_since(conn, user_id, window) > 1
        fields = {} if contested else payload["fields"]
        password_hash = None if contested else payload["password_hash"]
        store.prove_address(
            conn, user_id, password_hash, fields,
            _person_sources(("email", *fields), payload.get("site") or principal.site_name),
        )  # fmt: skip
        if password_hash is not None:
            store.remember_password(conn, user_id, password_hash, PASSWORD_HISTORY)
        store.void_tokens(conn, user_id, ("verify_email", "email_change", "password_reset"))
        store.revoke_sessions(conn, user_id)
        if contested:
            minutes = self.settings.password_reset_minutes
            token, token_hash = _token()
            store.insert_token(conn, token_hash, "password_reset", user_id, {},
                               datetime.now(UTC) + timedelta(minutes=minutes))  # fmt: skip
            enqueue_mail(conn, "choose_password", user["email"], user["language"],
                         token=token, valid_minutes=minutes)  # fmt: skip

    # --- logging in ------------------------------------------------------------------------

    def login(
        self,
        run: Callable,
        look: Callable,
        principal: Principal,
        address: str,
        password: str,
        browser: Browser,
    ) -> Tokens | Refused:
        """Tokens for a right address and password. Every attempt is recorded; failures
        are counted per account and per client IP, and past a few, logins wait (429).

        Unlike other services it takes the caller's ways to run work: `run` in a
        transaction, `look` on a connection for one statement (atomic by itself). The
        password is checked between them, so no connection waits while argon2 works.
        What is recorded is committed before the caller answers, also for a refusal.
        """
        key = email_key(normalise_email(address, field="email"))
        throttles = [self._account_throttle(key)]
        if browser.client_ip:
            throttles.append(_ip_throttle(browser.client_ip))
        site_id = principal.site.site_id if principal.site else None
        account = look(lambda conn: self._start_login(conn, throttles, key, site_id, browser))
        if isinstance(account, Refused):
            return account
        password = normalise_password(password)
        usable = account is not None and account["email_verified_at"] and account["password_hash"]
        if usable:
            right = self.passwords.verify(account["password_hash"], password)
        else:
            self.passwords.verify_nothing(password)
            right = False
        if not right:
            return run(lambda conn: self._refuse_login(conn, account, throttles, site_id, browser))
        rehashed = None
        if self.passwords.needs_rehash(account["password_hash"]):
            rehashed = self.passwords.hash(password)
        return look(
            lambda conn: self._sign_in(
                conn, principal, account, throttles, rehashed, site_id, browser
            )
        )

    def _start_login(self, conn, throttles, key, site_id, browser) -> dict | Refused | None:
        """The account, once this attempt's password check is counted against the client
        IP and the account (atomically, before the check: parallel attempts cannot slip
        past the count); or the refusal of an attempt that must wait. The account's own
        limit does not hold for an IP it logged in from before: a stranger's failures
        elsewhere do not lock the owner out on their own device."""
        s = self.settings
        started = store.start_login(
            conn, key, ip_throttle=throttles[1] if len(throttles) > 1 else None,
            account_throttle=throttles[0], window_seconds=s.throttle_window_seconds,
            ip_free=s.ip_free_failures, ip_cap_seconds=s.ip_block_cap_seconds,
            account_free=s.account_free_failures, account_cap_seconds=s.account_block_cap_seconds,
        )  # fmt: skip
        ip_until, account_until = started.pop("ip_until"), started.pop("account_until")
        account = None if started["id"] is None else started
        until = ip_until or account_until
        if account_until is not None:
            if account is not None and browser.client_ip:
                network = _network(browser.client_ip)
                if store.signed_in_from(conn, account["id"], network, _KNOWN_IP_DAYS):
                    until = None
            if until is not None and len(throttles) > 1:
                # No check is made, so the IP's count of one is taken back: a stranger
                # keeping an account waiting must not get the owner's network blocked.
                store.take_back_attempt(conn, throttles[1])
        if until is None:
            return account
        store.record_attempt(conn, user_id=account["id"] if account else None,
                             site_id=site_id, outcome="throttled", **browser.__dict__)  # fmt: skip
        return _waiting(
            until, "too many failed logins; wait before trying again, or reset the password"
        )

    def _refuse_login(self, conn, account, throttles, site_id, browser) -> Refused:
        # The check was counted before it was made (_start_login).
        usable = account is not None and account["email_verified_at"]
        store.record_attempt(
            conn, user_id=account["id"] if account else None, site_id=site_id,
            outcome="wrong_password" if usable else "no_account", **browser.__dict__,
        )  # fmt: skip
        return Refused(Unauthenticated(INVALID_LOGIN))

    def _sign_in(
        self, conn, principal: Principal, account: dict, throttles: list[str], rehashed,
        site_id, browser: Browser,
    ) -> Tokens:  # fmt: skip
        if rehashed is not None:
            store.rehash_password(conn, account["id"], account["password_hash"], rehashed)
        refresh, refresh_hash = _token("idrt_")
        s = self.settings
        user = store.sign_in(
            conn, user_id=account["id"], site_id=site_id, site_name=principal.site_name,
            throttle_key=throttles[0], ip_throttle_key=throttles[1] if len(throttles) > 1 else None,
            refresh_hash=refresh_hash,
            idle_seconds=s.refresh_idle_seconds, absolute_seconds=s.refresh_absolute_seconds,
            **browser.__dict__,
        )  # fmt: skip
        session_id = user.pop("session_id")
        access, expires_in = self._access_token(account["id"], principal.site_name, session_id)
        return Tokens(access, refresh, expires_in, user)

    def _access_token(self, user_id: UUID, site_name: str, session_id: UUID) -> tuple[str, int]:
        return issue_access_token(
            self.ring, user_id=user_id, site=site_name, issuer=self.settings.issuer,
            lifetime_seconds=self.settings.access_token_seconds,
            extra={"sid": str(session_id)},
        )  # fmt: skip

    def refresh(
        self,
        connection: Callable[[], psycopg.Connection],
        principal: Principal,
        refresh_token: str,
    ) -> Tokens | Refused:
        """A new pair for a live refresh token of the calling site's sign-in, which is
        spent. A spent one shown again means it was copied: its whole family is revoked.
        The rotation is one statement, on a connection outside a transaction, which
        `connection()` gives; refreshes that come while one is being written wait and
        are then rotated together, in one statement (Batcher), holding no connection
        while they wait."""
        old_hash = _hash(refresh_token)
        refresh, refresh_hash = _token("idrt_")
        rotation = {"old": old_hash, "new": refresh_hash, "site": principal.site_name}
        idle = self.settings.refresh_idle_seconds
        rotated = self._rotations(
            rotation, lambda rotations: store.rotate_refresh_tokens(connection(), rotations, idle)
        )
        if rotated["session_id"] is None:
            conn = connection()
            copied = store.spent_refresh_token_session(conn, old_hash, principal.site_name)
            if copied is not None:
                store.revoke_session(conn, copied)
                return Refused(
                    Unauthenticated("this refresh token was used before; the sign-in is ended")
                )
            return Refused(Unauthenticated("this refresh token is not valid, or its sign-in ended"))
        access, expires_in = self._access_token(
            rotated["user_id"], rotated["site_name"], rotated["session_id"]
        )
        return Tokens(access, refresh, expires_in, None)

    def logout(self, conn: psycopg.Connection, principal: Principal, refresh_token: str) -> None:
        """End the sign-in the refresh token belongs to (nothing, for an unknown one or
        another site's)."""
        found = store.lock_refresh_token(conn, _hash(refresh_token))
        if found is not None and found["site_name"] == principal.site_name:
            store.revoke_session(conn, found["session_id"])

    # --- passwords -------------------------------------------------------------------------

    def request_password_reset(self, conn: psycopg.Connection, address: str) -> None:
        """Mail a reset link when the address has an account; the same answer if not."""
        user = store.lock_by_email_key(conn, email_key(normalise_email(address)))
        if user is None or user["email_verified_at"] is None:
            return
        if not self._may_mail(conn, user["id"], "password_reset"):
            return
        store.void_tokens(conn, user["id"], ("password_reset",))
        token, token_hash = _token()
        store.insert_token(
            conn, token_hash, "password_reset", user["id"], {},
            datetime.now(UTC) + timedelta(minutes=self.settings.password_reset_minutes),
        )  # fmt: skip
        enqueue_mail(conn, "password_reset", user["email"], user["language"], token=token,
                     valid_minutes=self.settings.password_reset_minutes)  # fmt: skip

    def reset_password(self, conn: psycopg.Connection, token: str, new_password: str) -> None:
        """Set the password with a reset token: every sign-in ends, the throttle lifts,
        and the person is told."""
        found = self._take_token(conn, token, ("password_reset",))
        if found is None:
            raise InvalidInput(INVALID_TOKEN, errors={"token": [INVALID_TOKEN]})
        user = store.lock_user(conn, found["user_id"])
        self._set_password(conn, user, new_password, field="new_password")
        store.clear_throttle(conn, self._account_throttle(user["email_key"]))

    def change_password(
        self, conn: psycopg.Connection, principal: Principal, current: str, new: str
    ) -> Refused | None:
        """The signed-in person's new password; their other sign-ins end. The current
        password is checked like a login's, counted first, so a stolen access token is
        no way to guess it quickly; but against this sign-in, not the account's logins:
        a stranger's failed logins must not keep the owner from changing a password they
        fear is known. A refusal comes back as Refused, for the caller to commit (the
        count) before answering."""
        self.me(conn, principal)
        user = store.lock_user(conn, principal.user.user_id)
        s = self.settings
        throttle = f"password-change:{principal.user.session_id}"
        until = self._reserve(conn, throttle, s.account_free_failures, s.account_block_cap_seconds)
        if until is not None:
            return _waiting(until, "too many wrong passwords; wait before trying again")
        if not self.passwords.verify(user["password_hash"] or "", normalise_password(current)):
            return Refused(InvalidInput(
                "the current password is not right",
                errors={"current_password": ["not the current password"]},
            ))  # fmt: skip
        store.take_back_attempt(conn, throttle)
        self._set_password(conn, user, new, field="new_password",
                           keep_session=principal.user.session_id)  # fmt: skip
        return None

    def _set_password(self, conn, user: dict, new: str, *, field: str, keep_session=None):
        previous = store.previous_password_hashes(conn, user["id"], PASSWORD_HISTORY)
        password = self._acceptable_password(
            new, email=user["email"], names=_names(user), previous=previous, field=field
        )
        password_hash = self.passwords.hash(password)
        store.set_password(conn, user["id"], password_hash)
        store.remember_password(conn, user["id"], password_hash, PASSWORD_HISTORY)
        store.revoke_sessions(conn, user["id"], except_id=keep_session)
        # A pending change of address goes too: it may be a thief's, made with a stolen
        # sign-in that this change of password is meant to end.
        store.void_tokens(conn, user["id"], ("password_reset", "email_change"))
        enqueue_mail(conn, "password_changed", user["email"], user["language"])

    def _acceptable_password(
        self, password: str, *, email: str, names: list[str], previous: list[str],
        field: str = "password",
    ) -> str:  # fmt: skip
        # zxcvbn and up to five argon2 checks of the history: off the loop, like a hash.
        reasons = self.passwords.offload(
            functools.partial(check_password, email=email, names=names, previous_hashes=previous),
            password,
        )
        if reasons:
            raise InvalidInput("the password is not acceptable", errors={field: reasons})
        return normalise_password(password)

    # --- the signed-in person --------------------------------------------------------------

    def me(self, conn: psycopg.Connection, principal: Principal) -> dict:
        """The signed-in person's record, while their sign-in holds (a claim, a password
        change or a logout ends it at once, access tokens included)."""
        caller = principal.user
        user = store.signed_in_user(conn, caller.user_id, caller.session_id)
        if user is None:
            raise Unauthenticated("this sign-in has ended; log in again")
        return user

    def edit_me(self, conn: psycopg.Connection, principal: Principal, data: dict) -> dict:
        """The person's own edits: they win over anything a site sent, and are marked as
        theirs in `field_sources`. A field sent as null is cleared."""
        self.me(conn, principal)
        fields = _own_fields(data, keep_nulls=True)
        store.edit_fields(conn, principal.user.user_id, fields,
                          _person_sources(fields, principal))  # fmt: skip
        return users_store.get_by_id(conn, principal.user.user_id)

    def request_email_change(
        self, conn: psycopg.Connection, principal: Principal, new_email: str
    ) -> Refused | None:
        """Mail a confirmation to the new address and a notice to the old one; the change
        happens on proof, while this sign-in lasts. An address another record holds is
        refused the same way seen from the caller: the same answer, the same notice to
        the old address, an earlier pending change voided alike; its holder gets a
        notice instead of a link, so whether an address is known is not for anyone
        signed in to learn. At most a few requests an hour: a Refused, for the caller to
        commit before answering."""
        self.me(conn, principal)
        address = normalise_email(new_email, field="new_email")
        user = store.lock_user(conn, principal.user.user_id)
        if not self._may_mail(conn, user["id"], "email_change"):
            return Refused(TooManyRequests(
                "too many changes of address asked for; try again in an hour", retry_after=3600
            ))  # fmt: skip
        store.void_tokens(conn, user["id"], ("email_change",))
        holder = users_store.get_by_email(conn, email_key(address))
        token, token_hash = _token()
        if holder is not None and holder["id"] != user["id"]:  # their own: a new spelling
            # A token expired at birth: it only counts this request for the hourly limit.
            store.insert_token(conn, token_hash, "email_change", user["id"], {},
                               datetime.now(UTC))  # fmt: skip
            self._notify_holder(conn, holder)
        else:
            store.insert_token(
                conn, token_hash, "email_change", user["id"],
                {"email": address, "session": str(principal.user.session_id)},
                datetime.now(UTC) + timedelta(hours=self.settings.email_change_hours),
            )  # fmt: skip
            enqueue_mail(conn, "email_change_confirm", address, user["language"], token=token,
                         valid_hours=self.settings.email_change_hours)  # fmt: skip
        enqueue_mail(conn, "email_change_notice", user["email"], user["language"])
        return None

    def _notify_holder(self, conn: psycopg.Connection, holder: dict) -> None:
        """Tell a record's address that an account asked to move onto it: at most a few
        times an hour, however many accounts ask (counted per record). The advice fits
        the holder: an account signs in; a record without one (a newsletter's, an import's,
        a registration never proven) is made an account by signing up with the address."""
        if not self._may_mail(conn, holder["id"], "email_change_notice"):
            return
        store.insert_token(conn, _token()[1], "email_change_notice", holder["id"], {},
                           datetime.now(UTC))  # fmt: skip
        enqueue_mail(conn, "email_change_attempt", holder["email"], holder["language"],
                     account=holder["status"] == "registered")  # fmt: skip

    def _change_email(self, conn, principal: Principal, user_id: UUID, payload: dict) -> None:
        address = payload["email"]
        session = payload.get("session")
        if session is not None and store.signed_in_user(conn, user_id, UUID(session)) is None:
            # The sign-in that asked has ended (logged out, a password reset): so has this.
            raise InvalidInput(INVALID_TOKEN, errors={"token": [INVALID_TOKEN]})
        holder = users_store.get_by_email(conn, email_key(address))
        if holder is not None and holder["id"] != user_id:
            raise Conflict("this address is in use by another record now")
        store.lock_user(conn, user_id)
        store.change_email(conn, user_id, address, email_key(address),
                           _person_source(principal))  # fmt: skip
        # Reset links went to the old address, which is no longer the account's.
        store.void_tokens(conn, user_id, ("password_reset",))

    def login_attempts(
        self, conn: psycopg.Connection, principal: Principal, limit: int, after: int | None
    ) -> tuple[list[dict], int | None]:
        """A page of the person's attempts, newest first, after the attempt `after`; and
        the cursor of the next page (None on the last)."""
        self.me(conn, principal)
        user_id = principal.user.user_id
        before = _cursor(after, lambda: store.attempt_of(conn, user_id, after), "attempts")
        return _page(store.attempts_of(conn, user_id, limit + 1, before), limit)

    def sessions(
        self, conn: psycopg.Connection, principal: Principal, limit: int, after: UUID | None
    ) -> tuple[list[dict], UUID | None]:
        """A page of the person's live sign-ins, the latest begun first, after the sign-in
        `after` (live or ended since); and the cursor of the next page (None on the
        last)."""
        self.me(conn, principal)
        user_id = principal.user.user_id
        before = _cursor(after, lambda: store.session_of(conn, user_id, after), "sign-ins")
        return _page(store.live_sessions(conn, user_id, limit + 1, before), limit)

    def end_session(self, conn: psycopg.Connection, principal: Principal, session_id: UUID):
        self.me(conn, principal)
        if not store.revoke_session(conn, session_id, principal.user.user_id):
            raise NotFound("no live sign-in of yours with this id")

    # --- helpers ---------------------------------------------------------------------------

    def _take_token(self, conn, token: str, purposes: tuple[str, ...]) -> dict | None:
        """The token, spent, with its account locked first: locking an account before
        its tokens, as every other path does, two clicks of two links of one account
        cannot deadlock."""
        token_hash = _hash(token)
        owner = store.token_owner(conn, token_hash, purposes)
        if owner is None:
            return None
        store.lock_user(conn, owner)
        return store.take_token(conn, token_hash, purposes)

    def _reserve(self, conn, throttle: str, free: int, cap_seconds: int) -> datetime | None:
        """Count one check against `throttle` (store.reserve_attempt) in this service's
        window; until when checks wait, if this one must."""
        window = self.settings.throttle_window_seconds
        return store.reserve_attempt(
            conn, throttle, free=free, window_seconds=window, cap_seconds=cap_seconds
        )

    def _account_throttle(self, key: str) -> str:
        # A keyed hash: the table of throttles holds no address.
        digest = hmac.new(self.settings.secret_key.encode(), key.encode(), hashlib.sha256)
        return f"account:{digest.hexdigest()[:32]}"

    def _may_mail(self, conn, user_id: UUID, purpose: str) -> bool:
        return store.tokens_made_since(conn, user_id, purpose, 3600) < _MAILS_AN_HOUR


def _cursor(after, find: Callable[[], dict | None], items: str) -> dict | None:
    """The row a page's `after` names (`find` looks it up among the person's own), None
    for the first page; an `after` that is not the person's is refused."""
    if after is None:
        return None
    found = find()
    if found is None:
        raise InvalidInput(
            f"after: the id of one of your {items}, from the page before",
            errors={"after": [f"not one of your {items}"]},
        )
    return found


def _page(rows: list[dict], limit: int) -> tuple[list[dict], object]:
    """The first `limit` of `rows` (asked for one more than a page) and the cursor of the
    next page, the last row's `id`; None when nothing follows."""
    return rows[:limit], rows[limit - 1]["id"] if len(rows) > limit else None


def _waiting(until: datetime, detail: str) -> Refused:
    """A refusal (429) that says how long to wait: until `until`, at least a second."""
    seconds = max(1, math.ceil((until - datetime.now(UTC)).total_seconds()))
    return Refused(TooManyRequests(detail, retry_after=seconds))


def _network(client_ip: str) -> str:
    """The network a client IP stands for: an IPv4 address alone, an IPv6 address by its
    /64, the block one subscriber gets (a device takes new addresses in it every day,
    and a stranger can at will)."""
    ip = ipaddress.ip_address(client_ip)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _ip_throttle(client_ip: str) -> str:
    return f"ip:{_network(client_ip)}"


def _token(prefix: str = "") -> tuple[str, bytes]:
    """A new secret of 256 random bits, and the hash under which it is kept."""
    token = prefix + secrets.token_urlsafe(32)
    return token, _hash(token)


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _own_fields(data: dict, *, keep_nulls: bool = False) -> dict:
    """The person's own fields from a checked body: phones in E.164, blanks dropped (or,
    for edits, kept as null to clear the field)."""
    fields = {}
    for name in OWN_FIELDS:
        if name not in data:
            continue
        if data[name] not in (None, ""):
            fields[name] = data[name]
        elif keep_nulls:
            fields[name] = "unspecified" if name == "gender" else None
    errors: dict[str, list[str]] = {}
    fields = normalise_phones(fields, data.get("country"), errors)
    if errors:
        raise InvalidInput("some fields are not acceptable", errors=errors)
    return fields


def _names(fields: dict) -> list[str]:
    return [fields[name] for name in ("first_name", "last_name") if fields.get(name)]


def _person_source(site: Principal | str) -> dict:
    """Provenance of what the person gave themselves, through `site` (or the caller's)."""
    site_name = site if isinstance(site, str) else site.site_name
    return {"source": "person", "site": site_name,
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip


def _person_sources(fields, site: Principal | str) -> dict:
    source = _person_source(site)
    return {name: source for name in fields}


def _new_record(address: str, key: str, principal: Principal) -> dict:
    """A minimal record for an address first met at registration (not yet proven)."""
    source = _person_source(principal) | {"source": "registration"}
    return {
        "email": address,
        "email_key": key,
        "field_sources": users_store.field_sources_json({"email": source}),
    }
