"""SQL for the mail outbox, and for the couriers that deliver it (each alive while it
beats its row in `couriers`)."""

from datetime import datetime
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from identity.store.transactions import NO_DISK_WAIT

_COLUMNS = (
    "id, message_uuid, template, recipient, language, status, attempts, next_attempt_at,"
    " last_error, created_at, sent_at, failed_at"
)


def insert(
    conn: psycopg.Connection,
    template: str,
    recipient: str,
    language: str,
    values: dict,
    site_id: UUID | None = None,
) -> int:
    """A queued mail, sent as site `site_id` (None: the service's own)."""
    row = conn.execute(
        """
        insert into outbox (template, recipient, language, mail_values, site_id)
        values (%(template)s, %(recipient)s, %(language)s, %(values)s, %(site_id)s)
        returning id
        """,
        {
            "template": template,
            "recipient": recipient,
            "language": language,
            "values": Jsonb(values),
            "site_id": site_id,
        },
    ).fetchone()
    return row["id"]


def claim_due(
    conn: psycopg.Connection,
    courier: UUID,
    limit: int,
    lease_seconds: float,
    only_id: int | None = None,
) -> list[dict]:
    """Claim due mails for `courier`, oldest first, in one statement that commits at once:
    each becomes `sending` and due again when the lease ends (`next_attempt_at`), unless
    its outcome is recorded first. Due: queued mails whose time has come, and mails whose
    courier's lease ran out (it died, or froze). Rows another courier is claiming are
    skipped, so no two take the same mail.

    Each with its site as it is now (`site_name`, `brand`, `sender`, `pages_url`; all
    null for a mail without a site): a mail goes out in the site's branding of the moment
    it is sent, so a site's new sender or pages count for the mails still queued."""
    return conn.execute(
        """
        with due as (
            select id, next_attempt_at as due_at from outbox
            where status in ('queued', 'sending') and next_attempt_at <= now()
              and (%(only_id)s::bigint is null or id = %(only_id)s)
            order by next_attempt_at, id
            limit %(limit)s
            for update skip locked
        ), claimed as (
            update outbox o set
                status = 'sending',
                claimed_by = %(courier)s,
                next_attempt_at = now() + make_interval(secs => %(lease)s)
            from due where o.id = due.id
            returning o.id, o.message_uuid, o.template, o.recipient, o.language, o.attempts,
                      o.created_at, o.mail_values, o.site_id, due.due_at
        )
        select c.*, s.name as site_name, s.brand, s.sender, s.pages_url
        from claimed c left join sites s on s.id = c.site_id
        order by c.due_at, c.id
        """,
        {"limit": limit, "only_id": only_id, "courier": courier, "lease": lease_seconds},
    ).fetchall()


def record_outcome(conn: psycopg.Connection, courier: UUID, outcome: dict) -> bool:
    """One mail's outcome, as soon as the relay has answered: `sent` (its values cleared),
    `failed`, or `queued` again for `next_attempt_at`, with the relay's answer. Only while
    `courier` still holds the claim: False when its lease had run out and another courier
    took the mail meanwhile (that one's outcome counts).

    Committed without waiting for the disk, as a login's writes are: one flush a mail cost
    more than the rest of its delivery. A crash of PostgreSQL itself (not of a courier)
    may forget the last fraction of a second of outcomes, and those mails go out again."""
    return (
        conn.execute(
            f"""
            with {NO_DISK_WAIT}
            update outbox set
                status = %(status)s::text,
                attempts = attempts + 1,
                next_attempt_at = coalesce(%(next_attempt_at)s, next_attempt_at),
                last_error = %(error)s,
                mail_values = case when %(status)s::text = 'sent' or (%(status)s::text = 'failed'
                                       and mail_values ? 'token') then null
                                   else mail_values end,
                sent_at = case when %(status)s::text = 'sent' then now() end,
                failed_at = case when %(status)s::text = 'failed' then now() end,
                claimed_by = null
            from no_disk_wait
            where id = %(id)s and status = 'sending' and claimed_by = %(courier)s
            """,  # noqa: S608 - a fixed fragment
            {
                "id": outcome["id"],
                "status": outcome["status"],
                "next_attempt_at": outcome.get("next_attempt_at"),
                "error": outcome.get("error"),
                "courier": courier,
            },
        ).rowcount
        == 1
    )


