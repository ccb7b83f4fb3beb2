"""SQL for accounts: passwords, mailed tokens, login attempts, throttles and sessions."""

from datetime import datetime
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from identity.store.users import USER_COLUMNS

# What a login writes (its attempt, its count against the throttles, its session) and a
# refresh's rotation commit without waiting for the disk: this CTE makes the statement's
# transaction `synchronous_commit = off`. A crash of PostgreSQL may forget the last
# fraction of a second of them, which costs those people a new login (and the attempt
# log those lines); waiting for each flush cost a login more CPU than all its SQL did.
_NO_DISK_WAIT = "no_disk_wait as (select set_config('synchronous_commit', 'off', true))"

# --- the account on the record ---------------------------------------------------------


def lock_by_email_key(conn: psycopg.Connection, key: str) -> dict | None:
    return conn.execute(
        """
        select id, email, email_key, status, password_hash, email_verified_at,
               coalesce(language, 'en') as language, first_name, last_name
        from users where email_key = %(key)s for no key update
        """,
        {"key": key},
    ).fetchone()


def lock_user(conn: psycopg.Connection, user_id: UUID) -> dict | None:
    return conn.execute(
        """
        select id, email, email_key, status, password_hash, email_verified_at,
               coalesce(language, 'en') as language, first_name, last_name, field_sources
        from users where id = %(id)s for no key update
        """,
        {"id": user_id},
    ).fetchone()


def prove_address(
    conn: psycopg.Connection,
    user_id: UUID,
    password_hash: str,
    fields: dict,
    field_sources: dict,
) -> None:
    """The address is proven: the account gets its password and the person's own fields
    (over whatever a site had sent)."""
    assignments = "".join(f", {name} = %({name})s" for name in fields)
    conn.execute(
        f"""
        update users set
            password_hash = %(password_hash)s,
            email_verified_at = now(),
            status = 'registered',
            registered_at = coalesce(registered_at, now()),
            field_sources = field_sources || %(field_sources)s,
            updated_at = now()
            {assignments}
        where id = %(id)s
        """,  # noqa: S608 - column names from the fixed profile columns
        {"id": user_id, "password_hash": password_hash,
         "field_sources": Jsonb(field_sources), **fields},
    )  # fmt: skip


def set_password(conn: psycopg.Connection, user_id: UUID, password_hash: str) -> None:
    conn.execute(
        """
        update users set password_hash = %(hash)s, updated_at = now() where id = %(id)s
        """,
        {"id": user_id, "hash": password_hash},
    )


def rehash_password(conn: psycopg.Connection, user_id: UUID, old: str, new: str) -> None:
    """The same password under today's parameters; nothing else changes."""
    conn.execute(
        "update users set password_hash = %(new)s where id = %(id)s and password_hash = %(old)s",
        {"id": user_id, "old": old, "new": new},
    )


def change_email(
    conn: psycopg.Connection, user_id: UUID, email: str, key: str, source: dict
) -> None:
    conn.execute(
        """
        update users set email = %(email)s, email_key = %(key)s,
               field_sources = field_sources || jsonb_build_object('email', %(source)s::jsonb),
               updated_at = now()
        where id = %(id)s
        """,
        {"id": user_id, "email": email, "key": key, "source": Jsonb(source)},
    )


def edit_fields(conn: psycopg.Connection, user_id: UUID, fields: dict, field_sources: dict) -> None:
    """The person's own edits: they set (or clear) what they name."""
    if not fields:
        return
    assignments = ", ".join(f"{name} = %({name})s" for name in fields)
    conn.execute(
        f"""
        update users set {assignments}, field_sources = field_sources || %(field_sources)s,
               updated_at = now()
        where id = %(id)s
        """,  # noqa: S608 - column names from the fixed profile columns
        {"id": user_id, "field_sources": Jsonb(field_sources), **fields},
    )


def previous_password_hashes(conn: psycopg.Connection, user_id: UUID, count: int) -> list[str]:
    rows = conn.execute(
        """
        select password_hash from password_history where user_id = %(id)s
        order by id desc limit %(count)s
        """,
        {"id": user_id, "count": count},
    ).fetchall()
    return [row["password_hash"] for row in rows]


