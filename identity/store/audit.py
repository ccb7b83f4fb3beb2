"""SQL for the audit trail (`audit_events`, append-only): appending a unit's entries in one
statement, and reading it back by person, actor and time, newest first."""

from datetime import datetime
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

COLUMNS = (
    "event",
    "actor",
    "actor_id",
    "subject_id",
    "site",
    "key_prefix",
    "client_ip",
    "reason",
    "details",
)

# One row per entry, from arrays: one statement however many. An entry about a record
# erased meanwhile keeps no dangling id (the subject and actor are looked up, not trusted).
_APPEND = """
    insert into audit_events (event, actor, actor_id, subject_id, site, key_prefix, client_ip,
                              reason, details)
    select e.event, e.actor,
           (select id from users where id = e.actor_id),
           (select id from users where id = e.subject_id),
           e.site, e.key_prefix, e.client_ip, e.reason, e.details
    from unnest(%s::text[], %s::text[], %s::uuid[], %s::uuid[], %s::text[], %s::text[],
                %s::inet[], %s::text[], %s::jsonb[])
         as e(event, actor, actor_id, subject_id, site, key_prefix, client_ip, reason, details)
"""


def append(conn: psycopg.Connection, entries: list[dict]) -> None:
    """Append `entries` (dicts of COLUMNS) to the trail, in the order given."""
    columns = [[entry[column] for entry in entries] for column in COLUMNS]
    columns[-1] = [Jsonb(details) for details in columns[-1]]
    conn.execute(_APPEND, columns)


def page(
    conn: psycopg.Connection,
    *,
    subject_id: UUID | None,
    actor_id: UUID | None,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> list[dict]:
    """Up to `limit` events, newest first, older than event `before_id` (the page's key),
    of one person (`subject_id`) and/or by one actor, in [since, until)."""
    return conn.execute(
        """
        select id, at, recorded_at, event, actor, actor_id, subject_id, site, key_prefix,
               host(client_ip) as client_ip, reason, details
        from audit_events
        where (%(subject)s::uuid is null or subject_id = %(subject)s)
          and (%(actor)s::uuid is null or actor_id = %(actor)s)
          and (%(since)s::timestamptz is null or at >= %(since)s)
          and (%(until)s::timestamptz is null or at < %(until)s)
          and (%(before)s::bigint is null or id < %(before)s)
        order by id desc
        limit %(limit)s
        """,
        {
            "subject": subject_id,
            "actor": actor_id,
            "since": since,
            "until": until,
            "before": before_id,
            "limit": limit,
        },
    ).fetchall()
