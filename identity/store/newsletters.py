"""SQL for newsletters: the catalog, the flags, the consent events, the double opt-in
confirmations and the export of a list's subscribers.

The rule every writer here keeps: a flag changes only together with the consent event
that records the change, in one statement or in the caller's transaction.

A person's record is locked `for no key update` (as everywhere in the service), never
`for update`: the foreign keys of a flag or an event written meanwhile take a key share
lock on the same record, which `for update` would block (a one-click held its flag
while its event's key check waited: a deadlock). Every writer of a person's flags takes
that lock before reading or writing a flag, so none overwrites another's change.
"""

from datetime import datetime
from uuid import UUID

import psycopg
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

_EVENT_COLUMNS = (
    "user_id, newsletter, action, state, at, site, client_ip, user_agent, consent_text, channel"
)


def catalog(conn: psycopg.Connection) -> list[dict]:
    return conn.execute(
        "select id, key, name, product, description, double_opt_in from newsletters order by id"
    ).fetchall()


def managing_site(conn: psycopg.Connection, newsletter: int) -> dict | None:
    """The site that manages list `newsletter` (its `name` and `pages_url`), whose pages
    hold the list's preference page; None when no site does."""
    return conn.execute(
        """
        select s.name, s.pages_url
        from newsletters n join sites s on s.id = n.site_id
        where n.id = %(newsletter)s
        """,
        {"newsletter": newsletter},
    ).fetchone()


def flags(conn: psycopg.Connection, user_id: UUID, *, lock: bool = False) -> dict[int, dict]:
    """The person's flags by list number. With `lock`, the person's record is locked
    first, until the transaction ends: every change of their flags waits for the one
    before and then reads what it wrote (flags it inserted included, which a lock on the
    flag rows alone would not see), and no two changes lock flags in opposite orders."""
    if lock:
        conn.execute(
            "select from users where id = %(user_id)s for no key update", {"user_id": user_id}
        )
    sql = "select newsletter, state, changed_at from subscriptions where user_id = %(user_id)s"
    rows = conn.execute(sql, {"user_id": user_id}).fetchall()
    return {row["newsletter"]: row for row in rows}


def set_flag(
    conn: psycopg.Connection, user_id: UUID, newsletter: int, state: str, event: dict
) -> dict:
    """Set one flag and record its consent event, in one statement; the flag as it now is."""
    return conn.execute(
        f"""
        with flag as (
            insert into subscriptions (user_id, newsletter, state)
            values (%(user_id)s, %(newsletter)s, %(state)s)
            on conflict (user_id, newsletter)
                do update set state = excluded.state, changed_at = now()
            returning newsletter, state, changed_at
        ), event as (
            insert into consent_events ({_EVENT_COLUMNS})
            values (%(user_id)s, %(newsletter)s, %(action)s, %(state)s, coalesce(%(at)s, now()),
                    %(site)s, %(client_ip)s, %(user_agent)s, %(consent_text)s, %(channel)s)
        )
        select * from flag
        """,  # noqa: S608 - fixed column list
        {"user_id": user_id, "newsletter": newsletter, "state": state, "at": None} | event,
    ).fetchone()


def unsubscribe(
    conn: psycopg.Connection, clicks: list[dict], *, skip_busy: bool = False
) -> list[dict]:
    """Unsubscribe people from one list each (`user_id`, `newsletter`, and the consent
    event's `site`, `client_ip`, `user_agent`, `consent_text`, `channel`), at once, in
    one statement (one transaction of its own; no two clicks of one person on one list):
    for each, the flag and its consent event when it was not `unsubscribed` yet, nothing
    at all when it was (no write, so repeats cost a read). A change takes the person's
    record lock first, as every writer of their flags does (`flags`): without it a
    confirmation or subscription running beside it overwrote the unsubscribe.

    With `skip_busy`, a person whose record another transaction holds is left alone
    (`busy`; run that click again without it), so the statement never waits for a lock:
    one busy person cannot hold up the others, nor deadlock with a writer that locks
    people in another order (the import locks by address). For each click in order: the
    person's address (None when the person is gone), whether the flag changed, and
    whether it was skipped as busy."""
    columns = (
        "user_id",
        "newsletter",
        "site",
        "client_ip",
        "user_agent",
        "consent_text",
        "channel",
    )
    return conn.execute(
        f"""
        with given as (
            select g.*, not exists (
                    select from subscriptions s
                    where s.user_id = g.user_id and s.newsletter = g.newsletter
                      and s.state = 'unsubscribed') as to_change
            from unnest(%(user_id)s::uuid[], %(newsletter)s::int2[], %(site)s::text[],
                        %(client_ip)s::inet[], %(user_agent)s::text[],
                        %(consent_text)s::text[], %(channel)s::text[])
                with ordinality as g({", ".join(columns)}, n)
        ), locked as (
            select id from users where id in (select user_id from given where to_change)
            order by id
            for no key update {"skip locked" if skip_busy else ""}
        ), flag as (
            insert into subscriptions (user_id, newsletter, state)
            select g.user_id, g.newsletter, 'unsubscribed' from given g join locked on id = user_id
            order by g.user_id, g.newsletter
            on conflict (user_id, newsletter) do update
                set state = 'unsubscribed', changed_at = now()
                where subscriptions.state <> 'unsubscribed'
            returning user_id, newsletter
        ), event as (
            insert into consent_events ({_EVENT_COLUMNS})
            select user_id, newsletter, 'unsubscribe', 'unsubscribed', now(),
                   g.site, g.client_ip, g.user_agent, g.consent_text, g.channel
            from given g join flag using (user_id, newsletter)
        )
        select u.email, f.user_id is not null as changed,
               g.to_change and u.id is not null
                   and not exists (select from locked where id = g.user_id) as busy
        from given g
        left join users u on u.id = g.user_id
        left join flag f using (user_id, newsletter)
        order by g.n
        """,  # noqa: S608 - fixed column list and clause
        {name: [click[name] for click in clicks] for name in columns},
        prepare=True,
    ).fetchall()


