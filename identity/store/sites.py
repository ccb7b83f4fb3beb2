"""SQL for sites and their keys."""

from uuid import UUID

import psycopg
from psycopg import sql

# What a site record says, as `identity sites create|update` set it.
SITE_FIELDS = ("brand", "sender", "pages_url", "redirect_uris", "language")


def insert_site(conn: psycopg.Connection, name: str, fields: dict) -> UUID | None:
    """A new site with `fields` (a subset of SITE_FIELDS); None when the name is taken."""
    columns = ["name", *(column for column in SITE_FIELDS if column in fields)]
    row = conn.execute(
        sql.SQL(
            "insert into sites ({columns}) values ({values})"
            " on conflict (name) do nothing returning id"
        ).format(
            columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
            values=sql.SQL(", ").join(map(sql.Placeholder, columns)),
        ),
        {**fields, "name": name},
    ).fetchone()
    return row["id"] if row else None


def update_site(conn: psycopg.Connection, name: str, fields: dict) -> UUID | None:
    """Set `fields` of site `name` (locked until the transaction ends); None when unknown."""
    columns = [column for column in SITE_FIELDS if column in fields]
    assignments = [
        sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
        for column in columns
    ]
    row = conn.execute(
        sql.SQL("update sites set {assignments} where name = %(name)s returning id").format(
            assignments=sql.SQL(", ").join([*assignments, sql.SQL("updated_at = now()")])
        ),
        {"name": name, **fields},
    ).fetchone()
    return row["id"] if row else None


def find_site(conn: psycopg.Connection, name: str) -> dict | None:
    return conn.execute(
        """
        select id, name, brand, sender, pages_url, redirect_uris, language, created_at,
               updated_at
        from sites where name = %(name)s
        """,
        {"name": name},
    ).fetchone()


def all_sites(conn: psycopg.Connection) -> list[dict]:
    """Every site, with the lists it manages and its keys (active and revoked)."""
    return conn.execute(
        """
        select s.id, s.name, s.brand, s.sender, s.pages_url, s.redirect_uris, s.language,
               s.created_at, s.updated_at,
               coalesce((select array_agg(n.key order by n.id) from newsletters n
                         where n.site_id = s.id), '{}') as lists,
               coalesce((select jsonb_agg(jsonb_build_object(
                             'prefix', k.key_prefix, 'scopes', k.scopes,
                             'created_at', k.created_at, 'last_used_at', k.last_used_at,
                             'revoked_at', k.revoked_at) order by k.created_at)
                         from site_keys k where k.site_id = s.id), '[]') as keys
        from sites s
        order by s.name
        """
    ).fetchall()


def manage_lists(conn: psycopg.Connection, site_id: UUID, lists: list[str]) -> list[dict]:
    """Make site `site_id` the manager of exactly the lists `lists` (keys): each of them
    moves to it (from any other site), and the lists it managed that are not named are
    left unmanaged. The lists named that are not in the catalog, as rows of their key."""
    conn.execute(
        """
        update newsletters set site_id = null
        where site_id = %(site)s and not (key = any(%(lists)s))
        """,
        {"site": site_id, "lists": lists},
    )
    return conn.execute(
        """
        with moved as (
            update newsletters set site_id = %(site)s where key = any(%(lists)s)
            returning key
        )
        select key from unnest(%(lists)s::text[]) as key where key not in (select key from moved)
        """,
        {"site": site_id, "lists": lists},
    ).fetchall()


def newsletter_keys(conn: psycopg.Connection) -> set[str]:
    return {row["key"] for row in conn.execute("select key from newsletters")}


def mailing_site(conn: psycopg.Connection, name: str) -> dict | None:
    """What a person's mail needs of the site they signed in through."""
    return conn.execute(
        "select id, name, pages_url, language from sites where name = %(name)s",
        {"name": name},
        prepare=True,
    ).fetchone()


def brand_of(conn: psycopg.Connection, name: str) -> str | None:
    """The name a site's mails and authenticator entries use: its brand, else its name;
    None for a site not known here."""
    row = conn.execute(
        "select coalesce(brand, name) as brand from sites where name = %(name)s", {"name": name}
    ).fetchone()
    return row["brand"] if row else None


def site_id(conn: psycopg.Connection, name: str) -> UUID | None:
    row = conn.execute("select id from sites where name = %(name)s", {"name": name}).fetchone()
    return row["id"] if row else None


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
        select k.id, k.scopes, s.id as site_id, s.name as site_name, s.pages_url, s.language,
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