def remember_password(conn: psycopg.Connection, user_id: UUID, password_hash: str, keep: int):
    """Add to the history, keeping only the last `keep`."""
    conn.execute(
        """
        insert into password_history (user_id, password_hash) values (%(id)s, %(hash)s);
        """,
        {"id": user_id, "hash": password_hash},
    )
    conn.execute(
        """
        delete from password_history where user_id = %(id)s and id not in (
            select id from password_history where user_id = %(id)s
            order by id desc limit %(keep)s)
        """,
        {"id": user_id, "keep": keep},
    )


# --- tokens sent by mail ------------------------------------------------------------------


def insert_token(
    conn: psycopg.Connection,
    token_hash: bytes,
    purpose: str,
    user_id: UUID,
    payload: dict,
    expires_at: datetime,
) -> None:
    conn.execute(
        """
        insert into account_tokens (token_hash, purpose, user_id, payload, expires_at)
        values (%(hash)s, %(purpose)s, %(user_id)s, %(payload)s, %(expires_at)s)
        """,
        {"hash": token_hash, "purpose": purpose, "user_id": user_id,
         "payload": Jsonb(payload), "expires_at": expires_at},
    )  # fmt: skip


def tokens_made_since(conn: psycopg.Connection, user_id: UUID, purpose: str, seconds: int) -> int:
    row = conn.execute(
        """
        select count(*) as n from account_tokens
        where user_id = %(user_id)s and purpose = %(purpose)s
          and created_at > now() - make_interval(secs => %(seconds)s)
        """,
        {"user_id": user_id, "purpose": purpose, "seconds": seconds},
    ).fetchone()
    return row["n"]


def token_owner(conn: psycopg.Connection, token_hash: bytes, purposes: tuple[str, ...]):
    """The account a token with this hash belongs to, used or not, without a lock: to
    lock the account before the token (every path locks an account, then its tokens)."""
    row = conn.execute(
        """
        select user_id from account_tokens
        where token_hash = %(hash)s and purpose = any(%(purposes)s)
        """,
        {"hash": token_hash, "purposes": list(purposes)},
    ).fetchone()
    return row["user_id"] if row else None


def take_token(conn: psycopg.Connection, token_hash: bytes, purposes: tuple[str, ...]):
    """The unused, unexpired token with this hash, locked; marked used in the same step,
    so of two requests with one token exactly one gets it."""
    return conn.execute(
        """
        update account_tokens set used_at = now()
        where token_hash = %(hash)s and purpose = any(%(purposes)s)
          and used_at is null and expires_at > now()
        returning purpose, user_id, payload
        """,
        {"hash": token_hash, "purposes": list(purposes)},
    ).fetchone()


def registrations_since(conn: psycopg.Connection, user_id: UUID, seconds: int) -> int:
    """How many registrations (each with its password) were made for this account's
    address in the last `seconds`, used, void or pending alike, but for those the same
    person made again (superseded)."""
    row = conn.execute(
        """
        select count(*) as n from account_tokens
        where user_id = %(user_id)s and purpose = 'verify_email' and payload ? 'password_hash'
          and not payload ? 'superseded'
          and created_at > now() - make_interval(secs => %(seconds)s)
        """,
        {"user_id": user_id, "seconds": seconds},
    ).fetchone()
    return row["n"]


def pending_registrations(conn: psycopg.Connection, user_id: UUID) -> list[dict]:
    """The registrations waiting for proof of this account's address: token_hash,
    password_hash."""
    return conn.execute(
        """
        select token_hash, payload->>'password_hash' as password_hash from account_tokens
        where user_id = %(user_id)s and purpose = 'verify_email' and payload ? 'password_hash'
          and used_at is null and expires_at > now()
        """,
        {"user_id": user_id},
    ).fetchall()


def supersede_registrations(conn: psycopg.Connection, token_hashes: list[bytes]) -> None:
    """Registrations made again by the same person: void, and not counted as another's."""
    conn.execute(
        """
        update account_tokens set used_at = now(), payload = payload || '{"superseded": true}'
        where token_hash = any(%(hashes)s)
        """,
        {"hashes": token_hashes},
    )


