"""The audit trail: who did what to whose record, when, from where and why; append-only.

Three things go in (each an `audit_events` row, written with the unit of work's commit):
- every security event (identity.services.security_events adds it; a refusal's survives
  the rollback of the refused work);
- every read of a person's data by staff (`staff.*`), with the reason they gave;
- every change of a record by anyone other than its person: a site, an import, staff, a
  staff member acting as the person (each request of theirs), an operator's command.

An entry holds ids, counts and fixed words, never an address, a name or a secret: what
it says about a person is theirs (their export shows it; erasing them removes it)."""

import ipaddress
from datetime import datetime
from uuid import UUID

from identity.services.principal import Principal
from identity.store.transactions import CURRENT, UnitOfWork

# The subject of an entry when none is named: the caller's own record (a signed-in
# person's, a link's). None names no one.
CALLER = object()


def entry(
    event: str,
    principal: Principal | None,
    subject_id=CALLER,
    *,
    reason: str | None = None,
    **details,
) -> dict:
    """One row of the trail: `event` by `principal` (none: an operator's command) on the
    record `subject_id` (default: the signed-in person's or the link's own)."""
    actor, actor_id, site, key_prefix, client_ip = _actor(principal)
    if subject_id is CALLER:
        subject_id = _own_record(principal)
    if actor == "staff" and str(actor_id) == str(subject_id):
        actor = "person"  # a staff member's own record, as anyone's
    return {
        "event": event,
        "actor": actor,
        "actor_id": actor_id,
        "subject_id": subject_id,
        "site": site,
        "key_prefix": key_prefix,
        "client_ip": _ip(client_ip),
        "reason": reason,
        "details": {k: _plain(v) for k, v in details.items() if v is not None},
    }


def record(
    uow: UnitOfWork,
    event: str,
    principal: Principal | None,
    subject_id=CALLER,
    *,
    reason: str | None = None,
    survives: bool = False,
    **details,
) -> None:
    """Add one entry to the unit's trail: appended when it commits (and when it rolls back
    too, if it `survives`: what a refusal records)."""
    uow.note(entry(event, principal, subject_id, reason=reason, **details), survives=survives)


def note(event: str, principal: Principal | None, subject_id=CALLER, **details) -> None:
    """`record` into the running unit of work (a service deep in a batch has its
    connection, not its unit); outside one, nothing: only a unit's work is recorded."""
    uow = CURRENT.get()
    if uow is not None:
        record(uow, event, principal, subject_id, **details)


def record_many(
    uow: UnitOfWork, event: str, principal: Principal, subjects, *, reason: str | None = None
) -> None:
    """The same entry about each of `subjects` (a staff member's search: each person shown)."""
    for subject_id in subjects:
        record(uow, event, principal, subject_id, reason=reason)


def security(event: str, principal: Principal | None, fields: dict) -> None:
    """A security event into the running unit's trail (a no-op outside one: an operator's
    command, whose log line is its record), surviving a rollback."""
    uow = CURRENT.get()
    if uow is None:
        return
    details = dict(fields)
    subject_id = details.pop("user_id", CALLER)
    who = {column: details.pop(column, None) for column in ("site", "key_prefix", "client_ip")}
    row = entry(event, principal, subject_id)
    # Its fields as the log line has them (a refusal's `reason` is a fixed word, not the
    # reason staff give: it stays among the details).
    row["details"] = {k: _plain(v) for k, v in details.items() if v is not None}
    if principal is None:
        # No caller proven: a stranger's request (it has a client) or an operator's command.
        row.update(who, client_ip=_ip(who["client_ip"]))
        if "client_ip" in fields:
            row["actor"] = "anyone"
    uow.note(row, survives=True)


def _own_record(principal: Principal | None) -> UUID | None:
    if principal is None:
        return None
    if principal.user is not None:
        return principal.user.user_id
    return principal.link.user_id if principal.link is not None else None


def _actor(principal: Principal | None):
    """(actor kind, actor id, site, key prefix, client ip) of a caller."""
    if principal is None:
        return "operator", None, None, None, None
    ip = principal.browser.client_ip
    if principal.site is not None:
        site = principal.site
        return "site", None, site.site_name, site.key_prefix, ip
    if principal.user is not None:
        user = principal.user
        if user.acting_staff_id is not None:
            return "impersonation", user.acting_staff_id, user.site_name, None, ip
        if user.staff_role is not None:
            return "staff", user.user_id, user.site_name, None, ip
        return "person", user.user_id, user.site_name, None, ip
    return "link", None, None, None, ip


def _ip(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


def _plain(value):
    """A JSON value of a detail (a UUID, a time: its text)."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
