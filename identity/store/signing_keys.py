"""SQL for the keys that sign access tokens."""

import psycopg
from psycopg.types.json import Jsonb

# Making the first key and rotating take this transaction-level advisory lock, so two
# processes doing either at once do it one after the other; its own key space (the
# two-int form), like the import's.
_LOCK_SPACE = 0x1D_5E
_LOCK_KEY = 1


def lock(conn: psycopg.Connection) -> None:
    """Until the transaction ends, be the only one changing the keys."""
    conn.execute(
        "select pg_advisory_xact_lock(%(space)s, %(key)s)",
        {"space": _LOCK_SPACE, "key": _LOCK_KEY},
    )


def published_keys(conn: psycopg.Connection) -> list[dict]:
    """The signing key and every retired key still published, newest first."""
    return conn.execute(
        """
        select kid, algorithm, public_jwk, private_key, retired_at, publish_until
        from signing_keys
        where retired_at is null or publish_until > now()
        order by created_at desc, kid
        """
    ).fetchall()


def has_signing_key(conn: psycopg.Connection) -> bool:
    return (
        conn.execute("select 1 from signing_keys where retired_at is null").fetchone() is not None
    )


def insert_key(
    conn: psycopg.Connection, *, kid: str, algorithm: str, public_jwk: dict, private_key: bytes
) -> None:
    conn.execute(
        """
        insert into signing_keys (kid, algorithm, public_jwk, private_key)
        values (%(kid)s, %(algorithm)s, %(public_jwk)s, %(private_key)s)
        """,
        {
            "kid": kid,
            "algorithm": algorithm,
            "public_jwk": Jsonb(public_jwk),
            "private_key": private_key,
        },
    )


def retire_signing_key(conn: psycopg.Connection, publish_seconds: int) -> str | None:
    """Retire the signing key, published `publish_seconds` more; its kid, if there was one."""
    row = conn.execute(
        """
        update signing_keys
        set retired_at = now(), publish_until = now() + make_interval(secs => %(seconds)s)
        where retired_at is null
        returning kid
        """,
        {"seconds": publish_seconds},
    ).fetchone()
    return None if row is None else row["kid"]


def list_keys(conn: psycopg.Connection) -> list[dict]:
    """Every key ever made, newest first, without its private half."""
    return conn.execute(
        """
        select kid, algorithm, created_at, retired_at, publish_until
        from signing_keys
        order by created_at desc, kid
        """
    ).fetchall()
