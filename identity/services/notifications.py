"""Notification settings: per product dashboard, which events notify the signed-in person
on which channels (in-app, push, email). A separate system from newsletters: changing
one never touches the other, and these are not consent to marketing mail."""

from identity.services.principal import Principal
from identity.store import notifications as store
from identity.store.transactions import UnitOfWork

CHANNELS = ("in-app", "push", "email")
# Every dashboard's events and what notifies until the person says otherwise: everything
# in the dashboard itself, security and money also by mail.
DEFAULTS = {
    "marketing-suite": {
        "campaign-sent": ["in-app"],
        "import-finished": ["in-app"],
        "invoice": ["in-app", "email"],
        "security": ["in-app", "email"],
    },
    "smtpeter": {
        "delivery-problems": ["in-app", "email"],
        "quota-warning": ["in-app", "email"],
        "invoice": ["in-app", "email"],
        "security": ["in-app", "email"],
    },
    "mailerq": {
        "license-expiring": ["in-app", "email"],
        "queue-alert": ["in-app"],
        "new-release": ["in-app"],
        "security": ["in-app", "email"],
    },
}


def notification_settings(uow: UnitOfWork, principal: Principal) -> dict:
    """Every dashboard's every event with the channels it notifies on."""
    current = {dashboard: dict(events) for dashboard, events in DEFAULTS.items()}
    for row in store.settings(uow.one_statement, principal.user.user_id):
        if row["event"] in current.get(row["dashboard"], {}):
            current[row["dashboard"]][row["event"]] = list(row["channels"])
    return current


def change_notification_settings(
    uow: UnitOfWork, principal: Principal, changes: dict[str, dict[str, list[str]]]
) -> dict:
    """Set the channels of the events given; every other event keeps its setting."""
    rows = [
        (dashboard, event, [c for c in CHANNELS if c in channels])
        for dashboard, events in sorted(changes.items())
        for event, channels in sorted(events.items())
    ]
    store.save(uow.conn, principal.user.user_id, rows)
    return notification_settings(uow, principal)