def void_tokens(conn: psycopg.Connection, user_id: UUID, purposes: tuple[str, ...]) -> None:
    conn.execute(
        """
        update account_tokens set used_at = now()
        where user_id = %(user_id)s and purpose = any(%(purposes)s) and used_at is null
        """,
        {"user_id": user_id, "purposes": list(purposes)},
    )


# --- login attempts and throttles ------------------------------------------------------------


def record_attempt(
    conn: psycopg.Connection,
    *,
    user_id: UUID | None,
    site_id: UUID | None,
    client_ip: str | None,
    user_agent: str | None,
    outcome: str,
) -> None:
    conn.execute(
        f"""
        with {_NO_DISK_WAIT}
        insert into login_attempts (user_id, site_id, client_ip, user_agent, outcome)
        select %(user_id)s, %(site_id)s, %(client_ip)s, %(user_agent)s, %(outcome)s
        from no_disk_wait
        """,  # noqa: S608 - a fixed fragment
        {"user_id": user_id, "site_id": site_id, "client_ip": client_ip,
         "user_agent": user_agent, "outcome": outcome},
        prepare=True,
    )  # fmt: skip


def attempt_of(conn: psycopg.Connection, user_id: UUID, attempt_id: int) -> dict | None:
    """One of the person's attempts (its `at` and `id`: a page's cursor), or None."""
    return conn.execute(
        "select at, id from login_attempts where id = %(id)s and user_id = %(user_id)s",
        {"id": attempt_id, "user_id": user_id},
    ).fetchone()


def attempts_of(
    conn: psycopg.Connection, user_id: UUID, limit: int, before: dict | None = None
) -> list[dict]:
    """The person's attempts, newest first, at most `limit`; with `before` (an
    `attempt_of`), only those that came before it."""
    return conn.execute(
        """
        select a.id, a.at, a.outcome, host(a.client_ip) as client_ip, a.user_agent,
               s.name as site
        from login_attempts a left join sites s on s.id = a.site_id
        where a.user_id = %(user_id)s
          and (%(at)s::timestamptz is null or (a.at, a.id) < (%(at)s, %(id)s::bigint))
        order by a.at desc, a.id desc limit %(limit)s
        """,
        {"user_id": user_id, "limit": limit, "at": before and before["at"],
         "id": before and before["id"]},
    ).fetchall()  # fmt: skip


def _counting(name: str, key: str, free: str, cap: str, *, unless: str = "false") -> str:
    """The CTEs that count one password check against the throttle `%(key)s` unless it
    must wait (or unless `unless`, an SQL condition, holds): `{name}_before` locks the
    throttle's row and holds when it blocks until, `{name}_counted` counts. Past `free`
    checks inside the window (`%(window)s` seconds) each check makes the next wait: 1 s,
    then 2, 4, ... up to `cap` seconds. Only a window with no check and no wait in it
    starts the count again (the end of a long wait is not a quiet window, so the waits
    keep doubling to the cap)."""
    return f"""
        {name}_before as (
            select blocked_until from login_throttles
            where key = %({key})s and not ({unless})
            for update
        ), {name}_counted as (
            insert into login_throttles as t (key, failures, last_failure_at)
            select %({key})s, 1, now()
            where %({key})s::text is not null and not ({unless})
              and not exists (select from {name}_before where blocked_until > now())
            on conflict (key) do update set
                failures = case
                    when greatest(t.last_failure_at, t.blocked_until)
                         < now() - make_interval(secs => %(window)s) then 1
                    else t.failures + 1 end,
                last_failure_at = now(),
                blocked_until = case
                    when greatest(t.last_failure_at, t.blocked_until)
                         >= now() - make_interval(secs => %(window)s)
                         and t.failures + 1 > %({free})s
                    then now() + make_interval(secs => least(
                        %({cap})s, power(2, least(t.failures - %({free})s, 30))))
                    end
        )"""  # noqa: S608 - names and conditions of this module's own


