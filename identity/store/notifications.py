"""SQL for the signed-in person's notification settings (apart from newsletters)."""

from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb


def settings(conn: psycopg.Connection, user_id: UUID) -> list[dict]:
    """The settings the person changed: (dashboard, event, channels)."""
    return conn.execute(
        "select dashboard, event, channels from notification_settings where user_id = %(user_id)s",
        {"user_id": user_id},
    ).fetchall()


def save(conn: psycopg.Connection, user_id: UUID, changes: list[tuple[str, str, list[str]]]):
    if not changes:
        return
    conn.execute(
        """
        insert into notification_settings (user_id, dashboard, event, channels)
        select %(user_id)s, d, e, array(select jsonb_array_elements_text(c))
        from unnest(%(dashboards)s::text[], %(events)s::text[], %(channels)s::jsonb[]) as v(d, e, c)
        order by d, e
        on conflict (user_id, dashboard, event)
            do update set channels = excluded.channels, changed_at = now()
        """,
        {
            "user_id": user_id,
            "dashboards": [d for d, _, _ in changes],
            "events": [e for _, e, _ in changes],
            "channels": [Jsonb(c) for _, _, c in changes],
        },
    )
