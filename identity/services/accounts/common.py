"""What the account flows share: their settings, the answer with tokens, the throttles'
names and counting, the person's own fields and where they came from."""

import functools
import hashlib
import hmac
import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from identity.errors import InvalidInput, TooManyRequests
from identity.security.access_tokens import KeyRing, issue_access_token
from identity.security.derived_keys import LOGIN_THROTTLES, derived_key
from identity.security.passwords import Passwords, check_password, normalise_password
from identity.services.contact import normalise_phones
from identity.services.principal import Principal
from identity.store import throttles
from identity.store import users as users_store
from identity.store.transactions import UnitOfWork
from identity.store.users import PROFILE_COLUMNS

# What the person may set about themselves, and what registration may carry: the
# profile's own fields.
OWN_FIELDS = PROFILE_COLUMNS
PASSWORD_HISTORY = 5

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
    # The notices to the old address carry a link that puts it back, for this long.
    email_change_undo_days: int = 7
    # A login's second step: its mfa_token lasts minutes, and dies after a few wrong codes.
    mfa_token_seconds: int = 300
    mfa_token_failures: int = 5
    # Failed logins: free ones inside the window, then waits of 1 s, 2 s, 4 s, ... up to
    # the cap, per account (so a stranger holds the owner up for minutes, not days; a
    # completed password reset lifts it) and per client IP (which a stranger cannot
    # spread over many accounts).
    account_free_failures: int = 5
    ip_free_failures: int = 20
    throttle_window_seconds: int = 900
    account_block_cap_seconds: int = 900
    ip_block_cap_seconds: int = 3600
    # Reset requests, reset confirmations, password changes and changes of address, each
    # per client IP: free ones inside the window, then waits of 1 s, 2 s, ... up to the
    # cap. A person makes one or two; a stranger's hundreds from one network make only
    # that network wait, and for minutes, not hours.
    ip_free_requests: int = 10
    ip_request_cap_seconds: int = 900


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
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int
    user: dict | None  # a login answers the record; a refresh, only the new pair


def access_token(
    ring: KeyRing, settings: AccountSettings, user_id, site_name: str, session_id, amr
) -> tuple[str, int]:
    """A signed access token of one sign-in, saying how the person signed in (`amr`, RFC
    8176), and how many seconds it lasts."""
    return issue_access_token(
        ring,
        user_id=user_id,
        site=site_name,
        issuer=settings.issuer,
        lifetime_seconds=settings.access_token_seconds,
        extra={"sid": str(session_id), "amr": list(amr)},
    )


def reserve(
    conn: psycopg.Connection, settings: AccountSettings, throttle: str, free: int, cap: int
) -> datetime | None:
    """Count one check against `throttle` in the settings' window; until when checks
    wait, if this one must."""
    return throttles.reserve_attempt(
        conn,
        throttle,
        free=free,
        window_seconds=settings.throttle_window_seconds,
        cap_seconds=cap,
    )


@dataclass(frozen=True)
class Limit:
    """One throttle an attempt is counted against: `free` attempts in the settings'
    window, then waits that double up to `cap_seconds`."""

    throttle: str
    free: int
    cap_seconds: int


def ip_limit(settings: AccountSettings, flow: str, client_ip: str | None) -> list[Limit]:
    """The limit of one flow (`password-reset`, ...) per client IP: none when the caller
    passed on no IP (the HTTP face requires it where this is counted)."""
    if not client_ip:
        return []
    throttle = f"{flow}-ip:{network(client_ip)}"
    return [Limit(throttle, settings.ip_free_requests, settings.ip_request_cap_seconds)]


def count_attempt(uow: UnitOfWork, settings: AccountSettings, limits: list[Limit], detail: str):
    """Count one attempt against each of `limits` in turn, each count an atomic statement
    of its own (committed, so parallel attempts see it). The first limit that makes the
    attempt wait refuses it (429 with how long, `detail` saying what); the counts it made
    against the limits before are taken back, since no attempt is made: a stranger kept
    waiting at one limit does not use up another that others share."""
    conn = uow.one_statement
    counted = []
    for limit in limits:
        until = reserve(conn, settings, limit.throttle, limit.free, limit.cap_seconds)
        if until is not None:
            for throttle in counted:
                throttles.take_back_attempt(conn, throttle)
            uow.refuse(waiting(until, detail))
        counted.append(limit.throttle)


def take_back(conn: psycopg.Connection, limits: list[Limit]) -> None:
    """An attempt that came out well no longer counts against `limits` (nor the waits
    it began): a person's own good attempts never use up a limit shared with others."""
    for limit in limits:
        throttles.take_back_attempt(conn, limit.throttle)


