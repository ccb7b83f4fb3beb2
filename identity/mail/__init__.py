"""The service's own mail: queued in the outbox in the caller's transaction, delivered by
`identity mail deliver` (identity.mail.courier) over SMTP."""

import psycopg

from identity.mail.render import LANGUAGES, TEMPLATES
from identity.store import outbox


def enqueue(
    conn: psycopg.Connection, template: str, to: str, language: str | None = None, **values
) -> int:
    """Queue mail `template` to `to` in `language` (en when the person has none), filled
    with `values`, in the caller's transaction: a change that rolls back sends nothing, a
    change that commits is never lost. Its outbox id."""
    if template not in TEMPLATES:
        raise ValueError(f"no mail template {template!r}")
    language = language if language in LANGUAGES else LANGUAGES[0]
    return outbox.insert(conn, template, to, language, values)
