"""The service's own mail: queued in the outbox in the caller's transaction, delivered by
`identity mail deliver` (identity.mail.courier) over SMTP, each as the site it is sent for."""

from typing import Protocol
from uuid import UUID

import psycopg

from identity.mail.render import LANGUAGES, TEMPLATES
from identity.store import outbox


class Sending(Protocol):
    """The site a person's mail goes out as (identity.services.sites.MailingSite): its id,
    whose brand, sender and pages the courier reads as it sends, and its language for
    people who chose none."""

    id: UUID
    language: str


def enqueue(
    conn: psycopg.Connection,
    template: str,
    to: str,
    language: str | None = None,
    site: Sending | None = None,
    **values,
) -> int:
    """Queue mail `template` to `to`, filled with `values`, in the caller's transaction: a
    change that rolls back sends nothing, a change that commits is never lost. It goes
    out as `site` (None: the service's own mail, from IDENTITY_MAIL_FROM, without links),
    in `language`, the person's; else the site's; else en. Its outbox id."""
    if template not in TEMPLATES:
        raise ValueError(f"no mail template {template!r}")
    site_id = site.id if site is not None else None
    return outbox.insert(conn, template, to, _language(language, site), values, site_id)


def _language(language: str | None, site: Sending | None) -> str:
    for choice in (language, site.language if site else None):
        if choice in LANGUAGES:
            return choice
    return LANGUAGES[0]
