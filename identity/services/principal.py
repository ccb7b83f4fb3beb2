"""Who is calling: one value, set by the guards of the HTTP face and passed to services."""

from dataclasses import dataclass, field, replace
from datetime import datetime
from uuid import UUID

from identity.errors import Forbidden


@dataclass(frozen=True)
class Browser:
    """The person's browser (or mail client) as the request reached us: what a site passes
    on in the body (`client_ip`, `user_agent`), or the client itself at a link."""

    client_ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class SiteCaller:
    """The site a request comes from, as its key proves; with where its pages are and the
    language of its mails, read with the key (so as fresh as the key: a few seconds); and
    the key's prefix, the part of it that logs may show."""

    site_id: UUID
    site_name: str
    key_id: UUID
    scopes: frozenset[str]
    pages: str | None = None
    language: str = "en"
    key_prefix: str | None = None

    def may_manage(self, newsletter: str) -> bool:
        """Whether the key may act on list `newsletter`: `newsletters` (every list) or
        `newsletters:<list>`."""
        return "newsletters" in self.scopes or f"newsletters:{newsletter}" in self.scopes


@dataclass(frozen=True)
class UserCaller:
    """A signed-in person, as their access token proves: through which site, in which
    sign-in (session), since when; and their record, read when the sign-in was found live."""

    user_id: UUID
    site_name: str
    session_id: UUID
    issued_at: datetime
    record: dict | None = field(default=None, compare=False, repr=False)

    @property
    def staff_role(self) -> str | None:
        """Their staff role (`support`, `dpo`, `admin`), when they have one and this
        sign-in was made with the authenticator app's code (a recovery code gets them into
        their account, not into staff work), the factor still on; else None."""
        return (self.record or {}).get("staff_role")

    @property
    def acting_staff_id(self) -> UUID | None:
        """The staff member acting as this person (an impersonation's sign-in), if any."""
        return (self.record or {}).get("impersonated_by")


@dataclass(frozen=True)
class LinkHolder:
    """Whoever holds an unsubscribe link: it names one person and one list, and lets its
    holder read that person's flags and leave lists, nothing more."""

    user_id: UUID
    list_id: int


@dataclass(frozen=True)
class Principal:
    """The caller of one request: exactly one of a site with its key's scopes, a signed-in
    person (whose sign-in the guard found live), or the holder of an unsubscribe link;
    with what is known of the person's browser. A staff member and an impersonation (a
    staff member acting as a person) join these when the capabilities that need them land."""

    site: SiteCaller | None = None
    user: UserCaller | None = None
    link: LinkHolder | None = None
    browser: Browser = Browser()

    def __post_init__(self):
        if sum(part is not None for part in (self.site, self.user, self.link)) != 1:
            raise ValueError("a Principal is exactly one of a site, a person, a link holder")

    @property
    def site_name(self) -> str | None:
        """The site that gets the credit in `field_sources` and in the trail; none for
        the holder of an unsubscribe link."""
        if self.site:
            return self.site.site_name
        return self.user.site_name if self.user else None

    def with_browser(self, browser: Browser) -> "Principal":
        return replace(self, browser=browser)

    def has_scope(self, scope: str) -> bool:
        """Whether the caller is a site whose key has `scope` (exactly that one)."""
        return self.site is not None and scope in self.site.scopes

    def require_scope(self, scope: str) -> None:
        """A key with `scope`; for `newsletters`, one with the right to some list (each
        list endpoint then asks `require_list`)."""
        scopes = self.site.scopes if self.site else frozenset()
        if scope in scopes:
            return
        if scope == "newsletters" and any(s.startswith("newsletters:") for s in scopes):
            return
        raise Forbidden(f"this site key lacks the scope {scope!r}")

    def require_list(self, newsletter: str) -> None:
        """A site key that may manage list `newsletter` (403 otherwise). A signed-in person
        and a link holder act on their own flags, which their guards already bound."""
        if self.site is not None and not self.site.may_manage(newsletter):
            raise Forbidden(
                f"this site key may not manage the list {newsletter!r}"
                f" (it needs the scope 'newsletters' or 'newsletters:{newsletter}')"
            )
