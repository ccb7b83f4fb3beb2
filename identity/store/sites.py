"""SQL for sites and their keys."""

from uuid import UUID

import psycopg


def insert_site_if_new(conn: psycopg.Connection, name: str) -> UUID:
    row = conn.execute(
        """
        insert into sites (name) values (%(name)s)
        on conflict (name) do update set name = excluded.name
        returning id
        """,
        {"name": name},
    ).fetchone()
    return row["id"]


def insert_key(
    conn: psycopg.Connection, site_id: UUID, key_hash: bytes, key_prefix: str, scopes: list[str]
) -> dict:
    return conn.execute(
        """
        insert into site_keys (site_id, key_hash, key_prefix, scopes)
        values (%(site_id)s, %(key_hash)s, %(key_prefix)s, %(scopes)s)
        returning id, key_prefix, scopes, created_at
        """,
        {"site_id": site_id, "key_hash": key_hash, "key_prefix": key_prefix, "scopes": scopes},
    ).fetchone()


def find_active_key(conn: psycopg.Connection, key_hash: bytes) -> dict | None:
    return conn.execute(
        """
        select k.id, k.scopes, s.id as site_id, s.name as site_name,
               k.last_used_at is null or k.last_used_at < now() - interval '1 minute'
                   as last_used_stale
        from site_keys k join sites s on s.id = k.site_id
        where k.key_hash = %(key_hash)s and k.revoked_at is null
        """,
        {"key_hash": key_hash},
        prepare=True,
    ).fetchone()


# Last use is kept to the minute: a write on every request would cost more than it tells.
def touch_key(conn: psycopg.Connection, key_id: UUID) -> None:
    conn.execute(
        """
        update site_keys set last_used_at = now() where id = %(id)s
        """,
        {"id": key_id},
    )


def revoke_keys(conn: psycopg.Connection, site_name: str, key_prefix: str | None) -> int:
    """Revoke every active key of a site, or the one whose prefix is given; how many were."""
    cur = conn.execute(
        """
        update site_keys k set revoked_at = now()
        from sites s
        where s.id = k.site_id and s.name = %(site)s and k.revoked_at is null
          and (%(prefix)s::text is null or k.key_prefix = %(prefix)s)
        """,
        {"site": site_name, "prefix": key_prefix},
    )
    return cur.rowcount


def list_keys(conn: psycopg.Connection) -> list[dict]:
    return conn.execute(
        """
        select s.name as site, k.key_prefix, k.scopes, k.created_at, k.last_used_at, k.revoked_at
        from sites s join site_keys k on k.site_id = s.id
        order by s.name, k.created_at
        """
    ).fetchall()


# One import per site: a session-level advisory lock keyed by the site, in a key space of
# its own (the two-int form), so it cannot meet the migrations' lock.
_IMPORT_LOCK_SPACE = 0x1D_1A


def try_lock_import(conn: psycopg.Connection, site_id: UUID) -> bool:
    row = conn.execute(
        "select pg_try_advisory_lock(%(space)s, hashtext(%(site)s::text)) as locked",
        {"space": _IMPORT_LOCK_SPACE, "site": site_id},
    ).fetchone()
    return row["locked"]


def unlock_import(conn: psycopg.Connection, site_id: UUID) -> None:
    conn.execute(
        "select pg_advisory_unlock(%(space)s, hashtext(%(site)s::text))",
        {"space": _IMPORT_LOCK_SPACE, "site": site_id},
    )