def flag_of(conn: psycopg.Connection, user_id: UUID, newsletter: int) -> dict | None:
    """The person's address and their flag on one list (state null: never subscribed)."""
    return conn.execute(
        """
        select u.email, s.state, s.changed_at
        from users u
        left join subscriptions s on s.user_id = u.id and s.newsletter = %(newsletter)s
        where u.id = %(user_id)s
        """,
        {"user_id": user_id, "newsletter": newsletter},
        prepare=True,
    ).fetchone()


def import_consents(
    conn: psycopg.Connection, site: str | None, consents: list[tuple[UUID, int, datetime, str]]
) -> list[int]:
    """Flags brought over from an existing list by `site`, subscribed with their original
    consent, each (user id, list id, consented at, consent text): only where the person
    has no flag on that list yet, so an import never turns an `unsubscribed` (nor a
    `pending`) into `subscribed`. Each flag set gets its consent event (channel `import`,
    the original time). The positions in `consents` of those it left as they were (one
    array of numbers, not a row per flag)."""
    if not consents:
        return []
    names = ("user_id", "newsletter", "at", "consent_text")
    columns = zip(names, zip(*consents, strict=True), strict=True)
    params = {name: list(values) for name, values in columns}
    return conn.execute(
        f"""
        with given as (
            select * from unnest(%(user_id)b::uuid[], %(newsletter)b::int2[],
                                 %(at)b::timestamptz[], %(consent_text)b::text[])
                with ordinality as g(user_id, newsletter, at, consent_text, n)
        ), flag as (
            insert into subscriptions (user_id, newsletter, state, changed_at)
            select user_id, newsletter, 'subscribed', now() from given
            order by user_id, newsletter
            on conflict (user_id, newsletter) do nothing
            returning user_id, newsletter
        ), event as (
            insert into consent_events ({_EVENT_COLUMNS})
            select g.user_id, g.newsletter, 'subscribe', 'subscribed', g.at,
                   %(site)s, null, null, g.consent_text, 'import'
            from given g join flag using (user_id, newsletter)
        )
        select coalesce(array_agg(g.n - 1), '{{}}') as kept
        from given g left join flag f using (user_id, newsletter)
        where f.user_id is null
        """,  # noqa: S608 - fixed column list
        params | {"site": site},
    ).fetchone()["kept"]


def consent_events(conn: psycopg.Connection, user_id: UUID) -> list[dict]:
    return conn.execute(
        """
        select e.id, n.key as newsletter, e.action, e.state, e.at, e.site,
               host(e.client_ip) as client_ip, e.user_agent, e.consent_text, e.channel
        from consent_events e join newsletters n on n.id = e.newsletter
        where e.user_id = %(user_id)s order by e.id
        """,
        {"user_id": user_id},
    ).fetchall()


# --- double opt-in -----------------------------------------------------------------------


def insert_confirmation(
    conn: psycopg.Connection,
    token_hash: bytes,
    user_id: UUID,
    newsletter: int,
    consent: dict,
    expires_at: datetime,
) -> None:
    conn.execute(
        """
        insert into newsletter_confirmations (token_hash, user_id, newsletter, consent, expires_at)
        values (%(hash)s, %(user_id)s, %(newsletter)s, %(consent)s, %(expires_at)s)
        """,
        {
            "hash": token_hash,
            "user_id": user_id,
            "newsletter": newsletter,
            "consent": Jsonb(consent),
            "expires_at": expires_at,
        },
    )


def confirmations_since(
    conn: psycopg.Connection, user_id: UUID, newsletter: int, seconds: int
) -> int:
    return conn.execute(
        """
        select count(*) as n from newsletter_confirmations
        where user_id = %(user_id)s and newsletter = %(newsletter)s
          and created_at > now() - make_interval(secs => %(seconds)s)
        """,
        {"user_id": user_id, "newsletter": newsletter, "seconds": seconds},
    ).fetchone()["n"]