def reserve_attempt(
    conn: psycopg.Connection, key: str, *, free: int, window_seconds: int, cap_seconds: int
) -> datetime | None:
    """Count a password check for `key` before it is made, in one atomic statement, so
    that parallel attempts cannot all get their check in before the first failure is
    counted: None when the check may go ahead (counted), else until when checks wait
    (this one not counted). A burst buys one check per wait, not a jump to the longest
    block (`_counting`). A good login takes its check back (sign_in)."""
    row = conn.execute(
        f"""
        with {_counting("throttle", "key", "free", "cap")}
        select (select blocked_until from throttle_before where blocked_until > now()) as until
        """,  # noqa: S608 - a fixed fragment
        {"key": key, "free": free, "window": window_seconds, "cap": cap_seconds},
        prepare=True,
    ).fetchone()
    return row["until"]


def start_login(
    conn: psycopg.Connection,
    email_key: str,
    *,
    ip_throttle: str | None,
    account_throttle: str,
    window_seconds: int,
    ip_free: int,
    ip_cap_seconds: int,
    account_free: int,
    account_cap_seconds: int,
) -> dict:
    """A login's first statement: the account with this address (its id, password hash
    and when the address was proven; nulls when there is none), and its password check
    counted (reserve_attempt) against the client IP's throttle and then, unless the IP
    must wait, the account's. `ip_until` and `account_until` say until when a throttle
    blocks (the check was not counted against it). One statement, so one round trip and
    one transaction, committed without waiting for the disk: the IP's row is locked
    before the account's, always in that order."""
    ip_waits = "exists (select from ip_before where blocked_until > now())"
    return conn.execute(
        f"""
        with {_NO_DISK_WAIT},
        {_counting("ip", "ip_throttle", "ip_free", "ip_cap")},
        {_counting("account", "account_throttle", "account_free", "account_cap",
                   unless=ip_waits)},
        account as (
            select id, password_hash, email_verified_at from users
            where email_key = %(email_key)s
        )
        select account.*,
               (select blocked_until from ip_before where blocked_until > now()) as ip_until,
               (select blocked_until from account_before where blocked_until > now())
                   as account_until
        from no_disk_wait left join account on true
        """,  # noqa: S608 - fixed fragments
        {"email_key": email_key, "ip_throttle": ip_throttle,
         "account_throttle": account_throttle, "window": window_seconds,
         "ip_free": ip_free, "ip_cap": ip_cap_seconds,
         "account_free": account_free, "account_cap": account_cap_seconds},
        prepare=True,
    ).fetchone()  # fmt: skip


# What taking a reserved check back sets. A check is only counted while its throttle makes
# nobody wait (`_counting`), so taking it back leaves no wait: not even the one its count
# began (keeping that one blocked a whole office's network for a check never made).
_TAKEN_BACK = "failures = greatest(failures - 1, 0), blocked_until = null"


def take_back_attempt(conn: psycopg.Connection, key: str) -> None:
    """A reserved check that was not a failure (the password was right, or it was not
    made) no longer counts, nor does the wait it began."""
    conn.execute(
        f"update login_throttles set {_TAKEN_BACK} where key = %(key)s",  # noqa: S608 - fixed
        {"key": key},
    )


def signed_in_from(conn: psycopg.Connection, user_id: UUID, network: str, days: int) -> bool:
    """Whether the account had a good login from this network (an IPv4 address, an IPv6
    /64) in the last `days`: the owner's own device, which a stranger's failures
    elsewhere must not lock out."""
    row = conn.execute(
        """
        select exists (
            select from login_attempts
            where user_id = %(user_id)s and client_ip <<= %(network)s::inet
              and outcome = 'success' and at > now() - make_interval(days => %(days)s)
        ) as known
        """,
        {"user_id": user_id, "network": network, "days": days},
    ).fetchone()
    return row["known"]


def clear_throttle(conn: psycopg.Connection, key: str) -> None:
    conn.execute("delete from login_throttles where key = %(key)s", {"key": key})


# --- sessions and refresh tokens ----------------------------------------------------------


