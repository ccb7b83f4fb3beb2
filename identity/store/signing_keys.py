"""SQL for the keys that sign access tokens."""

from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

# Making the first key and rotating take this transaction-level advisory lock, so two
# processes doing either at once do it one after the other; its own key space (the
# two-int form), like the import's.
_LOCK_SPACE = 0x1D_5E
_LOCK_KEY = 1


def lock(conn: psycopg.Connection) -> datetime:
    """Until the transaction ends, be the only one changing the keys; the database's time
    once the lock is held (a transaction's now() is when it began, maybe before a change
    it waited for)."""
    conn.execute(
        "select pg_advisory_xact_lock(%(space)s, %(key)s)",
        {"space": _LOCK_SPACE, "key": _LOCK_KEY},
    )
    return conn.execute("select clock_timestamp() as now").fetchone()["now"]


def published_keys(conn: psycopg.Connection) -> list[dict]:
    """Every key published now, newest first: the one that signs, one that will (made by
    a rotation, signing from its `signs_from`), and the retired ones still published. A
    revoked key is never among them."""
    return conn.execute(
        """
        select kid, algorithm, public_jwk, private_key, signs_from, retired_at, publish_until
        from signing_keys
        where revoked_at is null and (retired_at is null or publish_until > now())
        order by created_at desc, kid
        """
    ).fetchall()


def newest_key_algorithm(conn: psycopg.Connection) -> str | None:
    """The algorithm of the newest key (the one not retired: it signs, or will); None when
    there is no key yet."""
    row = conn.execute("select algorithm from signing_keys where retired_at is null").fetchone()
    return None if row is None else row["algorithm"]


def insert_key(
    conn: psycopg.Connection,
    *,
    kid: str,
    algorithm: str,
    public_jwk: dict,
    private_key: bytes,
    signs_from: datetime,
) -> None:
    """A new key, published now and signing from `signs_from` (a time of the database,
    which every replica reads the same)."""
    conn.execute(
        """
        insert into signing_keys (kid, algorithm, public_jwk, private_key, signs_from)
        values (%(kid)s, %(algorithm)s, %(public_jwk)s, %(private_key)s, %(signs_from)s)
        """,
        {
            "kid": kid,
            "algorithm": algorithm,
            "public_jwk": Jsonb(public_jwk),
            "private_key": private_key,
            "signs_from": signs_from,
        },
    )


def retire_signing_keys(
    conn: psycopg.Connection, at: datetime, publish_seconds: float
) -> list[str]:
    """Retire, at `at`, the key that signs and any that would sign later, each then
    published `publish_seconds` more; a key already due to retire sooner keeps its time.
    The kids retired."""
    rows = conn.execute(
        """
        update signing_keys
        set retired_at = %(at)s,
            publish_until = %(at)s + make_interval(secs => %(publish)s)
        where revoked_at is null and (retired_at is null or retired_at > %(at)s)
        returning kid
        """,
        {"at": at, "publish": publish_seconds},
    ).fetchall()
    return [row["kid"] for row in rows]


def revoke_published_keys(conn: psycopg.Connection) -> list[str]:
    """Withdraw every key still published, at once: their tokens are refused and they
    leave the key set. Their kids."""
    rows = conn.execute(
        """
        update signing_keys set revoked_at = now()
        where revoked_at is null and (retired_at is null or publish_until > now())
        returning kid
        """
    ).fetchall()
    return [row["kid"] for row in rows]


def list_keys(conn: psycopg.Connection) -> list[dict]:
    """Every key ever made, newest first, without its private half."""
    return conn.execute(
        """
        select kid, algorithm, created_at, signs_from, retired_at, publish_until, revoked_at
        from signing_keys
        order by created_at desc, kid
        """
    ).fetchall()
