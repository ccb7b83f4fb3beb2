"""SQL for staff work: searching records, a record as staff see it, and an impersonation's
sign-in."""

from uuid import UUID

import psycopg

from identity.store.users import USER_COLUMNS

# What a search shows of each record found: enough to tell people apart.
_FOUND = """
    select u.id, u.email, u.first_name, u.infix, u.last_name, u.status, u.created_at,
           (select coalesce(jsonb_agg(c.name order by c.name), '[]'::jsonb)
            from company_members m join companies c on c.id = m.company_id
            where m.user_id = u.id) as companies
    from users u
"""


def search(conn: psycopg.Connection, q: str, after: UUID | None, limit: int) -> list[dict]:
    """Records whose address, first or last name, or a company's name begins with `q`
    (lowercase; an address also by its domain after the @), by address; those after the
    record `after`. Each match is a prefix search of an index."""
    return conn.execute(
        _FOUND  # noqa: S608 - fixed query
        + """
        where u.id in (
                select id from users where email_key like %(prefix)s
                union select id from users where lower(first_name) like %(prefix)s
                union select id from users where lower(last_name) like %(prefix)s
                union select m.user_id from companies c
                      join company_members m on m.company_id = c.id
                      where lower(c.name) like %(prefix)s)
          and (%(after)s::uuid is null
               or u.email_key > (select email_key from users where id = %(after)s))
        order by u.email_key
        limit %(limit)s
        """,
        {"prefix": _like_prefix(q), "after": after, "limit": limit},
    ).fetchall()


def _like_prefix(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def record(conn: psycopg.Connection, user_id: UUID) -> dict | None:
    """The record as staff see it: its fields and their sources, its state, and what else
    they need to handle a request (companies and roles, a staff role, a second factor,
    social identities)."""
    return conn.execute(
        f"""
        select {USER_COLUMNS},
               email_verified_at, password_hash is not null as has_password,
               (select coalesce(jsonb_agg(jsonb_build_object(
                           'id', c.id, 'name', c.name, 'role', m.role) order by c.name),
                       '[]'::jsonb)
                from company_members m join companies c on c.id = m.company_id
                where m.user_id = u.id) as companies,
               (select role from staff_roles r where r.user_id = u.id) as staff_role,
               exists (select 1 from second_factors f
                       where f.user_id = u.id and f.confirmed_at is not null) as second_factor,
               (select coalesce(jsonb_agg(provider order by provider), '[]'::jsonb)
                from social_identities s where s.user_id = u.id) as social_identities
        from users u where id = %(id)s
        """,  # noqa: S608 - fixed column list
        {"id": user_id},
    ).fetchone()


def target(conn: psycopg.Connection, user_id: UUID) -> dict | None:
    """Who an impersonation would act as: their state and any staff role."""
    return conn.execute(
        """
        select u.id, u.status, (select role from staff_roles r where r.user_id = u.id) as staff_role
        from users u where u.id = %(id)s
        """,
        {"id": user_id},
    ).fetchone()


def impersonation(
    conn: psycopg.Connection, user_id: UUID, staff_id: UUID, site_name: str, seconds: int
) -> UUID:
    """A sign-in of `user_id` for staff member `staff_id`: no refresh token, over in
    `seconds`, made with no factor of the person's (`amr` empty). Its id."""
    return conn.execute(
        """
        insert into sessions (user_id, site_name, expires_at, amr, impersonated_by)
        values (%(user)s, %(site)s, now() + make_interval(secs => %(seconds)s), '{}',
                %(staff)s)
        returning id
        """,
        {"user": user_id, "site": site_name, "seconds": seconds, "staff": staff_id},
    ).fetchone()["id"]