def sign_in(
    conn: psycopg.Connection,
    *,
    user_id: UUID,
    site_id: UUID | None,
    site_name: str,
    user_agent: str | None,
    client_ip: str | None,
    throttle_key: str,
    ip_throttle_key: str | None,
    refresh_hash: bytes,
    idle_seconds: int,
    absolute_seconds: int,
) -> dict:
    """A good login, in one statement (one transaction, no round trips for BEGIN and
    COMMIT): the attempt recorded, the account's failures forgotten and the check the
    client IP was counted for taken back, a session begun with its first refresh token;
    the person's record, and the session's id."""
    return conn.execute(
        f"""
        with {_NO_DISK_WAIT}, attempt as (
            insert into login_attempts (user_id, site_id, client_ip, user_agent, outcome)
            values (%(user_id)s, %(site_id)s, %(client_ip)s, %(user_agent)s, 'success')
        ), cleared as (
            delete from login_throttles where key = %(throttle)s
        ), ip_taken_back as (
            update login_throttles set {_TAKEN_BACK} where key = %(ip_throttle)s
        ), session as (
            insert into sessions (user_id, site_id, site_name, user_agent, client_ip,
                                  expires_at)
            values (%(user_id)s, %(site_id)s, %(site_name)s, %(user_agent)s, %(client_ip)s,
                    now() + make_interval(secs => %(absolute)s))
            returning id as session_id
        ), refresh as (
            insert into refresh_tokens (token_hash, session_id, idle_expires_at)
            select %(hash)s, session_id, now() + make_interval(secs => %(idle)s) from session
        )
        select {USER_COLUMNS}, session.session_id
        from users, session, no_disk_wait where users.id = %(user_id)s
        """,  # noqa: S608 - fixed column list
        {"user_id": user_id, "site_id": site_id, "site_name": site_name,
         "user_agent": user_agent, "client_ip": client_ip, "throttle": throttle_key,
         "ip_throttle": ip_throttle_key,
         "hash": refresh_hash, "idle": idle_seconds, "absolute": absolute_seconds},
        prepare=True,
    ).fetchone()  # fmt: skip


def lock_refresh_token(conn: psycopg.Connection, token_hash: bytes) -> dict | None:
    """The refresh token and its session, locked: two uses of one token queue here."""
    return conn.execute(
        """
        select r.session_id, r.spent_at, r.idle_expires_at > now() as fresh,
               s.user_id, s.site_name, s.revoked_at, s.expires_at > now() as live
        from refresh_tokens r join sessions s on s.id = r.session_id
        where r.token_hash = %(hash)s
        for update of r, s
        """,
        {"hash": token_hash},
        prepare=True,
    ).fetchone()


def rotate_refresh_tokens(
    conn: psycopg.Connection, rotations: list[dict], idle_seconds: int
) -> list[dict]:
    """For each rotation (`old` and `new` token hashes, the calling `site`), in one
    statement (one transaction, no round trips for BEGIN and COMMIT): spend the live
    refresh token `old` of a live session of `site` and give that session `new`. Its
    session's id, user and site; all three None for a token that is unknown, spent,
    expired, of an ended session or of another site's sign-in (which is left as it was). Of two uses
    of one token (never in one call) the second waits for the first's row lock and then
    finds it spent. A rotation made before (its `new` already given to the session: the
    same rotation run again after its answer was lost on the way back, though it had
    committed) reports that rotation again instead of a spent token.

    Committed without waiting for the disk (synchronous_commit off, for this statement's
    transaction only): a crash may forget the last fraction of a second of rotations,
    which costs the people concerned a new login and nothing else; waiting for the flush
    would halve how many refreshes the service answers.
    """
    return conn.execute(
        f"""
        with {_NO_DISK_WAIT}, given as (
            select * from unnest(%(old)s::bytea[], %(new)s::bytea[], %(site)s::text[])
                with ordinality as g(old, new, site, n)
        ), spent as (
            update refresh_tokens r set spent_at = now()
            from given g, sessions s
            where r.token_hash = g.old and r.spent_at is null and r.idle_expires_at > now()
              and s.id = r.session_id and s.site_name = g.site
              and s.revoked_at is null and s.expires_at > now()
            returning r.session_id, g.old, g.new
        ), session as (
            update sessions s set last_used_at = now()
            from spent
            where s.id = spent.session_id and s.revoked_at is null and s.expires_at > now()
            returning s.id, s.user_id, s.site_name, spent.old, spent.new
        ), next as (
            insert into refresh_tokens (token_hash, session_id, idle_expires_at)
            select new, id, now() + make_interval(secs => %(idle)s) from session
        )
        select coalesce(s.id, done.id) as session_id,
               coalesce(s.user_id, done.user_id) as user_id,
               coalesce(s.site_name, done.site_name) as site_name
        from no_disk_wait, given g
        left join session s on s.old = g.old
        left join lateral (
            select d.id, d.user_id, d.site_name
            from refresh_tokens r join sessions d on d.id = r.session_id
            where s.id is null and r.token_hash = g.new and d.site_name = g.site
              and d.revoked_at is null and d.expires_at > now()
        ) done on true
        order by g.n
        """,  # noqa: S608 - a fixed fragment
        {name: [rotation[name] for rotation in rotations] for name in ("old", "new", "site")}
        | {"idle": idle_seconds},
        prepare=True,
    ).fetchall()


