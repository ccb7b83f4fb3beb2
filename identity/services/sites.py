"""The sites that call the service: their records (brand, sender, pages, redirect URIs,
language, the lists they manage), and issuing, revoking and checking their keys."""

import email.utils
import ipaddress
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import idna

from identity.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from identity.security.site_keys import (
    looks_like_site_key,
    new_site_key,
    site_key_hash,
    site_key_label,
)
from identity.services.contact import normalise_email
from identity.services.principal import Principal, SiteCaller
from identity.services.security_events import security_event
from identity.store import sites as store
from identity.store.transactions import UnitOfWork

# What a key may be allowed to do; a key has exactly the scopes it was given. Besides
# these, `newsletters:<list>` gives the rights of `newsletters` on that one list.
SCOPES = {
    "profiles:write": "make and add to records (POST /v1/profiles, /v1/profiles/import)",
    "users:read": "look records up (GET /v1/users)",
    "auth": "sign people up and in, and reset their passwords (POST /v1/auth/*)",
    "newsletters": "subscribe addresses, export subscribers and unsubscribe links, on every"
    " list (/v1/newsletters/*); newsletters:<list> on one list",
    "metrics": "read the service's numbers (GET /metrics), nothing else",
}
LANGUAGES = ("en", "nl")

# A domain name: dot-separated labels of letters, digits and inner dashes.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_SITE_NAME = re.compile(rf"^(?=.{{1,63}}$){_LABEL}(?:\.{_LABEL})*$")
_HOST = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_BRAND_LENGTH = 100
_URL_LENGTH = 500


@dataclass(frozen=True)
class SiteSettings:
    """What `identity sites create|update` may set; None leaves a setting as it is."""

    brand: str | None = None
    sender: str | None = None
    pages: str | None = None
    redirect_uris: list[str] | None = None
    language: str | None = None
    lists: list[str] | None = None


@dataclass(frozen=True)
class MailingSite:
    """What a person's mail needs of the site they used: which site (the courier reads
    its brand and sender as it sends), its pages for the links, its language for people
    who chose none."""

    id: UUID
    name: str
    pages: str
    language: str


def _checked_name(name: str) -> str:
    if not _SITE_NAME.match(name):
        raise InvalidInput(
            "a site name is a domain name in lower case (letters, digits, inner dashes,"
            " dots between labels), e.g. copernica.com"
        )
    return name


def _checked_scopes(uow: UnitOfWork, scopes: list[str]) -> list[str]:
    scopes = sorted(set(scopes))
    if not scopes:
        raise InvalidInput(
            f"a key needs at least one --scope; known: {', '.join(SCOPES)}, newsletters:<list>"
        )
    lists = None
    for scope in scopes:
        if scope in SCOPES:
            continue
        kind, _, newsletter = scope.partition(":")
        if kind != "newsletters" or not newsletter:
            raise InvalidInput(
                f"unknown scope {scope!r}; known: {', '.join(SCOPES)}, newsletters:<list>"
            )
        lists = lists if lists is not None else store.newsletter_keys(uow.conn)
        if newsletter not in lists:
            raise InvalidInput(
                f"unknown list {newsletter!r} in scope {scope!r}; lists: {', '.join(sorted(lists))}"
            )
    return scopes


def _one_line(value: str, what: str, length: int) -> str:
    value = value.strip()
    if not value or len(value) > length:
        raise InvalidInput(f"{what} is 1 to {length} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs") for ch in value):
        raise InvalidInput(f"{what} is one line of visible text (no control characters)")
    return value


