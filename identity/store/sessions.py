"""SQL for sign-ins (sessions) and their refresh tokens."""

from uuid import UUID

import psycopg

from identity.store.throttles import TAKEN_BACK
from identity.store.transactions import NO_DISK_WAIT
from identity.store.users import USER_COLUMNS


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
    amr: tuple[str, ...] = ("pwd",),
) -> dict:
    """A good login, in one statement (one transaction, no round trips for BEGIN and
    COMMIT): the attempt recorded, the account's failures forgotten and the check the
    client IP was counted for taken back, a session begun with its first refresh token
    and how the person signed in (`amr`, RFC 8176); the person's record, and the
    session's id."""
    return conn.execute(
        f"""
        with {NO_DISK_WAIT}, attempt as (
            insert into login_attempts (user_id, site_id, client_ip, user_agent, outcome)
            values (%(user_id)s, %(site_id)s, %(client_ip)s, %(user_agent)s, 'success')
        ), cleared as (
            delete from login_throttles where key = %(throttle)s
        ), ip_taken_back as (
            update login_throttles set {TAKEN_BACK} where key = %(ip_throttle)s
        ), session as (
            insert into sessions (user_id, site_id, site_name, user_agent, client_ip,
                                  expires_at, amr)
            values (%(user_id)s, %(site_id)s, %(site_name)s, %(user_agent)s, %(client_ip)s,
                    now() + make_interval(secs => %(absolute)s), %(amr)s)
            returning id as session_id
        ), refresh as (
            insert into refresh_tokens (token_hash, session_id, idle_expires_at)
            select %(hash)s, session_id, now() + make_interval(secs => %(idle)s) from session
        )
        select {USER_COLUMNS}, session.session_id
        from users, session, no_disk_wait where users.id = %(user_id)s
        """,  # noqa: S608 - fixed column list
        {
            "user_id": user_id,
            "site_id": site_id,
            "site_name": site_name,
            "user_agent": user_agent,
            "client_ip": client_ip,
            "throttle": throttle_key,
            "ip_throttle": ip_throttle_key,
            "hash": refresh_hash,
            "idle": idle_seconds,
            "absolute": absolute_seconds,
            "amr": list(amr),
        },
        prepare=True,
    ).fetchone()


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
    session's id, user, site and how the person signed in (amr); all None for a token
    that is unknown, spent, expired, of an ended session or of another site's sign-in
    (which is left as it was). Of two uses of one token (never in one call) the second
    waits for the first's row lock and then finds it spent. A rotation made before (its
    `new` already given to the session: the same rotation run again after its answer was
    lost on the way back, though it had committed) reports that rotation again instead
    of a spent token.

    Committed without waiting for the disk (synchronous_commit off, for this statement's
    transaction only): a crash may forget the last fraction of a second of rotations,
    which costs the people concerned a new login and nothing else; waiting for the flush
    would halve how many refreshes the service answers.
    """
    return conn.execute(
        f"""
        with {NO_DISK_WAIT}, given as (
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
            returning s.id, s.user_id, s.site_name, s.amr, spent.old, spent.new
        ), next as (
            insert into refresh_tokens (token_hash, session_id, idle_expires_at)
            select new, id, now() + make_interval(secs => %(idle)s) from session
        )
        select coalesce(s.id, done.id) as session_id,
               coalesce(s.user_id, done.user_id) as user_id,
               coalesce(s.site_name, done.site_name) as site_name,
               coalesce(s.amr, done.amr) as amr
        from no_disk_wait, given g
        left join session s on s.old = g.old
        left join lateral (
            select d.id, d.user_id, d.site_name, d.amr
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
) -> dict | None:
    """The live session (`session_id`, `user_id`) of a refresh token of `site` that was
    spent before: shown again, it was copied. (A token of an ended or expired session is
    only not valid.)"""
    return conn.execute(
        """
        select r.session_id, s.user_id
        from refresh_tokens r join sessions s on s.id = r.session_id
        where r.token_hash = %(hash)s and r.spent_at is not null and s.site_name = %(site)s
          and s.revoked_at is null and s.expires_at > now()
        """,
        {"hash": token_hash, "site": site},
    ).fetchone()


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


def revoke_sessions(
    conn: psycopg.Connection, user_id: UUID, *, except_id: UUID | None = None
) -> int:
    """End the person's live sign-ins (but `except_id`); how many were."""
    return conn.execute(
        """
        update sessions set revoked_at = now()
        where user_id = %(user_id)s and revoked_at is null
          and (%(except)s::uuid is null or id <> %(except)s)
        """,
        {"user_id": user_id, "except": except_id},
    ).rowcount


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
        {
            "user_id": user_id,
            "limit": limit,
            "created_at": before and before["created_at"],
            "id": before and before["id"],
        },
    ).fetchall()


def signed_in_user(conn: psycopg.Connection, user_id: UUID, session_id: UUID) -> dict | None:
    """The record of a signed-in person, if their sign-in (session) is still live; with
    `has_picture` (a look-up of the pictures' primary key), `companies` (their
    memberships, by the members' user index) and `staff_role` (their staff role, when this
    sign-in was made with the app's code of a second factor still on), `impersonated_by` (the
    staff member acting as them, in an impersonation's sign-in) and `signed_in_at`, in the
    same statement: one round trip."""
    return conn.execute(
        f"""
        select u.*,
               exists (select 1 from pictures p where p.user_id = u.id) as has_picture,
               (select coalesce(jsonb_agg(jsonb_build_object(
                           'id', c.id, 'name', c.name, 'role', m.role) order by c.name, c.id),
                       '[]'::jsonb)
                from company_members m join companies c on c.id = m.company_id
                where m.user_id = u.id) as companies,
               -- A staff role counts only in a sign-in made with the authenticator app's
               -- code (not a recovery code), while a factor is on (removing one takes
               -- `otp` from the sign-ins made with it: a later factor revives none).
               (select r.role from staff_roles r
                join second_factors f on f.user_id = r.user_id and f.confirmed_at is not null
                where r.user_id = u.id and 'otp' = any(s.amr)) as staff_role,
               s.impersonated_by, s.created_at as signed_in_at
        from (select {USER_COLUMNS} from users where id = %(user_id)s) u
        join sessions s on s.id = %(session_id)s and s.user_id = u.id
                        and s.revoked_at is null and s.expires_at > now()
        """,  # noqa: S608 - fixed column list
        {"user_id": user_id, "session_id": session_id},
        prepare=True,
    ).fetchone()


def end_sessions(conn: psycopg.Connection, user_id: UUID | None) -> int:
    """End every live sign-in of one person, or of everyone (None): their refresh tokens
    and access tokens stop working. How many were live."""
    return conn.execute(
        """
        update sessions set revoked_at = now()
        where revoked_at is null and expires_at > now()
          and (%(user_id)s::uuid is null or user_id = %(user_id)s)
        """,
        {"user_id": user_id},
    ).rowcount
