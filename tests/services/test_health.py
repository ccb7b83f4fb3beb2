"""Whether this replica is ready, asked directly: a migrated database that takes changes
is; one with a migration still to apply, or that is read-only, is not."""

import psycopg
import pytest

from identity.errors import DatabaseUnavailable
from identity.services.health import check_ready
from identity.store import migrations
from identity.store.transactions import UnitOfWork


def test_a_migrated_database_that_takes_changes_is_ready(conn):
    check_ready(UnitOfWork.of(conn))


def test_a_migration_still_to_apply_is_named(conn, owner_db):
    last = migrations.available()[-1].stem
    # The owner forgets it for a moment: the serving role may only read that bookkeeping.
    forgotten = owner_db.execute(
        "delete from schema_migrations where id = %s returning applied_at", (last,)
    ).fetchone()
    try:
        with pytest.raises(DatabaseUnavailable, match=last):
            check_ready(UnitOfWork.of(conn))
    finally:
        owner_db.execute(
            "insert into schema_migrations (id, applied_at) values (%s, %s)",
            (last, forgotten["applied_at"]),
        )


def test_a_read_only_database_is_not_ready(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("set default_transaction_read_only = on")
        with pytest.raises(DatabaseUnavailable, match="read-only"):
            check_ready(UnitOfWork.of(conn))
