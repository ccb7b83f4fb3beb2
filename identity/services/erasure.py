"""Erasure (GDPR Art. 17): the person asks (`DELETE /v1/me`, with their password or a
fresh sign-in), or staff handle their request (`DELETE /v1/admin/users/{id}`). One
transaction removes them from every table (identity.store.erasures); what stays is a
keyed hash of their address on the suppression list, their id in the erasure ledger (so
that a restored backup loses them again: `identity erasures reapply`), and the trail's
entry that an erasure happened, naming only its ledger number."""

from datetime import UTC, datetime, timedelta
from uuid import UUID

from identity.errors import Conflict, Forbidden, NotFound
from identity.security.passwords import Passwords
from identity.services import trail
from identity.services.accounts import common
from identity.services.accounts.common import AccountSettings
from identity.services.accounts.proofs import Proof, reauthenticate
from identity.services.principal import Principal
from identity.services.security_events import security_event
from identity.services.suppression import Suppression
from identity.store import erasures as store
from identity.store.transactions import UnitOfWork

_STALE_SIGN_IN = (
    "erasing the account takes proof that it is you: send current_password (and a code"
    " when a second factor is on), or sign in again and erase within {minutes} minutes"
)


class Erasure:
    def __init__(
        self,
        settings: AccountSettings,
        passwords: Passwords,
        suppression: Suppression,
        fresh_sign_in_seconds: int = 300,
    ):
        self.settings = settings
        self.passwords = passwords
        self.suppression = suppression
        self.fresh_sign_in_seconds = fresh_sign_in_seconds

    def erase_own(
        self, uow: UnitOfWork, principal: Principal, current: str | None, proof: Proof
    ) -> int:
        """The signed-in person erases themselves: after their password (and a code with a
        second factor on), or within minutes of signing in (the way an account with no
        password proves it is them). The ledger number."""
        caller = principal.user
        if current:
            limits = reauthenticate(uow, self.settings, self.passwords, principal, current, proof)
            common.take_back(uow.conn, limits)
        elif not self._fresh(caller.record):
            security_event("erasure.refused", principal, reason="not_reauthenticated")
            minutes = self.fresh_sign_in_seconds // 60
            raise Forbidden(_STALE_SIGN_IN.format(minutes=minutes))
        return self.erase(uow, principal, caller.user_id)

    def erase(
        self, uow: UnitOfWork, principal: Principal | None, user_id: UUID, reason: str | None = None
    ) -> int:
        """Erase the record `user_id` for `principal` (the person, staff, an operator), in
        the unit's transaction. Refused (409, nothing changed) for a staff member (an
        operator revokes the role first) and for the only admin of a company (another
        admin first, or the company goes)."""
        conn = uow.conn
        record = store.lock_for_erasure(conn, user_id)
        if record is None:
            raise NotFound("no record with this id")
        _may_go(record, principal, reason)
        self.suppression.add(conn, record["email_key"])
        number = store.erase(conn, user_id, record["email"])
        security_event("person.erased", principal, user_id=None, erasure=number)
        if reason is not None:
            trail.record(uow, "staff.erased", principal, None, reason=reason, erasure=number)
        return number

    def reapply(self, uow: UnitOfWork) -> list[int]:
        """After a restore: erase again everyone in the ledger whose record is back (the
        ledger is not in the backups, so it is as it was before the restore). Their ledger
        numbers; each erasure its own transaction."""
        return [
            entry["id"]
            for entry in store.ledger(uow.one_statement)
            if uow.run(lambda entry=entry: self._again(uow, entry))
        ]

    def _again(self, uow: UnitOfWork, entry: dict) -> bool:
        conn = uow.conn
        record = store.lock_for_erasure(conn, entry["user_id"])
        if record is None:
            return False
        self.suppression.add(conn, record["email_key"])
        store.erase(conn, entry["user_id"], record["email"], ledger=False)
        security_event("person.erased", None, erasure=entry["id"], reapplied=True)
        return True

    def _fresh(self, record: dict | None) -> bool:
        signed_in = (record or {}).get("signed_in_at")
        limit = timedelta(seconds=self.fresh_sign_in_seconds)
        return signed_in is not None and datetime.now(UTC) - signed_in <= limit


def _may_go(record: dict, principal: Principal | None, reason: str | None) -> None:
    if record["staff_role"] is not None:
        security_event("erasure.refused", principal, user_id=record["id"], reason="staff")
        raise Conflict(
            "this is a staff member's account: an operator revokes the staff role first"
            " (identity staff revoke)"
        )
    if record["sole_admin_of"]:
        names = ", ".join(company["name"] for company in record["sole_admin_of"])
        security_event("erasure.refused", principal, user_id=record["id"], reason="last_admin")
        raise Conflict(
            f"the only admin of: {names}. Make another member admin, or remove the company, first",
            errors={"companies": [str(company["id"]) for company in record["sole_admin_of"]]},
        )
