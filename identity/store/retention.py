"""SQL for retention: what is removed once its purpose has passed, a batch at a time (each
batch its own short statement, so no long lock is held while a table is cleared)."""

import psycopg
from psycopg.rows import tuple_row

# Rows removed per statement; a kind is cleared in as many statements as it takes.
BATCH = 5000

# Each kind: the table, and which of its rows have outlived their purpose, given
# %(days)s (the kind's setting). Only rows of their own table, found by an index or a
# short scan of rows that are few.
KINDS = {
    # The person sees their recent login attempts; the service counts failures within
    # minutes. Older attempts serve no one.
    "login_attempts": ("login_attempts", "at < now() - make_interval(days => %(days)s)"),
    # Sign-ins ended (logged out, revoked, expired) long enough ago that no refresh token
    # of theirs can come back (their refresh tokens go with them).
    "sign_ins": (
        "sessions",
        "coalesce(revoked_at, expires_at) < now() - make_interval(days => %(days)s)",
    ),
    # Mailed links used or expired: kept a while to count mails per hour and registrations
    # per day, then nothing.
    "mailed_links": (
        "account_tokens",
        "coalesce(used_at, expires_at) < now() - make_interval(days => %(days)s)",
    ),
    "newsletter_confirmations": (
        "newsletter_confirmations",
        "coalesce(used_at, expires_at) < now() - make_interval(days => %(days)s)",
    ),
    # Second steps of logins and social sign-ins begun and never (or long) finished.
    "second_steps": ("login_challenges", "expires_at < now() - make_interval(days => %(days)s)"),
    "social_flows": ("social_flows", "expires_at < now() - make_interval(days => %(days)s)"),
    # Failed-login counts whose window passed and that hold no one back.
    "login_throttles": (
        "login_throttles",
        "last_failure_at < now() - make_interval(days => %(days)s)"
        " and (blocked_until is null or blocked_until < now())",
    ),
    # Refresh tokens spent long ago within sign-ins still live: kept to catch a copied
    # token coming back (which ends its sign-in) for as long as an unspent one could live
    # unused; one shown after that is merely unknown.
    "spent_refresh_tokens": (
        "refresh_tokens",
        "spent_at < now() - make_interval(days => %(days)s)",
    ),
    # The audit trail: kept long enough to answer for a year of what was done to whom.
    # Removed by the owner's prune_audit_events (migration 0030, never younger than a
    # year): the serving role may not delete from the trail (identity.store.roles).
    "audit_events": ("audit_events", None),
    # Mail sent or given up: the recipient's address and the subject's template, kept to
    # answer "was it sent?", then gone (its values, which hold links, went at delivery).
    "mail": (
        "outbox",
        "status in ('sent', 'failed')"
        " and coalesce(sent_at, failed_at) < now() - make_interval(days => %(days)s)",
    ),
}


def remove_batch(conn: psycopg.Connection, kind: str, days: int) -> int:
    """Remove up to BATCH rows of `kind` older than `days`; how many."""
    table, condition = KINDS[kind]
    if condition is None:
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                f"select prune_{table}(%(days)s, %(batch)s)",
                {"days": days, "batch": BATCH},
            )
            return cur.fetchone()[0]
    return conn.execute(
        f"""
        delete from {table} where ctid in (
            select ctid from {table} where {condition} limit %(batch)s
        )
        """,  # noqa: S608 - table and condition from KINDS
        {"days": days, "batch": BATCH},
    ).rowcount