def release(conn: psycopg.Connection, courier: UUID) -> int:
    """Hand back what `courier` claimed and has no outcome for (a batch cut short by a
    stop, or by a lost connection): queued and due now, not counted as a try. How many."""
    return conn.execute(
        """
        update outbox set status = 'queued', next_attempt_at = now(), claimed_by = null
        where status = 'sending' and claimed_by = %(courier)s
        """,
        {"courier": courier},
    ).rowcount


def give_up(conn: psycopg.Connection, mail_id: int) -> None:
    """Mark a queued mail failed now, keeping the relay's last answer (a check of the
    settings that did not go through is not for another worker to send later)."""
    conn.execute(
        """
        update outbox set status = 'failed', failed_at = now(), next_attempt_at = now(),
                          mail_values = case when mail_values ? 'token' then null
                                             else mail_values end
        where id = %(id)s and status = 'queued'
        """,
        {"id": mail_id},
    )


def next_due(conn: psycopg.Connection) -> datetime | None:
    """When the next mail falls due: a queued one's time, or a claim's lease end."""
    row = conn.execute(
        "select min(next_attempt_at) as at from outbox where status in ('queued', 'sending')"
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
    """Queue a failed mail again, now; its status before (None: no such mail; `cleared`:
    a failed mail whose single-use link was cleared when it failed, which stays so)."""
    row = conn.execute(
        """
        with before as (select id, case when status = 'failed' and mail_values is null
                                        then 'cleared' else status end as status
                        from outbox where id = %(id)s for update)
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


def beat(conn: psycopg.Connection, courier: UUID, pid: int, host: str, alive_seconds: float):
    """`courier` is alive for `alive_seconds` more (its row made on the first beat)."""
    conn.execute(
        """
        insert into couriers (id, pid, host, alive_until)
        values (%(id)s, %(pid)s, %(host)s, now() + make_interval(secs => %(alive)s))
        on conflict (id) do update set beat_at = now(), alive_until = excluded.alive_until
        """,
        {"id": courier, "pid": pid, "host": host, "alive": alive_seconds},
    )


def leave(conn: psycopg.Connection, courier: UUID) -> None:
    """`courier` stops: its row goes, and any courier that died more than a day ago with it."""
    conn.execute(
        "delete from couriers where id = %(id)s or alive_until < now() - interval '1 day'",
        {"id": courier},
    )


def delivery_state(conn: psycopg.Connection) -> dict:
    """`couriers`: how many are alive; `oldest_due_seconds`: how long the mail that has
    waited longest for a courier has been due (a queued mail since its time came, a
    claimed one since its lease ran out; None when none waits)."""
    return conn.execute(
        """
        select
            (select count(*) from couriers where alive_until > now()) as couriers,
            extract(epoch from now() - (
                select min(next_attempt_at) from outbox
                where status in ('queued', 'sending') and next_attempt_at <= now()
            ))::float8 as oldest_due_seconds
        """
    ).fetchone()


def backlog(conn: psycopg.Connection) -> dict:
    """What waits in the outbox, for a scrape: mails `queued` (due or waiting for a retry)
    and `sending` (claimed), `oldest_due_seconds` as in delivery_state (0 when none waits),
    and the `couriers` alive. One statement; it reads only the unfinished mails (the
    outbox_due index), never the sent ones."""
    return conn.execute(
        """
        select
            count(*) filter (where status = 'queued') as queued,
            count(*) filter (where status = 'sending') as sending,
            coalesce(extract(epoch from now() - min(next_attempt_at)
                filter (where next_attempt_at <= now())), 0)::float8 as oldest_due_seconds,
            (select count(*) from couriers where alive_until > now()) as couriers
        from outbox
        where status in ('queued', 'sending')
        """
    ).fetchone()
