"""SQL for staff roles."""

from uuid import UUID

import psycopg


def grant(conn: psycopg.Connection, user_id: UUID, role: str) -> None:
    """The person's staff role is `role` (one per person: a grant replaces the last)."""
    conn.execute(
        """
        insert into staff_roles (user_id, role) values (%(id)s, %(role)s)
        on conflict (user_id) do update set role = excluded.role, granted_at = now()
        """,
        {"id": user_id, "role": role},
    )


def revoke(conn: psycopg.Connection, user_id: UUID) -> bool:
    row = conn.execute(
        "delete from staff_roles where user_id = %(id)s returning role", {"id": user_id}
    ).fetchone()
    return row is not None


def everyone(conn: psycopg.Connection) -> list[dict]:
    return conn.execute(
        """
        select u.email, r.role, r.granted_at,
               exists (select 1 from second_factors f
                       where f.user_id = u.id and f.confirmed_at is not null) as second_factor
        from staff_roles r join users u on u.id = r.user_id
        order by r.role, u.email_key
        """
    ).fetchall()
