"""SQL for the user record."""

import json
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

# The fields a profile submission may carry, in column order.
PROFILE_COLUMNS = (
    "first_name",
    "infix",
    "last_name",
    "suffix",
    "gender",
    "phone",
    "mobile",
    "fax",
    "language",
)

# A record without a language is shown as English; `own_language` is the one the person
# chose (null: none, so their mail is in the language of the site that sends it).
USER_COLUMNS = (
    "id, email, first_name, infix, last_name, suffix, gender, phone, mobile, fax,"
    " coalesce(language, 'en') as language, language as own_language, status,"
    " field_sources, created_at, updated_at, registered_at"
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


# The account on the record: its address proven, its password and their history.


def lock_by_email_key(conn: psycopg.Connection, key: str) -> dict | None:
    return conn.execute(
        """
        select id, email, email_key, status, password_hash, email_verified_at,
               coalesce(language, 'en') as language, language as own_language, first_name,
               last_name
        from users where email_key = %(key)s for no key update
        """,
        {"key": key},
    ).fetchone()


_ACCOUNT = """
    select id, email, email_key, status, password_hash, email_verified_at,
           coalesce(language, 'en') as language, language as own_language, first_name,
           last_name, field_sources
    from users where id = %(id)s
"""


def account_of(conn: psycopg.Connection, user_id: UUID) -> dict | None:
    """The record's account columns, as they are now (no lock)."""
    return conn.execute(_ACCOUNT, {"id": user_id}).fetchone()


def lock_user(conn: psycopg.Connection, user_id: UUID) -> dict | None:
    """The record's account columns, its row locked until the transaction ends."""
    return conn.execute(_ACCOUNT + " for no key update", {"id": user_id}).fetchone()


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
        {
            "id": user_id,
            "password_hash": password_hash,
            "field_sources": Jsonb(field_sources),
            **fields,
        },
    )


def prove_by_provider(conn: psycopg.Connection, user_id: UUID) -> None:
    """A provider that vouches for the address joined the record: the address counts as
    proven and the record is an account (its password, if any, untouched)."""
    conn.execute(
        """
        update users set
            email_verified_at = coalesce(email_verified_at, now()),
            status = 'registered',
            registered_at = coalesce(registered_at, now()),
            updated_at = now()
        where id = %(id)s
        """,
        {"id": user_id},
    )


def set_password(conn: psycopg.Connection, user_id: UUID, password_hash: str) -> None:
    conn.execute(
        """
        update users set password_hash = %(hash)s, updated_at = now() where id = %(id)s
        """,
        {"id": user_id, "hash": password_hash},
    )


def clear_password(conn: psycopg.Connection, user_id: UUID) -> None:
    """No password signs in any more, until one is chosen with a reset link."""
    conn.execute(
        "update users set password_hash = null, updated_at = now() where id = %(id)s",
        {"id": user_id},
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


# Joining a minimal profile into an account (the undo of a change of address, when a form
# put the old address on a record of its own meanwhile): what becomes of each table that
# names a user. A test holds this against the schema, so a new table cannot slip past.
JOINED_ROWS = {
    "users": "dropped",  # the profile's own row: its blanks filled into the account
    # The address's flags and their proof go to the account; of a list both have a flag
    # on, the account's own stands (anyone may sign the address up: that must not unmake
    # the owner's confirmed subscription).
    "subscriptions": "moved",
    "consent_events": "copied",  # append-only: copied with their times, then dropped
    "newsletter_confirmations": "moved",  # a confirmation mailed to the address still works
    "notification_settings": "moved",
    "login_attempts": "moved",
    # What only an account has: a minimal profile has none, or only a registration
    # pending at the address, which the join voids.
    "account_tokens": "dropped",
    "password_history": "dropped",
    "sessions": "dropped",
    "second_factors": "dropped",
    "recovery_codes": "dropped",
    "login_challenges": "dropped",
    "social_identities": "dropped",  # none: joining one makes an account of a profile
    "company_members": "dropped",  # none: accepting an invitation takes an account
    # An invitation of the address goes with its mailed link (account_tokens): the admin
    # invites the account again.
    "company_invitations": "dropped",
    "pictures": "dropped",  # none: only a signed-in person puts one up
    "staff_roles": "dropped",  # none: staff are people with accounts
    "audit_events": "copied",  # append-only: what was done to the profile, with its times
}

_JOIN_ROWS = (
    """
    insert into subscriptions (user_id, newsletter, state, changed_at)
    select %(account)s, newsletter, state, changed_at
    from subscriptions where user_id = %(minimal)s
    on conflict (user_id, newsletter) do nothing
    """,
    """
    insert into consent_events (user_id, newsletter, action, state, at, recorded_at, site,
                                client_ip, user_agent, consent_text, channel)
    select %(account)s, newsletter, action, state, at, recorded_at, site, client_ip,
           user_agent, consent_text, channel
    from consent_events where user_id = %(minimal)s order by id
    """,
    "update newsletter_confirmations set user_id = %(account)s where user_id = %(minimal)s",
    """
    insert into notification_settings (user_id, dashboard, event, channels, changed_at)
    select %(account)s, dashboard, event, channels, changed_at
    from notification_settings where user_id = %(minimal)s
    on conflict do nothing
    """,
    "update login_attempts set user_id = %(account)s where user_id = %(minimal)s",
    """
    insert into audit_events (at, event, actor, actor_id, subject_id, site, key_prefix,
                              client_ip, reason, details)
    select at, event, actor, actor_id, %(account)s, site, key_prefix, client_ip, reason,
           details
    from audit_events where subject_id = %(minimal)s order by id
    """,
    "delete from users where id = %(minimal)s",
)


_HOLDER = f"""
    select id, email, status, password_hash, email_verified_at, field_sources,
           {", ".join(PROFILE_COLUMNS)}
    from users
"""  # noqa: S608 - fixed column list


def lock_holder(conn: psycopg.Connection, key: str) -> dict | None:
    """The record with this address, whole, locked for a join (or None)."""
    return conn.execute(_HOLDER + " where email_key = %(key)s for update", {"key": key}).fetchone()


def lock_record(conn: psycopg.Connection, user_id: UUID) -> dict | None:
    """The record, whole (as `lock_holder` reads it), locked for a join."""
    return conn.execute(_HOLDER + " where id = %(id)s for update", {"id": user_id}).fetchone()


def join_minimal_into(conn: psycopg.Connection, account_id: UUID, minimal: dict) -> None:
    """Join the minimal profile `minimal` (its row as `lock_holder` gives it) into
    the account: blanks of the account filled from it (with their sources), its rows
    treated as `JOINED_ROWS` says, and the profile removed, freeing its address."""
    account = conn.execute(
        f"select {', '.join(PROFILE_COLUMNS)}, field_sources from users"  # noqa: S608
        " where id = %(id)s for no key update",
        {"id": account_id},
    ).fetchone()
    fill, sources = {"id": account_id}, {}
    for column in PROFILE_COLUMNS:
        blank = account[column] is None or (column == "gender" and account[column] == "unspecified")
        theirs = minimal[column]
        if blank and theirs is not None and not (column == "gender" and theirs == "unspecified"):
            fill[column] = theirs
            if column in minimal["field_sources"]:
                sources[column] = minimal["field_sources"][column]
    fill["field_sources"] = field_sources_json(sources)
    for statement in _JOIN_ROWS:
        conn.execute(statement, {"account": account_id, "minimal": minimal["id"]})
    if len(fill) > 2:
        fill_blanks(conn, [fill])
