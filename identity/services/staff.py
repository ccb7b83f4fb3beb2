"""Staff: the service's own team, by role. A staff member is a person with an account and a
role; their access token works as staff only while they have a second factor on and signed
in with it (`UserCaller.staff_role`).

What each role may do is `STAFF_RIGHTS`, one table (the README shows it); the HTTP face's
staff guard checks it, and identity.services.admin does the work."""

from identity.errors import InvalidInput, NotFound
from identity.services import trail
from identity.services.contact import email_key, normalise_email
from identity.store import staff as store
from identity.store import users as users_store
from identity.store.transactions import UnitOfWork

ROLES = ("support", "dpo", "admin")

# What each role may do: support helps people (finds them, reads their record, acts as
# them to see what they see); the data protection officer handles their requests (reads,
# corrects, exports, erases, reads the trail); an admin does all of it and manages staff.
_SUPPORT = {
    "search_users",
    "read_users",
    "impersonate",
    "read_companies",
    "edit_internal_description",
}
_DPO = {
    "search_users",
    "read_users",
    "correct_users",
    "export_users",
    "erase_users",
    "read_audit",
    "read_companies",
}
STAFF_RIGHTS = {
    "support": frozenset(_SUPPORT),
    "dpo": frozenset(_DPO),
    "admin": frozenset(_SUPPORT | _DPO | {"manage_staff"}),
}


def staff_may(role: str | None, right: str) -> bool:
    return role is not None and right in STAFF_RIGHTS[role]


def grant(uow: UnitOfWork, address: str, role: str) -> None:
    """An operator's: the account with this address gets `role` (replacing any other)."""
    if role not in ROLES:
        raise InvalidInput(f"no staff role {role!r}: one of {', '.join(ROLES)}")
    account = _account(uow, address)
    store.grant(uow.conn, account["id"], role)
    trail.record(uow, "staff.granted", None, account["id"], role=role)


def revoke(uow: UnitOfWork, address: str) -> None:
    account = _account(uow, address)
    if not store.revoke(uow.conn, account["id"]):
        raise NotFound(f"{address} has no staff role")
    trail.record(uow, "staff.revoked", None, account["id"])


def everyone(uow: UnitOfWork) -> list[dict]:
    return store.everyone(uow.one_statement)


def _account(uow: UnitOfWork, address: str) -> dict:
    record = users_store.lock_holder(uow.conn, email_key(normalise_email(address)))
    if record is None or record["status"] != "registered":
        raise NotFound(f"no account with the address {address}: staff sign in as people do")
    return record
