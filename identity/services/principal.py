"""Who is calling: one value, set by the guards of the HTTP face and passed to services."""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from identity.errors import Forbidden


@dataclass(frozen=True)
class SiteCaller:
    """The site a request comes from, as its key proves."""

    site_id: UUID
    site_name: str
    key_id: UUID
    scopes: frozenset[str]


@dataclass(frozen=True)
class UserCaller:
    """A signed-in person, as their access token proves: through which site, in which
    sign-in (session), since when."""

    user_id: UUID
    site_name: str
    session_id: UUID
    issued_at: datetime


@dataclass(frozen=True)
class Principal:
    """The caller of one request: a site with its key's scopes, or a signed-in person.
    A staff member and an impersonation (a staff member acting as a person) join these
    when the capabilities that need them land."""

    site: SiteCaller | None = None
    user: UserCaller | None = None

    @property
    def site_name(self) -> str:
        """The site that gets the credit in `field_sources` and in the trail."""
        return self.site.site_name if self.site else self.user.site_name

    def require_scope(self, scope: str) -> None:
        if self.site is None or scope not in self.site.scopes:
            raise Forbidden(f"this site key lacks the scope {scope!r}")
