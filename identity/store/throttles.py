"""SQL for login attempts and the throttles that count failures per account and per
client IP."""

from datetime import datetime
from uuid import UUID

import psycopg

from identity.store.transactions import NO_DISK_WAIT


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
        with {NO_DISK_WAIT}
        insert into login_attempts (user_id, site_id, client_ip, user_agent, outcome)
        select %(user_id)s, %(site_id)s, %(client_ip)s, %(user_agent)s, %(outcome)s
        from no_disk_wait
        """,  # noqa: S608 - a fixed fragment
        {
            "user_id": user_id,
            "site_id": site_id,
            "client_ip": client_ip,
            "user_agent": user_agent,
            "outcome": outcome,
        },
        prepare=True,
    )


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
        {
            "user_id": user_id,
            "limit": limit,
            "at": before and before["at"],
            "id": before and before["id"],
        },
    ).fetchall()


def _counting(name: str, key: str, free: str, cap: str, *, unless: str = "false") -> str:
    """The CTE `{name}` that counts one password check against the throttle `%(key)s`
    unless it must wait (or unless `unless`, an SQL condition, holds); it returns the
    throttle's `blocked_until` and whether this check was `counted`. Past `free` checks
    inside the window (`%(window)s` seconds) each check makes the next wait: 1 s, then 2,
    4, ... up to `cap` seconds. Only a window with no check and no wait in it starts the
    count again (the end of a long wait is not a quiet window, so the waits keep doubling
    to the cap).

    Whether this check must wait is decided where the row is written, not by reading it
    first: a row that parallel checks of a new key are all inserting cannot be read (nor
    locked) before the first of them commits, and each would go ahead. The upsert waits
    for that first one and then sees its row as it now is. A check that must wait leaves
    the row as it was; a counted one sets `last_failure_at` to this statement's start
    (`statement_timestamp()`, which no earlier statement can have written)."""
    waiting = "t.blocked_until > now()"
    quiet = (
        "greatest(t.last_failure_at, t.blocked_until) < now() - make_interval(secs => %(window)s)"
    )
    return f"""
        {name} as (
            insert into login_throttles as t (key, failures, last_failure_at)
            select %({key})s, 1, statement_timestamp()
            where %({key})s::text is not null and not ({unless})
            on conflict (key) do update set
                failures = case
                    when {waiting} then t.failures
                    when {quiet} then 1
                    else t.failures + 1 end,
                last_failure_at = case
                    when {waiting} then t.last_failure_at else statement_timestamp() end,
                blocked_until = case
                    when {waiting} then t.blocked_until
                    when not {quiet} and t.failures + 1 > %({free})s
                    then now() + make_interval(secs => least(
                        %({cap})s, power(2, least(t.failures - %({free})s, 30))))
                    end
            returning blocked_until, last_failure_at = statement_timestamp() as counted
        )"""


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
        select (select blocked_until from throttle where not counted) as until
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
    """A login's first statement: the account with this address (its id, password hash,
    when the address was proven and its second factor's sealed secret when one is on;
    nulls when there is none), and its password check
    counted (reserve_attempt) against the client IP's throttle and then, unless the IP
    must wait, the account's. `ip_until` and `account_until` say until when a throttle
    blocks (the check was not counted against it). One statement, so one round trip and
    one transaction, committed without waiting for the disk: the IP's row is locked
    before the account's, always in that order."""
    ip_waits = "exists (select from ip where not counted)"
    return conn.execute(
        f"""
        with {NO_DISK_WAIT},
        {_counting("ip", "ip_throttle", "ip_free", "ip_cap")},
        {
            _counting(
                "account_check", "account_throttle", "account_free", "account_cap", unless=ip_waits
            )
        },
        account as (
            select u.id, u.password_hash, u.email_verified_at, f.secret_sealed as second_factor
            from users u
            left join second_factors f on f.user_id = u.id and f.confirmed_at is not null
            where u.email_key = %(email_key)s
        )
        select account.*,
               (select blocked_until from ip where not counted) as ip_until,
               (select blocked_until from account_check where not counted) as account_until
        from no_disk_wait left join account on true
        """,  # noqa: S608 - fixed fragments
        {
            "email_key": email_key,
            "ip_throttle": ip_throttle,
            "account_throttle": account_throttle,
            "window": window_seconds,
            "ip_free": ip_free,
            "ip_cap": ip_cap_seconds,
            "account_free": account_free,
            "account_cap": account_cap_seconds,
        },
        prepare=True,
    ).fetchone()


# What taking a reserved check back sets. A check is only counted while its throttle makes
# nobody wait (`_counting`), so taking it back leaves no wait: not even the one its count
# began (keeping that one blocked a whole office's network for a check never made).
TAKEN_BACK = "failures = greatest(failures - 1, 0), blocked_until = null"


def take_back_attempt(conn: psycopg.Connection, key: str) -> None:
    """A reserved check that was not a failure (the password was right, or it was not
    made) no longer counts, nor does the wait it began."""
    conn.execute(
        f"update login_throttles set {TAKEN_BACK} where key = %(key)s",  # noqa: S608 - fixed
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
