"""SQL for the mail outbox."""

from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

_COLUMNS = (
    "id, message_uuid, template, recipient, language, status, attempts, next_attempt_at,"
    " last_error, created_at, sent_at, failed_at"
)


def insert(
    conn: psycopg.Connection, template: str, recipient: str, language: str, values: dict
) -> int:
    row = conn.execute(
        """
        insert into outbox (template, recipient, language, mail_values)
        values (%(template)s, %(recipient)s, %(language)s, %(values)s)
        returning id
        """,
        {
            "template": template,
            "recipient": recipient,
            "language": language,
            "values": Jsonb(values),
        },
    ).fetchone()
    return row["id"]


def claim_due(conn: psycopg.Connection, limit: int, only_id: int | None = None) -> list[dict]:
    """Queued mails whose time has come, oldest first, locked until the transaction ends;
    rows another worker holds are skipped, so workers never take the same mail."""
    return conn.execute(
        f"""
        select {_COLUMNS}, mail_values from outbox
        where status = 'queued' and next_attempt_at <= now()
          and (%(only_id)s::bigint is null or id = %(only_id)s)
        order by next_attempt_at, id
        limit %(limit)s
        for update skip locked
        """,  # noqa: S608 - fixed column list
        {"limit": limit, "only_id": only_id},
    ).fetchall()


def record_outcomes(conn: psycopg.Connection, outcomes: list[dict]) -> None:
    """One statement for a batch: each mail `sent` (its values cleared), `failed`, or
    `queued` again for `next_attempt_at`, with the relay's answer."""
    if not outcomes:
        return
    conn.execute(
        """
        update outbox o set
            status = v.status,
            attempts = o.attempts + 1,
            next_attempt_at = coalesce(v.next_attempt_at, o.next_attempt_at),
            last_error = v.error,
            mail_values = case when v.status = 'sent' then null else o.mail_values end,
            sent_at = case when v.status = 'sent' then now() end,
            failed_at = case when v.status = 'failed' then now() end
        from unnest(%(ids)s::bigint[], %(statuses)s::text[], %(next)s::timestamptz[],
                    %(errors)s::text[]) as v(id, status, next_attempt_at, error)
        where o.id = v.id
        """,
        {
            "ids": [o["id"] for o in outcomes],
            "statuses": [o["status"] for o in outcomes],
            "next": [o.get("next_attempt_at") for o in outcomes],
            "errors": [o.get("error") for o in outcomes],
        },
    )


def give_up(conn: psycopg.Connection, mail_id: int) -> None:
    """Mark a queued mail failed now, keeping the relay's last answer (a check of the
    settings that did not go through is not for another worker to send later)."""
    conn.execute(
        """
        update outbox set status = 'failed', failed_at = now(), next_attempt_at = now()
        where id = %(id)s and status = 'queued'
        """,
        {"id": mail_id},
    )


def next_due(conn: psycopg.Connection) -> datetime | None:
    row = conn.execute(
        "select min(next_attempt_at) as at from outbox where status = 'queued'"
    ).fetchone()
    return row["at"]


def list_mails(conn: psycopg.Connection, *, failed_only: bool, limit: int) -> list[dict]:
    return conn.execute(
        f"""
        select {_COLUMNS} from outbox
        where not %(failed_only)s or status = 'failed'
        order by id desc limit %(limit)s
        """,  # noqa: S608 - fixed column list
        {"failed_only": failed_only, "limit": limit},
    ).fetchall()


def requeue(conn: psycopg.Connection, mail_id: int) -> str | None:
    """Queue a failed mail again, now; its status before (None: no such mail)."""
    row = conn.execute(
        """
        with before as (select id, status from outbox where id = %(id)s for update)
        update outbox o set
            status = case when before.status = 'failed' then 'queued' else o.status end,
            next_attempt_at = case when before.status = 'failed' then now()
                                   else o.next_attempt_at end,
            failed_at = case when before.status = 'failed' then null else o.failed_at end,
            attempts = case when before.status = 'failed' then 0 else o.attempts end
        from before where o.id = before.id
        returning before.status
        """,
        {"id": mail_id},
    ).fetchone()
    return row["status"] if row else None


def get(conn: psycopg.Connection, mail_id: int) -> dict | None:
    return conn.execute(
        f"select {_COLUMNS} from outbox where id = %(id)s",  # noqa: S608 - fixed column list
        {"id": mail_id},
    ).fetchone()
