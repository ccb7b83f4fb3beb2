"""Records and sites for the store's tests, written through the store as the services
write them."""

from uuid import UUID

import psycopg

from identity.store import sites, users


def record(conn: psycopg.Connection, email: str = "anna@example.com", **fields) -> UUID:
    """A new record with this (lower-case ASCII, so its own key) address and fields."""
    sources = users.field_sources_json({name: {"source": "test"} for name in ("email", *fields)})
    inserted = users.insert_new(
        conn, [{"email": email, "email_key": email, **fields, "field_sources": sources}]
    )
    return inserted[email]


def site(conn: psycopg.Connection, name: str = "copernica.com") -> UUID:
    return sites.insert_site(conn, name, {}) or sites.site_id(conn, name)