def take_confirmation(conn: psycopg.Connection, token_hash: bytes) -> dict | None:
    """Spend a live confirmation token: its person, list and consent; None when it is
    unknown, spent or expired. Of two uses at once, the second finds it spent."""
    return conn.execute(
        """
        update newsletter_confirmations set used_at = now()
        where token_hash = %(hash)s and used_at is null and expires_at > now()
        returning user_id, newsletter, consent, created_at,
                  (select u.email_key from users u where u.id = user_id) as email_key
        """,
        {"hash": token_hash},
    ).fetchone()


def left_since(conn: psycopg.Connection, user_id: UUID, newsletter: int, since) -> bool:
    """Whether the person left this list (an unsubscribe event) after `since`."""
    row = conn.execute(
        """
        select exists (
            select from consent_events
            where user_id = %(user_id)s and newsletter = %(newsletter)s
              and action = 'unsubscribe' and recorded_at > %(since)s
        ) as left
        """,
        {"user_id": user_id, "newsletter": newsletter, "since": since},
    ).fetchone()
    return row["left"]


# --- links in bulk -------------------------------------------------------------------------


def users_by_email_key(
    conn: psycopg.Connection, keys: list[str], subscribed_to: int | None = None
) -> dict[str, dict]:
    """The records with these address keys; with a list's id, only its subscribers."""
    rows = conn.execute(
        """
        select u.id, u.email, u.email_key from users u
        where u.email_key = any(%(keys)b)
          and (%(list)s::smallint is null or exists (
              select from subscriptions s
              where s.user_id = u.id and s.newsletter = %(list)s and s.state = 'subscribed'))
        """,
        {"keys": keys, "list": subscribed_to},
    ).fetchall()
    return {row["email_key"]: row for row in rows}


def users_by_id(
    conn: psycopg.Connection, ids: list[UUID], subscribed_to: int | None = None
) -> dict[UUID, dict]:
    """The records with these ids; with a list's id, only its subscribers."""
    rows = conn.execute(
        """
        select u.id, u.email from users u
        where u.id = any(%(ids)b::uuid[])
          and (%(list)s::smallint is null or exists (
              select from subscriptions s
              where s.user_id = u.id and s.newsletter = %(list)s and s.state = 'subscribed'))
        """,
        {"ids": ids, "list": subscribed_to},
    ).fetchall()
    return {row["id"]: row for row in rows}


# One keyset batch of a list's subscribers, in user id order: their ids as text, 36
# characters each, end to end, and their addresses joined by \x01 (a byte no address
# holds), both UTF-8. Two aggregates over one sorted subquery see its rows in one order.
SUBSCRIBER_BATCH = """
    select convert_to(string_agg(user_id::text, ''), 'UTF8') as user_ids,
           convert_to(string_agg(email, chr(1)), 'UTF8') as emails
    from (
        select s.user_id, u.email
        from subscriptions s join users u on u.id = s.user_id
        where s.newsletter = %(newsletter)s and s.state = 'subscribed'
          and s.user_id > %(after)s and s.user_id <= %(through)s
          -- the same conditions again, so the join walks the same range on both sides
          and u.id > %(after)s and u.id <= %(through)s
        order by s.user_id
        limit %(limit)s
    ) as batch
    """


def subscriber_page_end(
    conn: psycopg.Connection, newsletter: int, after: UUID, limit: int
) -> tuple[UUID | None, bool]:
    """Where a page of `limit` subscribers after `after` ends: the user id of the
    `limit`-th (None when fewer are left), and whether more follow it. The API pages by
    keyset; this one walk along the list's index steps over the page's rows to the
    `limit`-th and the one after it."""
    rows = conn.execute(
        """
        select user_id from subscriptions
        where newsletter = %(newsletter)s and state = 'subscribed' and user_id > %(after)s
        order by user_id offset %(limit)s - 1 limit 2
        """,
        {"newsletter": newsletter, "after": after, "limit": limit},
    ).fetchall()
    return (rows[0]["user_id"] if rows else None), len(rows) == 2


def ask_for_subscriber_batch(conn: psycopg.Connection, params: dict) -> psycopg.Cursor:
    """Send one batch's query and return at once, the connection in pipeline mode:
    PostgreSQL reads the batch while the caller does other work. `subscriber_batch`
    then takes it."""
    return conn.cursor(row_factory=tuple_row, binary=True).execute(SUBSCRIBER_BATCH, params)


def subscriber_batch(asked: psycopg.Cursor) -> tuple[bytes, bytes]:
    """(user ids, addresses) of a batch asked for; both empty after the last. The cursor
    is closed: its result's memory goes now, not when the cursor is collected."""
    with asked:
        user_ids, emails = asked.fetchone()
    return user_ids or b"", emails or b""