def checked_sender(sender: str) -> str:
    """One address, with or without a name: "Copernica <news@copernica.com>". The address
    as relays take it from any sender: an ASCII local part, an IDN domain in its xn-- form
    (mail from a non-ASCII address needs SMTPUTF8 at every relay on the way)."""
    sender = _one_line(sender, "--sender", 320)
    found = email.utils.getaddresses([sender])
    if len(found) != 1 or not found[0][1]:
        raise InvalidInput('--sender is one address, as "Name <address>" or "address"')
    name, address = found[0]
    if any(ch in name for ch in "<>@"):
        raise InvalidInput("--sender's name holds no <, > or @: it must not look like an address")
    local, _, domain = normalise_email(address, "sender").rpartition("@")
    if not local.isascii():
        raise InvalidInput("--sender's address before the @ is ASCII, so every relay takes it")
    try:
        domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        raise InvalidInput(f"--sender's domain {domain!r} is not a domain name") from None
    address = f"{local}@{domain}"
    return email.utils.formataddr((name, address)) if name else address


def checked_url(url: str, what: str, *, production: bool, base: bool) -> str:
    """An absolute http(s) URL with a host name or IP address: https in production; no
    userinfo, fragment or wildcard; a page base (`base`) also no query, and without its
    trailing slash. The scheme and host in lower case, as they are compared."""
    url = _one_line(url, what, _URL_LENGTH)
    if any(ch.isspace() or ch in "<>\"'\\" for ch in url) or not url.isascii():
        raise InvalidInput(f"{what} must be written in ASCII without spaces, quotes or <>")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput(f"{what} is not a URL: {url!r}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput(f"{what} must be an absolute http(s) URL, e.g. https://www.example.com")
    if production and parts.scheme != "https":
        raise InvalidInput(f"{what} must be https in production")
    if "@" in parts.netloc:
        raise InvalidInput(f"{what} must not hold a user name or password")
    if "#" in url:
        raise InvalidInput(f"{what} must not have a fragment (#...)")
    if "*" in url:
        raise InvalidInput(f"{what} must not hold a wildcard: name each URL exactly")
    if not _is_host(parts.hostname):
        raise InvalidInput(f"{what} has no valid host name: {parts.hostname!r}")
    if port == 0:
        raise InvalidInput(f"{what} has no port 0")
    netloc = parts.netloc.lower()
    if base:
        if "?" in url:
            raise InvalidInput(f"{what} must not have a query (?...): the paths go after it")
        return urlunsplit((parts.scheme, netloc, parts.path, "", "")).rstrip("/")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _is_host(host: str) -> bool:
    """A DNS name of valid labels, or an IP address (urlsplit has taken IPv6's brackets)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST.match(host)) and len(host) <= 253


def _checked_settings(settings: SiteSettings, production: bool) -> dict:
    """The settings as columns of the site, each checked."""
    fields = {}
    if settings.brand is not None:
        fields["brand"] = _one_line(settings.brand, "--brand", _BRAND_LENGTH)
    if settings.sender is not None:
        fields["sender"] = checked_sender(settings.sender)
    if settings.pages is not None:
        fields["pages_url"] = checked_url(
            settings.pages, "--pages", production=production, base=True
        )
    if settings.redirect_uris is not None:
        uris = [
            checked_url(uri, "--redirect-uri", production=production, base=False)
            for uri in settings.redirect_uris
        ]
        fields["redirect_uris"] = list(dict.fromkeys(uris))
    if settings.language is not None:
        if settings.language not in LANGUAGES:
            raise InvalidInput(f"--language is one of {', '.join(LANGUAGES)}")
        fields["language"] = settings.language
    return fields


def _manage_lists(uow: UnitOfWork, site_id: UUID, lists: list[str] | None) -> None:
    if lists is None:
        return
    unknown = store.manage_lists(uow.conn, site_id, list(dict.fromkeys(lists)))
    if unknown:
        known = ", ".join(sorted(store.newsletter_keys(uow.conn)))
        names = ", ".join(row["key"] for row in unknown)
        raise InvalidInput(f"unknown list {names}; lists: {known}")


def create_site(
    uow: UnitOfWork,
    name: str,
    scopes: list[str],
    settings: SiteSettings = SiteSettings(),
    *,
    production: bool = False,
) -> str:
    """Make site `name` with `settings` and give it a key with exactly `scopes`; for a site
    that exists, only another key (its settings change with `update_site`, said out loud,
    never by a second create). The key is returned once, never stored."""
    name = _checked_name(name)
    scopes = _checked_scopes(uow, scopes)
    fields = _checked_settings(settings, production)
    conn = uow.conn
    site_id = store.insert_site(conn, name, fields)
    if site_id is None:
        if fields or settings.lists is not None:
            raise InvalidInput(
                f"the site {name} exists: change its settings with `identity sites update"
                f" {name} ...`; `identity sites create {name} --scope ...` alone gives it"
                " another key"
            )
        site_id = store.site_id(conn, name)
    _manage_lists(uow, site_id, settings.lists)
    key = new_site_key()
    store.insert_key(conn, site_id, site_key_hash(key), site_key_label(key), scopes)
    security_event("site_key.issued", site=name, key_prefix=site_key_label(key), scopes=scopes)
    return key


def update_site(
    uow: UnitOfWork, name: str, settings: SiteSettings, *, production: bool = False
) -> None:
    """Set `settings` on site `name` (a list given replaces the one it had)."""
    fields = _checked_settings(settings, production)
    site_id = store.update_site(uow.conn, _checked_name(name), fields)
    if site_id is None:
        raise NotFound(f"no site {name}; make it with `identity sites create {name}`")
    _manage_lists(uow, site_id, settings.lists)


def describe_sites(uow: UnitOfWork, name: str | None = None) -> list[dict]:
    """Every site (or the one named) as `identity sites list|show` print it."""
    found = [
        _described(site)
        for site in store.all_sites(uow.one_statement)
        if name is None or site["name"] == name
    ]
    if name is not None and not found:
        raise NotFound(f"no site {name}")
    return found


def _described(site: dict) -> dict:
    return {
        "name": site["name"],
        "brand": site["brand"] or site["name"],
        "sender": site["sender"],
        "pages": site["pages_url"],
        "redirect_uris": site["redirect_uris"],
        "language": site["language"],
        "lists": site["lists"],
        "keys": site["keys"],
        # RFC 3339, as the keys' times (which PostgreSQL's JSON writes) are.
        "created_at": site["created_at"].isoformat(),
        "updated_at": site["updated_at"].isoformat(),
    }


def mailing_site(uow: UnitOfWork, principal: Principal) -> MailingSite:
    """The site whose person this request would mail: the calling site, or the one a
    signed-in person used. A 409 naming the setting when it has no pages, so a flow that
    mails is refused before it writes anything, rather than sending a dead link."""
    if principal.site is not None:
        site = principal.site
        found = MailingSite(site.site_id, site.site_name, site.pages or "", site.language)
    elif principal.user is not None:
        row = store.mailing_site(uow.one_statement, principal.user.site_name)
        if row is None:
            raise Conflict(f"the site {principal.user.site_name} is not known here any more")
        found = MailingSite(row["id"], row["name"], row["pages_url"] or "", row["language"])
    else:
        raise Conflict("an unsubscribe link does not mail anyone")
    if not found.pages:
        raise Conflict(
            f"the site {found.name} has no pages URL, so its mails would carry no link:"
            f" set it with `identity sites update {found.name} --pages https://...`"
        )
    return found


def revoke_site_keys(uow: UnitOfWork, name: str, key_prefix: str | None = None) -> int:
    """Revoke all keys of a site, or one: by the prefix `identity sites list` shows, or by
    the whole key (what an operator holds when one has leaked)."""
    if key_prefix is not None and looks_like_site_key(key_prefix):
        key_prefix = site_key_label(key_prefix)
    count = store.revoke_keys(uow.conn, name, key_prefix)
    if count:
        security_event("site_key.revoked", site=name, key_prefix=key_prefix, count=count)
    return count


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
        caller = SiteCaller(
            row["site_id"],
            row["site_name"],
            row["id"],
            frozenset(row["scopes"]),
            row["pages_url"],
            row["language"],
            site_key_label(key),
        )
        recent.keep(digest, caller)
    principal = Principal(site=caller)
    principal.require_scope(scope)
    return principal
