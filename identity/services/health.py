"""Whether this replica can do its work."""

from identity.errors import DatabaseUnavailable
from identity.store import migrations
from identity.store.transactions import UnitOfWork


def check_ready(uow: UnitOfWork) -> None:
    """Raise DatabaseUnavailable unless the database answers and no migration is pending."""
    waiting = migrations.pending(uow.one_statement)
    if waiting:
        raise DatabaseUnavailable(f"migrations not applied yet: {', '.join(waiting)}")
