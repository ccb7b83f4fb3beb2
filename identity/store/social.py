"""SQL for social sign-in: the flows begun at `authorize`, and the identities joined to
records."""

from uuid import UUID

import psycopg

# Flows left behind (a person who never came back) are removed this many at a time by
# each new one, so the table stays the size of the sign-ins under way.
_SWEEP = 100


def begin_flow(
    conn: psycopg.Connection,
    *,
    state_hash: bytes,
    provider: str,
    site_id: UUID,
    redirect_uri: str,
    nonce: str,
    code_verifier: str,
    seconds: int,
) -> None:
    """Keep a new flow for `seconds`, and sweep a few that expired."""
    conn.execute(
        """
        with swept as (
            delete from social_flows where state_hash in (
                select state_hash from social_flows where expires_at < now()
                limit %(sweep)s for update skip locked)
        )
        insert into social_flows
            (state_hash, provider, site_id, redirect_uri, nonce, code_verifier, expires_at)
        values (%(state_hash)s, %(provider)s, %(site_id)s, %(redirect_uri)s, %(nonce)s,
                %(code_verifier)s, now() + make_interval(secs => %(seconds)s))
        """,
        {
            "state_hash": state_hash,
            "provider": provider,
            "site_id": site_id,
            "redirect_uri": redirect_uri,
            "nonce": nonce,
            "code_verifier": code_verifier,
            "seconds": seconds,
            "sweep": _SWEEP,
        },
    )


def take_flow(
    conn: psycopg.Connection, state_hash: bytes, provider: str, site_id: UUID
) -> dict | None:
    """The live flow of this state, begun by this site for this provider, spent (removed:
    of two uses, one gets it); None for an unknown, used or expired state. A state of
    another site or provider is left as it is, for its own."""
    return conn.execute(
        """
        delete from social_flows
        where state_hash = %(state_hash)s and provider = %(provider)s and site_id = %(site_id)s
        returning redirect_uri, nonce, code_verifier, expires_at > now() as live
        """,
        {"state_hash": state_hash, "provider": provider, "site_id": site_id},
    ).fetchone()


def owner(conn: psycopg.Connection, provider: str, subject: str) -> UUID | None:
    """The record this identity is joined to (None: none yet)."""
    row = conn.execute(
        "select user_id from social_identities where provider = %(p)s and subject = %(s)s",
        {"p": provider, "s": subject},
    ).fetchone()
    return row and row["user_id"]


def join(conn: psycopg.Connection, provider: str, subject: str, user_id: UUID, site: str) -> bool:
    """Join the identity to the record; False when it is joined already (to this record
    or, by a parallel first sign-in, another), or the record has one of this provider."""
    row = conn.execute(
        """
        insert into social_identities (provider, subject, user_id, joined_site, last_used_at)
        values (%(provider)s, %(subject)s, %(user_id)s, %(site)s, now())
        on conflict do nothing
        returning user_id
        """,
        {"provider": provider, "subject": subject, "user_id": user_id, "site": site},
    ).fetchone()
    return row is not None


def used(conn: psycopg.Connection, provider: str, subject: str) -> None:
    conn.execute(
        """
        update social_identities set last_used_at = now()
        where provider = %(p)s and subject = %(s)s
        """,
        {"p": provider, "s": subject},
    )


def identities_of(conn: psycopg.Connection, user_id: UUID) -> list[dict]:
    return conn.execute(
        """
        select provider, joined_at, joined_site, last_used_at
        from social_identities where user_id = %(id)s order by joined_at, provider
        """,
        {"id": user_id},
    ).fetchall()


def leave(conn: psycopg.Connection, user_id: UUID, provider: str) -> bool:
    """Remove the record's identity of `provider`; False when it has none."""
    row = conn.execute(
        """
        delete from social_identities where user_id = %(id)s and provider = %(provider)s
        returning provider
        """,
        {"id": user_id, "provider": provider},
    ).fetchone()
    return row is not None


def leave_joined_since(conn: psycopg.Connection, user_id: UUID, since: str) -> list[str]:
    """Remove the record's identities joined at or after `since` (a time as text, ISO 8601
    or '-infinity'); their providers."""
    rows = conn.execute(
        """
        delete from social_identities
        where user_id = %(id)s and joined_at >= %(since)s::timestamptz
        returning provider
        """,
        {"id": user_id, "since": since},
    ).fetchall()
    return [row["provider"] for row in rows]