def spent_refresh_token_session(
    conn: psycopg.Connection, token_hash: bytes, site: str
) -> UUID | None:
    """The live session of a refresh token of `site` that was spent before: shown again,
    it was copied. (A token of an ended or expired session is only not valid.)"""
    row = conn.execute(
        """
        select r.session_id from refresh_tokens r join sessions s on s.id = r.session_id
        where r.token_hash = %(hash)s and r.spent_at is not null and s.site_name = %(site)s
          and s.revoked_at is null and s.expires_at > now()
        """,
        {"hash": token_hash, "site": site},
    ).fetchone()
    return row["session_id"] if row else None


def revoke_session(conn: psycopg.Connection, session_id: UUID, user_id: UUID | None = None) -> bool:
    """Revoke a live session (only the user's own when `user_id` is given); whether one
    was. One that has expired is not live: there is nothing to end."""
    cur = conn.execute(
        """
        update sessions set revoked_at = now()
        where id = %(id)s and revoked_at is null and expires_at > now()
          and (%(user_id)s::uuid is null or user_id = %(user_id)s)
        """,
        {"id": session_id, "user_id": user_id},
    )
    return cur.rowcount > 0


def revoke_sessions(conn: psycopg.Connection, user_id: UUID, *, except_id: UUID | None = None):
    conn.execute(
        """
        update sessions set revoked_at = now()
        where user_id = %(user_id)s and revoked_at is null
          and (%(except)s::uuid is null or id <> %(except)s)
        """,
        {"user_id": user_id, "except": except_id},
    )


def session_of(conn: psycopg.Connection, user_id: UUID, session_id: UUID) -> dict | None:
    """One of the person's sign-ins, live or ended (its `created_at` and `id`: a page's
    cursor), or None."""
    return conn.execute(
        "select created_at, id from sessions where id = %(id)s and user_id = %(user_id)s",
        {"id": session_id, "user_id": user_id},
    ).fetchone()


def live_sessions(
    conn: psycopg.Connection, user_id: UUID, limit: int, before: dict | None = None
) -> list[dict]:
    """The person's live sign-ins, the latest begun first, at most `limit`; with `before`
    (a `session_of`), only those begun before it. Ordered by when they began, which
    never changes: using a sign-in between two pages does not move it."""
    return conn.execute(
        """
        select s.id, s.site_name as site, s.created_at, s.last_used_at, s.user_agent,
               host(s.client_ip) as client_ip
        from sessions s
        where s.user_id = %(user_id)s and s.revoked_at is null and s.expires_at > now()
          and (%(created_at)s::timestamptz is null
               or (s.created_at, s.id) < (%(created_at)s, %(id)s::uuid))
        order by s.created_at desc, s.id desc limit %(limit)s
        """,
        {"user_id": user_id, "limit": limit, "created_at": before and before["created_at"],
         "id": before and before["id"]},
    ).fetchall()  # fmt: skip


def signed_in_user(conn: psycopg.Connection, user_id: UUID, session_id: UUID) -> dict | None:
    """The record of a signed-in person, if their sign-in (session) is still live."""
    return conn.execute(
        f"""
        select {USER_COLUMNS} from users u
        where id = %(user_id)s
          and exists (select 1 from sessions s where s.id = %(session_id)s
                      and s.user_id = u.id and s.revoked_at is null and s.expires_at > now())
        """,  # noqa: S608 - fixed column list
        {"user_id": user_id, "session_id": session_id},
        prepare=True,
    ).fetchone()
