"""SQL for the second factor (a sealed TOTP secret and its recovery codes) and for the
second step of a login (its challenges: the mfa_tokens handed out, kept hashed)."""

from uuid import UUID

import psycopg

from identity.store.throttles import TAKEN_BACK
from identity.store.transactions import NO_DISK_WAIT


def factor_of(conn: psycopg.Connection, user_id: UUID) -> dict | None:
    """The person's second factor: secret_sealed, confirmed_at (None: set up, not on yet),
    last_step; None when there is none."""
    return conn.execute(
        """
        select secret_sealed, confirmed_at, last_step from second_factors
        where user_id = %(user_id)s
        """,
        {"user_id": user_id},
    ).fetchone()


def set_up(conn: psycopg.Connection, user_id: UUID, sealed: bytes) -> bool:
    """A new secret, not on until confirmed; replaces one set up and never confirmed.
    False when a second factor is on (which is left as it is)."""
    row = conn.execute(
        """
        insert into second_factors as f (user_id, secret_sealed)
        values (%(user_id)s, %(sealed)s)
        on conflict (user_id) do update
            set secret_sealed = excluded.secret_sealed, created_at = now(), last_step = null
            where f.confirmed_at is null
        returning user_id
        """,
        {"user_id": user_id, "sealed": sealed},
    ).fetchone()
    return row is not None


def turn_on(conn: psycopg.Connection, user_id: UUID, step: int, code_hashes: list[bytes]) -> bool:
    """The second factor set up is on from now, its first code (of `step`) taken, with
    these recovery codes and no others. False when there is none set up, or it is on."""
    row = conn.execute(
        """
        update second_factors set confirmed_at = now(), last_step = %(step)s
        where user_id = %(user_id)s and confirmed_at is null
        returning user_id
        """,
        {"user_id": user_id, "step": step},
    ).fetchone()
    if row is None:
        return False
    conn.execute("delete from recovery_codes where user_id = %(user_id)s", {"user_id": user_id})
    conn.execute(
        """
        insert into recovery_codes (user_id, code_hash)
        select %(user_id)s, unnest(%(hashes)s::bytea[])
        """,
        {"user_id": user_id, "hashes": code_hashes},
    )
    return True


def take_step(conn: psycopg.Connection, user_id: UUID, step: int) -> bool:
    """Take a code of time step `step` of the person's second factor (on): only once, and
    never one of a step before the last taken. Whether it was taken; of two requests with
    one code, one."""
    cur = conn.execute(
        """
        update second_factors set last_step = %(step)s
        where user_id = %(user_id)s and confirmed_at is not null
          and (last_step is null or last_step < %(step)s)
        """,
        {"user_id": user_id, "step": step},
    )
    return cur.rowcount == 1


def use_recovery_code(conn: psycopg.Connection, user_id: UUID, code_hash: bytes) -> bool:
    """Spend one of the person's unused recovery codes; whether it was one."""
    cur = conn.execute(
        """
        update recovery_codes set used_at = now()
        where user_id = %(user_id)s and code_hash = %(hash)s and used_at is null
          and exists (select from second_factors f
                      where f.user_id = %(user_id)s and f.confirmed_at is not null)
        """,
        {"user_id": user_id, "hash": code_hash},
    )
    return cur.rowcount == 1


def recovery_codes_left(conn: psycopg.Connection, user_id: UUID) -> int:
    row = conn.execute(
        """
        select count(*) as n from recovery_codes
        where user_id = %(user_id)s and used_at is null
        """,
        {"user_id": user_id},
    ).fetchone()
    return row["n"]