def waiting(until: datetime, detail: str) -> TooManyRequests:
    """A refusal (429) that says how long to wait: until `until`, at least a second."""
    seconds = max(1, math.ceil((until - datetime.now(UTC)).total_seconds()))
    return TooManyRequests(detail, retry_after=seconds)


def account_throttle(settings: AccountSettings, key: str) -> str:
    """The throttle of one address key: a keyed hash, so the table holds no address."""
    secret = derived_key(settings.secret_key, LOGIN_THROTTLES)
    digest = hmac.new(secret, key.encode(), hashlib.sha256)
    return f"account:{digest.hexdigest()[:32]}"


def network(client_ip: str) -> str:
    """The network a client IP stands for: an IPv4 address alone, an IPv6 address by its
    /64, the block one subscriber gets (a device takes new addresses in it every day,
    and a stranger can at will)."""
    ip = ipaddress.ip_address(client_ip)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def ip_throttle(client_ip: str) -> str:
    return f"ip:{network(client_ip)}"


# A network the account logged in from within this many days is the owner's own: the
# account's failure limit does not hold there (login), nor the cap on mails asked for
# from networks not known (a reset's).
KNOWN_NETWORK_DAYS = 90


def known_network(conn: psycopg.Connection, user_id, client_ip: str | None) -> bool:
    """Whether the account logged in from the network of `client_ip` (`network`) within
    KNOWN_NETWORK_DAYS."""
    if not client_ip:
        return False
    return throttles.signed_in_from(conn, user_id, network(client_ip), KNOWN_NETWORK_DAYS)


def mail_network(client_ip: str | None, *, known: bool = False) -> str | None:
    """The network whose budget a mail asked for from `client_ip` counts against
    (identity.services.mailed_tokens.may_mail): a network the account knows, as login
    knows it (`network`); another IPv4 address alone, and another IPv6 address by its
    /48, the block one site is given (RFC 6177), in which a stranger takes a new /64 at
    will. None without a client IP."""
    if not client_ip:
        return None
    if known:
        return network(client_ip)
    ip = ipaddress.ip_address(client_ip)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/48", strict=False))
    return str(ip)


def own_fields(data: dict, *, keep_nulls: bool = False) -> dict:
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


def names(fields: dict) -> list[str]:
    """The person's names, which a password must not be made of."""
    return [fields[name] for name in ("first_name", "last_name") if fields.get(name)]


def person_source(site: Principal | str | None) -> dict:
    """Provenance of what the person gave themselves, through `site` (or the caller's)."""
    site_name = site.site_name if isinstance(site, Principal) else site
    acting = isinstance(site, Principal) and site.user and site.user.acting_staff_id
    return {
        "source": "staff" if acting else "person",
        "site": site_name,
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def person_sources(fields, site: Principal | str | None) -> dict:
    source = person_source(site)
    return {name: source for name in fields}


def profile_only(record: dict) -> bool:
    """A record that is only a profile (as `users.lock_holder` reads it): no account was
    made of it. A registration pending at its address is not one; a join voids it."""
    return (
        record["status"] == "minimal"
        and record["password_hash"] is None
        and record["email_verified_at"] is None
    )


def new_record(address: str, key: str, principal: Principal) -> dict:
    """A minimal record for an address first met at registration (not yet proven)."""
    source = person_source(principal) | {"source": "registration"}
    return {
        "email": address,
        "email_key": key,
        "field_sources": users_store.field_sources_json({"email": source}),
    }


def cursor(after, find: Callable[[], dict | None], items: str) -> dict | None:
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


def page(rows: list[dict], limit: int) -> tuple[list[dict], object]:
    """The first `limit` of `rows` (asked for one more than a page) and the cursor of the
    next page, the last row's `id`; None when nothing follows."""
    return rows[:limit], rows[limit - 1]["id"] if len(rows) > limit else None


def acceptable_password(
    passwords: Passwords,
    password: str,
    *,
    email: str,
    names: list[str],
    previous: list[str],
    field: str = "password",
) -> str:
    """The password, normalised, if the policy takes it; else InvalidInput that says why.
    zxcvbn and up to five argon2 checks of the history run off the request's thread, like
    a hash, and with no connection held."""
    reasons = passwords.offload(
        functools.partial(check_password, email=email, names=names, previous_hashes=previous),
        password,
    )
    if reasons:
        raise InvalidInput("the password is not acceptable", errors={field: reasons})
    return normalise_password(password)
