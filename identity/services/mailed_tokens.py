"""Tokens sent by mail, one purpose each (proving an address, resetting a password,
changing the address): kept hashed, single use, expiring, voided in bulk when what they
were for no longer holds, and counted so that nobody can use the service to flood a
mailbox. Newsletter confirmations are made with the same secrets (`new_secret`) and kept
beside their list's flag (identity.store.newsletters)."""

from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg

from identity.security.secret_tokens import new_secret, secret_hash
from identity.store import mailed_tokens as store
from identity.store import users as users_store

# At most this many mails of one purpose to one record an hour.
MAILS_AN_HOUR = 5


def issue(
    conn: psycopg.Connection,
    purpose: str,
    user_id: UUID,
    valid_for: timedelta,
    payload: dict | None = None,
) -> str:
    """A new token for `user_id`, good for `valid_for`: the secret to mail, kept hashed."""
    token = new_secret()
    store.insert_token(
        conn, secret_hash(token), purpose, user_id, payload or {}, datetime.now(UTC) + valid_for
    )
    return token


def count_only(conn: psycopg.Connection, purpose: str, user_id: UUID) -> None:
    """A token expired at birth: it only counts a mail (or a request) for the hourly limit."""
    store.insert_token(conn, secret_hash(new_secret()), purpose, user_id, {}, datetime.now(UTC))


def may_mail(conn: psycopg.Connection, user_id: UUID, purpose: str) -> bool:
    """Whether one more mail of `purpose` may go to this record within the hour."""
    return store.tokens_made_since(conn, user_id, purpose, 3600) < MAILS_AN_HOUR


def peek(conn: psycopg.Connection, token: str, purposes: tuple[str, ...]) -> UUID | None:
    """Whose live token of one of `purposes` this is, without spending it (None: used,
    expired or unknown): to check what the token is for before the transaction that
    takes it."""
    return store.token_owner(conn, secret_hash(token), purposes, live=True)


def take(conn: psycopg.Connection, token: str, purposes: tuple[str, ...]) -> dict | None:
    """The live token of one of `purposes`, spent; None for a used, expired or unknown one.
    Its account is locked first: locking an account before its tokens, as every other path
    does, two clicks of two links of one account cannot deadlock."""
    token_hash = secret_hash(token)
    owner = store.token_owner(conn, token_hash, purposes)
    if owner is None:
        return None
    users_store.lock_user(conn, owner)
    return store.take_token(conn, token_hash, purposes)


def void(conn: psycopg.Connection, user_id: UUID, purposes: tuple[str, ...]) -> None:
    """Every live token of `purposes` of this record stops working."""
    store.void_tokens(conn, user_id, purposes)
