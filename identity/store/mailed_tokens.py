"""SQL for tokens sent by mail (address proof, password reset, change of address): kept
hashed, one purpose each, single use, expiring."""

from datetime import datetime
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb


def insert_token(
    conn: psycopg.Connection,
    token_hash: bytes,
    purpose: str,
    user_id: UUID,
    payload: dict,
    expires_at: datetime,
    *,
    mailed: bool = True,
    requested_from: str | None = None,
) -> None:
    """A token; `mailed` when its mail goes out (it counts against the hourly limits),
    `requested_from` the network that asked for it (a CIDR), if any."""
    conn.execute(
        """
        insert into account_tokens
            (token_hash, purpose, user_id, payload, expires_at, created_at, mailed,
             requested_from)
        values (%(hash)s, %(purpose)s, %(user_id)s, %(payload)s, %(expires_at)s,
                clock_timestamp(),  -- the clock's, not the transaction's: tokens keep their order
                %(mailed)s, %(requested_from)s::cidr)
        """,
        {
            "hash": token_hash,
            "purpose": purpose,
            "user_id": user_id,
            "payload": Jsonb(payload),
            "expires_at": expires_at,
            "mailed": mailed,
            "requested_from": requested_from,
        },
    )


def mails_since(
    conn: psycopg.Connection, user_id: UUID, purpose: str, seconds: int, *, at_most: int
) -> int:
    """How many mails of `purpose` went to this record in the last `seconds`, counted up
    to `at_most`: enough to tell whether a limit is reached, reading no more rows however
    many there were."""
    row = conn.execute(
        """
        select count(*) as n from (
            select from account_tokens
            where user_id = %(user_id)s and purpose = %(purpose)s and mailed
              and created_at > now() - make_interval(secs => %(seconds)s)
            limit %(at_most)s
        ) as counted
        """,
        {"user_id": user_id, "purpose": purpose, "seconds": seconds, "at_most": at_most},
    ).fetchone()
    return row["n"]


def mails_from_since(
    conn: psycopg.Connection,
    user_id: UUID,
    purpose: str,
    requested_from: str,
    seconds: int,
    *,
    at_most: int,
) -> int:
    """As `mails_since`, of the mails asked for from the network `requested_from`."""
    row = conn.execute(
        """
        select count(*) as n from (
            select from account_tokens
            where user_id = %(user_id)s and purpose = %(purpose)s and mailed
              and requested_from = %(network)s::cidr
              and created_at > now() - make_interval(secs => %(seconds)s)
            limit %(at_most)s
        ) as counted
        """,
        {
            "user_id": user_id,
            "purpose": purpose,
            "network": requested_from,
            "seconds": seconds,
            "at_most": at_most,
        },
    ).fetchone()
    return row["n"]


def token_owner(
    conn: psycopg.Connection,
    token_hash: bytes,
    purposes: tuple[str, ...],
    *,
    live: bool = False,
    site: str | None = None,
):
    """The account a token with this hash belongs to (used or not, unless `live`), without
    a lock: to lock the account before the token (every path locks an account, then its
    tokens). A token bound to a site (its payload's `site`) is another site's nothing."""
    row = conn.execute(
        """
        select user_id from account_tokens
        where token_hash = %(hash)s and purpose = any(%(purposes)s)
          and (not %(live)s or (used_at is null and expires_at > now()))
          and (payload->>'site' is null or payload->>'site' = %(site)s)
        """,
        {"hash": token_hash, "purposes": list(purposes), "live": live, "site": site},
    ).fetchone()
    return row["user_id"] if row else None


def take_token(
    conn: psycopg.Connection,
    token_hash: bytes,
    purposes: tuple[str, ...],
    site: str | None = None,
):
    """The unused, unexpired token with this hash, locked; marked used in the same step,
    so of two requests with one token exactly one gets it."""
    return conn.execute(
        """
        update account_tokens set used_at = now()
        where token_hash = %(hash)s and purpose = any(%(purposes)s)
          and used_at is null and expires_at > now()
          and (payload->>'site' is null or payload->>'site' = %(site)s)
        returning purpose, user_id, payload, created_at
        """,
        {"hash": token_hash, "purposes": list(purposes), "site": site},
    ).fetchone()


def registrations_since(
    conn: psycopg.Connection, user_id: UUID, seconds: int, *, at_most: int
) -> int:
    """How many registrations (each with its password) were made for this account's
    address in the last `seconds`, used, void or pending alike, but for those the same
    person made again (superseded); counted up to `at_most`, reading no more rows."""
    row = conn.execute(
        """
        select count(*) as n from (
            select from account_tokens
            where user_id = %(user_id)s and purpose = 'verify_email'
              and payload ? 'password_hash' and not payload ? 'superseded'
              and created_at > now() - make_interval(secs => %(seconds)s)
            limit %(at_most)s
        ) as counted
        """,
        {"user_id": user_id, "seconds": seconds, "at_most": at_most},
    ).fetchone()
    return row["n"]


def pending_registrations(conn: psycopg.Connection, user_id: UUID, newest: int) -> list[dict]:
    """The `newest` registrations waiting for proof of this account's address: token_hash,
    password_hash, created_at."""
    return conn.execute(
        """
        select token_hash, payload->>'password_hash' as password_hash, created_at
        from account_tokens
        where user_id = %(user_id)s and purpose = 'verify_email' and payload ? 'password_hash'
          and used_at is null and expires_at > now()
        order by created_at desc
        limit %(newest)s
        """,
        {"user_id": user_id, "newest": newest},
    ).fetchall()


def supersede_registrations(conn: psycopg.Connection, token_hashes: list[bytes]) -> None:
    """Registrations made again by the same person: void, and not counted as another's."""
    conn.execute(
        """
        update account_tokens set used_at = now(), payload = payload || '{"superseded": true}'
        where token_hash = any(%(hashes)s) and used_at is null
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


def void_undo_links(conn: psycopg.Connection, user_id: UUID, after, to: str) -> None:
    """The record's live undo links made after `after`, or back to the address `to`, stop
    working."""
    conn.execute(
        """
        update account_tokens set used_at = now()
        where user_id = %(user_id)s and purpose = 'email_change_undo' and used_at is null
          and (created_at > %(after)s or payload->>'email' = %(to)s)
        """,
        {"user_id": user_id, "after": after, "to": to},
    )
