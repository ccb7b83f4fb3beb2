"""The sites that call the service: issuing, revoking and checking their keys."""

import re
import time
from collections.abc import Callable

from identity.errors import InvalidInput, Unauthenticated
from identity.security.site_keys import (
    looks_like_site_key,
    new_site_key,
    site_key_hash,
    site_key_label,
)
from identity.services.principal import Principal, SiteCaller
from identity.store import sites as store
from identity.store.transactions import UnitOfWork

# What a key may be allowed to do. A key made without --scope gets all of them.
SCOPES = {
    "profiles:write": "make and add to records (POST /v1/profiles, /v1/profiles/import)",
    "users:read": "look records up (GET /v1/users)",
    "auth": "sign people up and in, and reset their passwords (POST /v1/auth/*)",
    "newsletters": "subscribe addresses, export subscribers and unsubscribe links"
    " (/v1/newsletters/*)",
}

_SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")


def issue_site_key(uow: UnitOfWork, name: str, scopes: list[str] | None = None) -> str:
    """Make the site if it is new and give it a new key; the key is returned once, never stored."""
    if not _SITE_NAME.match(name):
        raise InvalidInput(
            "a site name is lower-case letters, digits, dots and dashes, e.g. copernica.com"
        )
    scopes = sorted(set(scopes or SCOPES))
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown:
        raise InvalidInput(f"unknown scope {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    key = new_site_key()
    conn = uow.conn
    site_id = store.insert_site_if_new(conn, name)
    store.insert_key(conn, site_id, site_key_hash(key), site_key_label(key), scopes)
    return key


def revoke_site_keys(uow: UnitOfWork, name: str, key_prefix: str | None = None) -> int:
    """Revoke all keys of a site, or one by the prefix `identity sites list` shows."""
    return store.revoke_keys(uow.conn, name, key_prefix)


def list_site_keys(uow: UnitOfWork) -> list[dict]:
    return store.list_keys(uow.one_statement)


class RecentSiteKeys:
    """Keys found valid in the last `seconds`, by hash, in this process.

    A busy site's key is then checked against the database once per `seconds` instead of
    on every request, which is a third of the cost of a look-up. The price: a revoked key
    keeps working in each process for at most that long. Keys found invalid are not kept.
    """

    def __init__(
        self, seconds: float, max_keys: int = 1024, clock: Callable[[], float] = time.monotonic
    ):
        self.seconds = seconds
        self.max_keys = max_keys
        self.clock = clock
        self._found: dict[bytes, tuple[float, SiteCaller]] = {}

    def get(self, digest: bytes) -> SiteCaller | None:
        found = self._found.get(digest)
        if found is None or found[0] < self.clock():
            return None
        return found[1]

    def keep(self, digest: bytes, caller: SiteCaller) -> None:
        if self.seconds <= 0:
            return
        if len(self._found) >= self.max_keys:
            self._found.clear()
        self._found[digest] = (self.clock() + self.seconds, caller)


def authenticate_site(uow: UnitOfWork, key: str, scope: str, recent: RecentSiteKeys) -> Principal:
    """The caller behind a presented key, if the key is valid, active and has `scope`.

    The database is asked (two statements, each its own) only for a well-formed key this
    process has not found valid in the last few seconds.
    """
    if not looks_like_site_key(key):
        raise Unauthenticated("the site key is not valid or has been revoked")
    digest = site_key_hash(key)
    caller = recent.get(digest)
    if caller is None:
        conn = uow.one_statement
        row = store.find_active_key(conn, digest)
        if row is None:
            raise Unauthenticated("the site key is not valid or has been revoked")
        if row["last_used_stale"]:
            store.touch_key(conn, row["id"])
        caller = SiteCaller(row["site_id"], row["site_name"], row["id"], frozenset(row["scopes"]))
        recent.keep(digest, caller)
    principal = Principal(site=caller)
    principal.require_scope(scope)
    return principal
