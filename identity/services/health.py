"""Whether this replica can do its work, and whether mail goes out."""

from identity.errors import DatabaseUnavailable
from identity.store import migrations, outbox
from identity.store.transactions import UnitOfWork


def check_ready(uow: UnitOfWork) -> None:
    """Raise DatabaseUnavailable unless the database answers and no migration is pending."""
    conn = uow.one_statement
    if migrations.read_only(conn):
        raise DatabaseUnavailable("the database takes no changes right now (read-only)")
    waiting = migrations.pending(conn)
    if waiting:
        raise DatabaseUnavailable(f"migrations not applied yet: {', '.join(waiting)}")


def mail_delivery(uow: UnitOfWork, late_seconds: float) -> dict:
    """Whether mail goes out, as any replica can tell from the database: `couriers` alive
    (their beat is recent), `oldest_queued_seconds` the longest a due mail has waited for
    one, and `status` `late` when that is past `late_seconds`, or when mail is due and no
    courier is alive; else `ok`."""
    state = outbox.delivery_state(uow.one_statement)
    waited = state["oldest_due_seconds"]
    late = waited is not None and (waited > late_seconds or state["couriers"] == 0)
    return {
        "status": "late" if late else "ok",
        "oldest_queued_seconds": int(waited or 0),
        "couriers": state["couriers"],
    }


def mail_backlog(uow: UnitOfWork) -> dict:
    """The outbox as `GET /metrics` shows it (identity.store.outbox.backlog)."""
    return outbox.backlog(uow.one_statement)
