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

# Mails of one purpose to one record within an hour. Asked for from a network (a
# registration, a password reset), each network has a budget of its own, and the
# networks the account has not signed in from share a cap besides: a stranger on one
# network spends only that network's budget, a stranger on many spends the cap, and
# neither spends what the owner's own networks have (docs/accounts.md, "Mail limits").
MAILS_AN_HOUR_PER_NETWORK = 3
MAILS_AN_HOUR_FROM_NEW_NETWORKS = 10
# Asked for with no network (a change of address, a notice to an address's holder).
MAILS_AN_HOUR = 5
_HOUR = 3600


def issue(
    conn: psycopg.Connection,
    purpose: str,
    user_id: UUID,
    valid_for: timedelta,
    payload: dict | None = None,
    *,
    mailed: bool = True,
    asked_from: str | None = None,
    site: str | None = None,
) -> str:
    """A new token for `user_id`, good for `valid_for`: the secret to mail, kept hashed.
    `mailed` when its mail goes out (it counts against the hourly limits), `asked_from`
    the network that asked for it (its budget, `may_mail`). Bound to `site` when given
    (its payload's `site`): its link is on that site's pages, whose key alone may use it,
    so every mail of the flow it starts or finishes is that site's."""
    token = new_secret()
    payload = {**(payload or {}), **({"site": site} if site else {})}
    store.insert_token(
        conn,
        secret_hash(token),
        purpose,
        user_id,
        payload,
        datetime.now(UTC) + valid_for,
        mailed=mailed,
        requested_from=asked_from,
    )
    return token


def count_only(
    conn: psycopg.Connection, purpose: str, user_id: UUID, asked_from: str | None = None
) -> None:
    """A token expired at birth: it only counts a mail (or a request) for the hourly limit."""
    store.insert_token(
        conn,
        secret_hash(new_secret()),
        purpose,
        user_id,
        {},
        datetime.now(UTC),
        requested_from=asked_from,
    )


def may_mail(
    conn: psycopg.Connection,
    user_id: UUID,
    purpose: str,
    asked_from: str | None = None,
    *,
    known: bool = False,
) -> bool:
    """Whether one more mail of `purpose` may go to this record within the hour, asked
    for from the network `asked_from` (a CIDR; `known` when the account has signed in
    from it): within that network's budget and, unless known, within the cap that the
    networks not known share. Without a network, within MAILS_AN_HOUR in all."""
    if asked_from is None:
        made = store.mails_since(conn, user_id, purpose, _HOUR, at_most=MAILS_AN_HOUR)
        return made < MAILS_AN_HOUR
    per_network = MAILS_AN_HOUR_PER_NETWORK
    from_there = store.mails_from_since(
        conn, user_id, purpose, asked_from, _HOUR, at_most=per_network
    )
    if from_there >= per_network:
        return False
    cap = MAILS_AN_HOUR_FROM_NEW_NETWORKS
    return known or store.mails_since(conn, user_id, purpose, _HOUR, at_most=cap) < cap


def peek(
    conn: psycopg.Connection, token: str, purposes: tuple[str, ...], site: str | None = None
) -> UUID | None:
    """Whose live token of one of `purposes` this is, without spending it (None: used,
    expired, unknown, or bound to another site than `site`): to check what the token is
    for before the transaction that takes it."""
    return store.token_owner(conn, secret_hash(token), purposes, live=True, site=site)


def take(
    conn: psycopg.Connection, token: str, purposes: tuple[str, ...], site: str | None = None
) -> dict | None:
    """The live token of one of `purposes`, spent; None for a used, expired or unknown one,
    or one bound to another site than `site` (left unspent, for its own).
    Its account is locked first: locking an account before its tokens, as every other path
    does, two clicks of two links of one account cannot deadlock."""
    token_hash = secret_hash(token)
    owner = store.token_owner(conn, token_hash, purposes, site=site)
    if owner is None:
        return None
    users_store.lock_user(conn, owner)
    return store.take_token(conn, token_hash, purposes, site)


def void(conn: psycopg.Connection, user_id: UUID, purposes: tuple[str, ...]) -> None:
    """Every live token of `purposes` of this record stops working."""
    store.void_tokens(conn, user_id, purposes)


def void_undo_links(conn: psycopg.Connection, user_id: UUID, *, after, to: str) -> None:
    """The record's live undo links of changes made after `after` (a time), and those back
    to the address `to`, stop working."""
    store.void_undo_links(conn, user_id, after, to)
