"""Retention: data is kept only as long as its purpose lasts (the privacy policy's
"Bewaartermijnen"). One table of what goes when (`RETENTION_DAYS`, each a setting), one
command that removes it (`identity prune`, or `identity retention run`, daily from cron or
a timer); each kind is removed in short batches, each committed alone, so a large backlog
holds no lock for long and a stopped run is simply run again.

The consent ledger, the record itself and companies are not here: they are kept while the
person is (erasure removes them)."""

from collections.abc import Callable

from identity.store import retention as store
from identity.store.transactions import UnitOfWork

# Days each kind is kept past its end (identity.config's RETENTION_<KIND>_DAYS).
RETENTION_DAYS = {
    "login_attempts": 90,
    "sign_ins": 30,
    "mailed_links": 30,
    "newsletter_confirmations": 30,
    "second_steps": 1,
    "social_flows": 1,
    "login_throttles": 1,
    "mail": 30,
    "spent_refresh_tokens": 30,
    "audit_events": 400,
}


def run(
    uow: UnitOfWork, days: dict[str, int], report: Callable[[str, int], None] = lambda *_: None
) -> dict[str, int]:
    """Remove what has outlived its purpose, kind by kind (`days` per kind, RETENTION_DAYS
    for those it leaves out); how many rows of each. Commits each batch (it runs alone, not
    in a request)."""
    removed = {}
    for kind in store.KINDS:
        kept_days = days.get(kind, RETENTION_DAYS[kind])
        total = 0
        while True:
            batch = store.remove_batch(uow.conn, kind, kept_days)
            uow.commit()
            total += batch
            if batch < store.BATCH:
                break
        removed[kind] = total
        report(kind, total)
    return removed
