"""Site keys for tests, issued and committed as `identity sites create` does."""

import psycopg

from identity.services.sites import SCOPES, SiteSettings, create_site, update_site
from identity.store import sites as store
from identity.store.transactions import UnitOfWork
from schemas.newsletters import NEWSLETTER_KEYS

# `lists=EVERY_LIST`: the site manages every list, so each has a preferences page on its
# pages (and links and the export can be made).
EVERY_LIST = list(NEWSLETTER_KEYS)


def site_key_for(
    conn: psycopg.Connection,
    name: str,
    scopes: list[str] | None = None,
    pages: str | None = None,
    **settings,
) -> str:
    """A new key of site `name` (every scope unless told), written in its own unit of work
    on `conn` (a savepoint inside a test's transaction, committed on a committing
    connection). The site's pages are https://NAME unless told, so its mails have links;
    an existing site is updated with what is given first, then given the key."""
    uow = UnitOfWork.of(conn)
    site = SiteSettings(pages=pages or f"https://{name}", **settings)

    def made() -> str:
        if store.site_id(uow.conn, name) is None:
            return create_site(uow, name, list(scopes or SCOPES), site)
        update_site(uow, name, site)
        return create_site(uow, name, list(scopes or SCOPES))

    return uow.run(made)
