"""Who is calling: one value, set by the guards of the HTTP face and passed to services."""

from dataclasses import dataclass
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
class Principal:
    """The caller of one request. Today always a site with its key's scopes; a signed-in
    user, a staff member and an impersonation (a staff member acting as a user) join it
    as the capabilities that need them land."""

    site: SiteCaller

    @property
    def site_name(self) -> str:
        """The site that gets the credit in `field_sources` and in the trail."""
        return self.site.site_name

    def require_scope(self, scope: str) -> None:
        if scope not in self.site.scopes:
            raise Forbidden(f"this site key lacks the scope {scope!r}")