def remove(conn: psycopg.Connection, user_id: UUID) -> bool:
    """The person's second factor and recovery codes gone; whether there was one. The
    sign-ins made with it no longer count as made with a second factor (their `amr` loses
    `otp` and `mfa`): a factor turned on later does not make them so again."""
    conn.execute("delete from recovery_codes where user_id = %(user_id)s", {"user_id": user_id})
    conn.execute(
        """
        update sessions set amr = array_remove(array_remove(amr, 'otp'), 'mfa')
        where user_id = %(user_id)s and amr && array['otp', 'mfa']
        """,
        {"user_id": user_id},
    )
    cur = conn.execute(
        "delete from second_factors where user_id = %(user_id)s", {"user_id": user_id}
    )
    return cur.rowcount == 1


# --- the second step of a login ----------------------------------------------------------


def insert_challenge(
    conn: psycopg.Connection,
    *,
    token_hash: bytes,
    user_id: UUID,
    site_id: UUID | None,
    site_name: str,
    client_ip: str | None,
    user_agent: str | None,
    seconds: int,
    account_throttle: str,
    ip_throttle: str | None,
    first_factor: str = "pwd",
) -> None:
    """A right password (or a provider's sign-in: `first_factor` "fed") waiting for its
    second factor, in one statement: the challenge
    (its mfa_token's hash) made, the attempt recorded, and the password check taken back
    from the account's and the client IP's counts (it was no failure). Committed without
    waiting for the disk, as the login's other writes are."""
    conn.execute(
        f"""
        with {NO_DISK_WAIT}, attempt as (
            insert into login_attempts (user_id, site_id, client_ip, user_agent, outcome)
            values (%(user_id)s, %(site_id)s, %(client_ip)s, %(user_agent)s,
                    'second_factor_required')
        ), taken_back as (
            update login_throttles set {TAKEN_BACK} where key in (%(account)s, %(ip)s)
        )
        insert into login_challenges
            (token_hash, user_id, site_id, site_name, client_ip, user_agent, expires_at,
             first_factor)
        select %(hash)s, %(user_id)s, %(site_id)s, %(site_name)s, %(client_ip)s,
               %(user_agent)s, now() + make_interval(secs => %(seconds)s), %(first)s
        from no_disk_wait
        """,  # noqa: S608 - fixed fragments
        {
            "hash": token_hash,
            "user_id": user_id,
            "site_id": site_id,
            "site_name": site_name,
            "client_ip": client_ip,
            "user_agent": user_agent,
            "seconds": seconds,
            "first": first_factor,
            "account": account_throttle,
            "ip": ip_throttle,
        },
    )


def lock_challenge(
    conn: psycopg.Connection, token_hash: bytes, site_name: str, most_failures: int
) -> dict | None:
    """The live challenge with this hash begun through `site_name` (unused, unexpired,
    fewer than `most_failures` wrong codes), locked, with the person's second factor
    (secret_sealed, last_step) and address key; None for any other. Two uses of one
    mfa_token queue here."""
    return conn.execute(
        """
        select c.user_id, c.first_factor, f.secret_sealed, u.email_key
        from login_challenges c
        join second_factors f on f.user_id = c.user_id and f.confirmed_at is not null
        join users u on u.id = c.user_id
        where c.token_hash = %(hash)s and c.site_name = %(site)s and c.used_at is null
          and c.expires_at > now() and c.failures < %(most)s
        for update of c
        """,
        {"hash": token_hash, "site": site_name, "most": most_failures},
    ).fetchone()


def count_challenge_failure(conn: psycopg.Connection, token_hash: bytes) -> None:
    conn.execute(
        "update login_challenges set failures = failures + 1 where token_hash = %(hash)s",
        {"hash": token_hash},
    )


def spend_challenge(conn: psycopg.Connection, token_hash: bytes) -> None:
    conn.execute(
        "update login_challenges set used_at = now() where token_hash = %(hash)s",
        {"hash": token_hash},
    )


def void_challenges(conn: psycopg.Connection, user_id: UUID) -> None:
    """Every second step the person's logins wait at stops working (a new password)."""
    conn.execute(
        """
        update login_challenges set used_at = now()
        where user_id = %(user_id)s and used_at is null
        """,
        {"user_id": user_id},
    )
