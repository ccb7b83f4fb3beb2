"""SQL for the user record."""

import json
from uuid import UUID

import psycopg

# The fields a profile submission may carry, in column order.
PROFILE_COLUMNS = (
    "first_name", "infix", "last_name", "suffix", "gender", "phone", "mobile", "fax", "language",
)  # fmt: skip

# A record without a language gets mail in English: the language shown is the one in force.
USER_COLUMNS = (
    "id, email, first_name, infix, last_name, suffix, gender, phone, mobile, fax,"
    " coalesce(language, 'en') as language, status, field_sources, created_at, updated_at,"
    " registered_at"
)


def get_by_id(conn: psycopg.Connection, user_id: UUID) -> dict | None:
    return conn.execute(
        f"select {USER_COLUMNS} from users where id = %(id)s",  # noqa: S608 - fixed column list
        {"id": user_id},
        prepare=True,
    ).fetchone()


def get_by_email(conn: psycopg.Connection, key: str) -> dict | None:
    return conn.execute(
        f"select {USER_COLUMNS} from users where email_key = %(key)s",  # noqa: S608
        {"key": key},
        prepare=True,
    ).fetchone()


def field_sources_json(sources: dict) -> str:
    """`field_sources` as `insert_new` and `fill_blanks` take it: JSON text, which a caller
    writing many records makes once for all that have the same sources."""
    return json.dumps(sources)


# Lists go as binary parameters (%(name)b): as text, psycopg would quote and escape every
# element of every array, which was most of the import's time.


def lock_by_email(conn: psycopg.Connection, keys: list[str]) -> dict[str, dict]:
    """The records with these addresses, locked until the transaction ends, by email key.
    Locked in key order, as `insert_new` takes them: two writers of the same addresses
    wait for each other instead of deadlocking."""
    if not keys:
        return {}
    rows = conn.execute(
        f"""
        select id, email_key, {", ".join(PROFILE_COLUMNS)}
        from users where email_key = any(%(keys)b)
        order by email_key
        for no key update
        """,  # noqa: S608 - fixed column list
        {"keys": keys},
    ).fetchall()
    return {row["email_key"]: row for row in rows}


def insert_new(conn: psycopg.Connection, records: list[dict]) -> dict[str, UUID]:
    """Insert the records whose address is not yet known; the ids of those inserted, by
    email key. A record whose address is known, or that a concurrent transaction inserted
    first, is left out of the answer, for the caller to merge into. `records` come in
    email key order: the unique index is locked entry by entry in that order. Their
    `field_sources` come as JSON text (`field_sources_json`)."""
    if not records:
        return {}
    columns = ("email", "email_key", *PROFILE_COLUMNS)
    params = {column: [record.get(column) for record in records] for column in columns}
    params["gender"] = [record.get("gender") or "unspecified" for record in records]
    params["field_sources"] = [record["field_sources"] for record in records]
    rows = conn.execute(
        f"""
        insert into users ({", ".join(columns)}, field_sources)
        select * from unnest(
            {", ".join(f"%({column})b::text[]" for column in columns)},
            %(field_sources)b::text[]::jsonb[])
        on conflict (email_key) do nothing
        returning id, email_key
        """,  # noqa: S608 - fixed column list
        params,
    ).fetchall()
    return {row["email_key"]: row["id"] for row in rows}


_FILL_BLANKS = ", ".join(
    f"{column} = coalesce(v.{column}, u.{column})" for column in PROFILE_COLUMNS
)


def fill_blanks(conn: psycopg.Connection, fills: list[dict]) -> None:
    """Set the given fields of existing, locked records; `None` leaves a field as it is.
    The sources of what is set come as JSON text (`field_sources_json`)."""
    if not fills:
        return
    params = {column: [fill.get(column) for fill in fills] for column in PROFILE_COLUMNS}
    params["id"] = [fill["id"] for fill in fills]
    params["field_sources"] = [fill["field_sources"] for fill in fills]
    conn.execute(
        f"""
        update users u set
            {_FILL_BLANKS},
            field_sources = u.field_sources || v.field_sources,
            updated_at = now()
        from unnest(
            %(id)b::uuid[],
            {", ".join(f"%({column})b::text[]" for column in PROFILE_COLUMNS)},
            %(field_sources)b::text[]::jsonb[]
        ) as v(id, {", ".join(PROFILE_COLUMNS)}, field_sources)
        where u.id = v.id
        """,  # noqa: S608 - fixed column list
        params,
    )
