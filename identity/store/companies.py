"""SQL for companies: their profiles, members, invitations and partners."""

from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

# The fields of a company's profile its admins set, in column order.
COMPANY_FIELDS = (
    "name",
    "street",
    "house_number",
    "postal_code",
    "city",
    "province",
    "country",
    "attention_of",
    "email",
    "phone",
    "vat_number",
    "bank_account",
)
_COLUMNS = (
    "id, " + ", ".join(COMPANY_FIELDS) + ", internal_description, is_partner, partner_id,"
    " field_sources, created_at, updated_at"
)

# A person's relation to a company, in one query: their own role there, or "partner" when
# they belong to the company this one chose as its partner (an admin or member of both is
# what they are in this one).
_RELATION = """
    select coalesce(
        (select role from company_members where company_id = %(company)s and user_id = %(user)s),
        (select 'partner' from companies c
         join company_members m on m.company_id = c.partner_id and m.user_id = %(user)s
         where c.id = %(company)s)
    ) as relation
"""


def relation(conn: psycopg.Connection, company_id: UUID, user_id: UUID) -> str | None:
    """'admin', 'member', 'partner' or None (no such company, or nothing to do with it)."""
    return conn.execute(_RELATION, {"company": company_id, "user": user_id}).fetchone()["relation"]


def insert(conn: psycopg.Connection, fields: dict, sources: dict, admin: UUID) -> dict:
    """A new company, `admin` its first admin."""
    names = list(fields)
    row = conn.execute(
        f"""
        with company as (
            insert into companies ({", ".join(names)}, field_sources)
            values ({", ".join(f"%({n})s" for n in names)}, %(sources)s)
            returning {_COLUMNS}
        ), admin as (
            insert into company_members (company_id, user_id, role)
            select id, %(admin)s, 'admin' from company
        )
        select * from company
        """,  # noqa: S608 - column names from COMPANY_FIELDS
        {**fields, "sources": Jsonb(sources), "admin": admin},
    ).fetchone()
    return row


def get_with_relation(conn: psycopg.Connection, company_id: UUID, user_id: UUID) -> dict | None:
    """The company and the person's relation to it (`relation`, as `relation` gives it), in
    one prepared statement: a read is one round trip. None: no such company."""
    return conn.execute(
        f"""
        select {_COLUMNS}, ({_RELATION}) as relation
        from companies where id = %(company)s
        """,  # noqa: S608 - fixed columns
        {"company": company_id, "user": user_id},
        prepare=True,
    ).fetchone()


def get(conn: psycopg.Connection, company_id: UUID) -> dict | None:
    return conn.execute(
        f"select {_COLUMNS} from companies where id = %(id)s",  # noqa: S608 - fixed columns
        {"id": company_id},
        prepare=True,
    ).fetchone()


def lock(conn: psycopg.Connection, company_id: UUID) -> dict | None:
    return conn.execute(
        f"select {_COLUMNS} from companies where id = %(id)s for no key update",  # noqa: S608
        {"id": company_id},
    ).fetchone()


def update(conn: psycopg.Connection, company_id: UUID, fields: dict, sources: dict) -> dict:
    assignments = ", ".join(f"{name} = %({name})s" for name in fields)
    return conn.execute(
        f"""
        update companies set {assignments}, field_sources = field_sources || %(sources)s,
               updated_at = now()
        where id = %(id)s
        returning {_COLUMNS}
        """,  # noqa: S608 - column names from COMPANY_FIELDS
        {**fields, "sources": Jsonb(sources), "id": company_id},
    ).fetchone()


def set_partner(conn: psycopg.Connection, company_id: UUID, partner_id: UUID | None) -> None:
    conn.execute(
        "update companies set partner_id = %(p)s, updated_at = now() where id = %(id)s",
        {"p": partner_id, "id": company_id},
    )


def flag_partner(conn: psycopg.Connection, company_id: UUID, on: bool) -> bool:
    """Mark the company as one customers may choose as partner (or not); False: none.
    Unflagged, it stops being any customer's partner."""
    row = conn.execute(
        "update companies set is_partner = %(on)s where id = %(id)s returning id",
        {"on": on, "id": company_id},
    ).fetchone()
    if row is not None and not on:
        conn.execute(
            "update companies set partner_id = null where partner_id = %(id)s", {"id": company_id}
        )
    return row is not None


# --- members ---------------------------------------------------------------------------

_CONTACT = (
    "u.id as user_id, u.email, u.first_name, u.infix, u.last_name, u.phone, u.mobile,"
    " m.role, m.joined_at"
)


def members(conn: psycopg.Connection, company_id: UUID) -> list[dict]:
    """The company's people with their contact data and role, admins first."""
    return conn.execute(
        f"""
        select {_CONTACT}
        from company_members m join users u on u.id = m.user_id
        where m.company_id = %(id)s
        order by m.role, u.email_key
        """,  # noqa: S608 - fixed columns
        {"id": company_id},
    ).fetchall()


def lock_members(conn: psycopg.Connection, company_id: UUID) -> dict[UUID, str]:
    """Every member's role, the rows locked (in user order): changes of roles and
    departures queue, so the last admin is always counted right."""
    rows = conn.execute(
        """
        select user_id, role from company_members where company_id = %(id)s
        order by user_id for update
        """,
        {"id": company_id},
    ).fetchall()
    return {row["user_id"]: row["role"] for row in rows}


