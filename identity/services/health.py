"""Whether this replica can do its work."""

import psycopg

from identity.errors import DatabaseUnavailable
from identity.store import migrations


def check_ready(conn: psycopg.Connection) -> None:
    """Raise DatabaseUnavailable unless the database answers and no migration is pending."""
    waiting = migrations.pending(conn)
    if waiting:
        raise DatabaseUnavailable(f"migrations not applied yet: {', '.join(waiting)}")
