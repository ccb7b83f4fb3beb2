"""SQL for erasure: the person's record and everything that names them, gone in one
transaction; the ledger of erasures (ids only, for `identity erasures reapply` after a
restore); and the suppression list (keyed hashes of addresses only)."""

from uuid import UUID

import psycopg


def lock_for_erasure(conn: psycopg.Connection, user_id: UUID) -> dict | None:
    """The record to erase, locked; with its staff role and the companies of which it is
    the only admin (each must get another admin, or go, first)."""
    return conn.execute(
        """
        select u.id, u.email, u.email_key,
               (select role from staff_roles r where r.user_id = u.id) as staff_role,
               (select coalesce(jsonb_agg(jsonb_build_object('id', c.id, 'name', c.name)
                                          order by c.name), '[]'::jsonb)
                from company_members m join companies c on c.id = m.company_id
                where m.user_id = u.id and m.role = 'admin'
                  and not exists (select 1 from company_members o
                                  where o.company_id = m.company_id and o.role = 'admin'
                                    and o.user_id <> u.id)) as sole_admin_of
        from users u where u.id = %(id)s
        for update
        """,
        {"id": user_id},
    ).fetchone()


# Whatever names the person outside the rows that cascade from their record: their mail
# still in the outbox (to their address), the counts kept under their id or their
# sign-ins' ids, their id as who last changed a company's field, as the inviter in an
# invitation's mailed link and in the profile the invitation made. Then the record, and
# with it (foreign keys, `on delete cascade`) every row of theirs: sign-ins and refresh
# tokens (so every token of theirs stops at once), flags and consent events, memberships,
# pictures, the trail about them; the trail of what they did to others keeps the deed
# without their id (`set null`).
_ERASE = (
    "delete from outbox where recipient = %(email)s",
    """
    delete from login_throttles
    where strpos(key, %(id)s::text) > 0
       or key in (select 'reauthenticate:' || s.id::text from sessions s
                  where s.user_id = %(id)s)
    """,
    """
    update companies c
    set field_sources = (select jsonb_object_agg(f.key, case when f.value ->> 'by' = %(id)s::text
                                                         then f.value - 'by' else f.value end)
                         from jsonb_each(c.field_sources) f)
    where c.field_sources::text like '%%' || %(id)s::text || '%%'
    """,
    # The profiles their invitations made name them as the source of the address.
    """
    update users u
    set field_sources = (select jsonb_object_agg(f.key, case when f.value ->> 'by' = %(id)s::text
                                                         then f.value - 'by' else f.value end)
                         from jsonb_each(u.field_sources) f)
    where u.id in (select i.user_id from company_invitations i where i.invited_by = %(id)s)
      and u.field_sources::text like '%%' || %(id)s::text || '%%'
    """,
    """
    update account_tokens set payload = payload - 'by'
    where payload ->> 'by' = %(id)s::text
    """,
    "delete from users where id = %(id)s",
)


def erase(conn: psycopg.Connection, user_id: UUID, email: str, *, ledger: bool = True) -> int:
    """Erase the record `user_id` (its address `email`), locked; the number of its entry in
    the erasure ledger (written unless this is the ledger's own reapplying)."""
    params = {"id": user_id, "email": email}
    for statement in _ERASE:
        conn.execute(statement, params)
    if not ledger:
        return conn.execute("select id from erasures where user_id = %(id)s", params).fetchone()[
            "id"
        ]
    return conn.execute(
        "insert into erasures (user_id) values (%(id)s) returning id", params
    ).fetchone()["id"]


def ledger(conn: psycopg.Connection) -> list[dict]:
    """The erasures of records that exist (again: a restored backup's), oldest first."""
    return conn.execute(
        """
        select e.id, e.user_id, e.erased_at from erasures e
        where exists (select 1 from users u where u.id = e.user_id)
        order by e.id
        """
    ).fetchall()


def suppress(conn: psycopg.Connection, address_hash: bytes) -> None:
    conn.execute(
        "insert into suppressed_addresses (address_hash) values (%s) on conflict do nothing",
        (address_hash,),
    )


def lift_suppression(conn: psycopg.Connection, address_hash: bytes) -> None:
    conn.execute("delete from suppressed_addresses where address_hash = %s", (address_hash,))


def suppressed_of(conn: psycopg.Connection, hashes: list[bytes]) -> list[bytes]:
    rows = conn.execute(
        "select address_hash from suppressed_addresses where address_hash = any(%s)", (hashes,)
    ).fetchall()
    return [bytes(row["address_hash"]) for row in rows]