def set_role(conn: psycopg.Connection, company_id: UUID, user_id: UUID, role: str) -> None:
    conn.execute(
        """
        update company_members set role = %(role)s
        where company_id = %(company)s and user_id = %(user)s
        """,
        {"role": role, "company": company_id, "user": user_id},
    )


def remove_member(conn: psycopg.Connection, company_id: UUID, user_id: UUID) -> None:
    conn.execute(
        "delete from company_members where company_id = %(company)s and user_id = %(user)s",
        {"company": company_id, "user": user_id},
    )


def add_member(conn: psycopg.Connection, company_id: UUID, user_id: UUID, role: str) -> bool:
    """False when the person belongs to the company already (their role stays)."""
    row = conn.execute(
        """
        insert into company_members (company_id, user_id, role)
        values (%(company)s, %(user)s, %(role)s)
        on conflict do nothing returning user_id
        """,
        {"company": company_id, "user": user_id, "role": role},
    ).fetchone()
    return row is not None


# --- invitations -------------------------------------------------------------------------


def open_invitation(
    conn: psycopg.Connection,
    company_id: UUID,
    user_id: UUID,
    email_key: str,
    role: str,
    invited_by: UUID,
    seconds: int,
) -> UUID:
    """A new open invitation of the record, replacing any open one of this company (its
    row withdrawn): one open invitation per company and record. Its id."""
    conn.execute(
        """
        update company_invitations set withdrawn_at = now()
        where company_id = %(company)s and user_id = %(user)s
          and accepted_at is null and withdrawn_at is null
        """,
        {"company": company_id, "user": user_id},
    )
    return conn.execute(
        """
        insert into company_invitations
            (company_id, user_id, email_key, role, invited_by, expires_at)
        values (%(company)s, %(user)s, %(key)s, %(role)s, %(by)s,
                now() + make_interval(secs => %(seconds)s))
        returning id
        """,
        {
            "company": company_id,
            "user": user_id,
            "key": email_key,
            "role": role,
            "by": invited_by,
            "seconds": seconds,
        },
    ).fetchone()["id"]


def withdraw_invited_by(conn: psycopg.Connection, company_id: UUID, user_id: UUID) -> None:
    """Withdraw the open invitations `user_id` made for the company (they are no admin of
    it any more)."""
    conn.execute(
        """
        update company_invitations set withdrawn_at = now()
        where company_id = %(company)s and invited_by = %(user)s
          and accepted_at is null and withdrawn_at is null
        """,
        {"company": company_id, "user": user_id},
    )


def open_invitations(conn: psycopg.Connection, company_id: UUID) -> list[dict]:
    return conn.execute(
        """
        select i.id, u.email, i.role, i.created_at, i.expires_at
        from company_invitations i join users u on u.id = i.user_id
        where i.company_id = %(id)s and i.accepted_at is null and i.withdrawn_at is null
          and i.expires_at > now()
        order by i.created_at, i.id
        """,
        {"id": company_id},
    ).fetchall()


def withdraw(conn: psycopg.Connection, company_id: UUID, invitation_id: UUID) -> dict | None:
    """Withdraw an open invitation of the company; its record id, or None: no such one."""
    return conn.execute(
        """
        update company_invitations set withdrawn_at = now()
        where id = %(id)s and company_id = %(company)s
          and accepted_at is null and withdrawn_at is null
        returning user_id
        """,
        {"id": invitation_id, "company": company_id},
    ).fetchone()


def take_invitation(conn: psycopg.Connection, invitation_id: UUID) -> dict | None:
    """The open, live invitation, accepted now; None for any other."""
    return conn.execute(
        """
        update company_invitations set accepted_at = now()
        where id = %(id)s and accepted_at is null and withdrawn_at is null
          and expires_at > now()
        returning company_id, user_id, email_key, role
        """,
        {"id": invitation_id},
    ).fetchone()


# --- the partner's view ------------------------------------------------------------------


def customers(
    conn: psycopg.Connection, partner_id: UUID, after: UUID | None, limit: int
) -> list[dict]:
    """A page of the companies that chose `partner_id` as partner, by id after `after`."""
    return conn.execute(
        f"""
        select {_COLUMNS} from companies
        where partner_id = %(partner)s and (%(after)s::uuid is null or id > %(after)s)
        order by id
        limit %(limit)s
        """,  # noqa: S608 - fixed columns
        {"partner": partner_id, "after": after, "limit": limit},
    ).fetchall()


def members_of(conn: psycopg.Connection, company_ids: list[UUID]) -> dict[UUID, list[dict]]:
    """The people of each of these companies, with contact data and role, admins first."""
    found = {company_id: [] for company_id in company_ids}
    rows = conn.execute(
        f"""
        select m.company_id, {_CONTACT}
        from company_members m join users u on u.id = m.user_id
        where m.company_id = any(%(ids)s)
        order by m.company_id, m.role, u.email_key
        """,  # noqa: S608 - fixed columns
        {"ids": company_ids},
    ).fetchall()
    for row in rows:
        found[row.pop("company_id")].append(row)
    return found
