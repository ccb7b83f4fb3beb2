"""Staff handling people's requests: search, read, correct, export, erase, act as the person
(impersonation), and read the trail. Who may do which is `identity.services.staff`'s
table, checked by the HTTP face's staff guard before anything here runs; every read of a
person's data and every change here goes into the trail with the reason staff gave, in
the same transaction."""

from uuid import UUID

from identity.errors import Conflict, Forbidden, NotFound
from identity.security.access_tokens import KeyRing, issue_access_token
from identity.services import trail
from identity.services.accounts import common
from identity.services.accounts.common import AccountSettings
from identity.services.erasure import Erasure
from identity.services.principal import Principal
from identity.services.security_events import security_event
from identity.store import admin as store
from identity.store import audit as audit_store
from identity.store import export as export_store
from identity.store import users as users_store
from identity.store.transactions import UnitOfWork


class StaffWork:
    def __init__(
        self,
        settings: AccountSettings,
        ring: KeyRing,
        erasure: Erasure,
        impersonation_seconds: int = 600,
    ):
        self.settings = settings
        self.ring = ring
        self.erasure = erasure
        self.impersonation_seconds = impersonation_seconds

    def search(
        self,
        uow: UnitOfWork,
        principal: Principal,
        q: str,
        after: UUID | None,
        limit: int,
        reason: str,
    ) -> tuple[list[dict], UUID | None]:
        """A page of the records `q` finds (`store.search`), and the cursor of the next
        page (None on the last). Each person shown is a read of their data."""
        found = store.search(uow.conn, q.lower(), after, limit + 1)
        page = found[:limit]
        trail.record_many(uow, "staff.found", principal, [r["id"] for r in page], reason=reason)
        return page, page[-1]["id"] if len(found) > limit else None

    def read(self, uow: UnitOfWork, principal: Principal, user_id: UUID, reason: str) -> dict:
        record = store.record(uow.conn, user_id)
        if record is None:
            raise NotFound("no record with this id")
        trail.record(uow, "staff.read", principal, user_id, reason=reason)
        return record

    def correct(
        self, uow: UnitOfWork, principal: Principal, user_id: UUID, body: dict, reason: str
    ) -> dict:
        """Correct the record's fields (not its address: only the mailbox's owner moves
        it): marked as staff's in `field_sources`; a field sent as null is cleared."""
        fields = common.own_fields(body, keep_nulls=True)
        conn = uow.conn
        if store.target(conn, user_id) is None:
            raise NotFound("no record with this id")
        source = common.person_source(principal) | {"source": "staff"}
        sources = dict.fromkeys(fields, source)
        users_store.edit_fields(conn, user_id, fields, sources)
        trail.record(
            uow, "staff.corrected", principal, user_id, reason=reason, fields=sorted(fields)
        )
        return store.record(conn, user_id)

    def export(self, uow: UnitOfWork, principal: Principal, user_id: UUID, reason: str) -> str:
        document = export_store.document(uow.conn, user_id)
        if document is None:
            raise NotFound("no record with this id")
        trail.record(uow, "staff.exported", principal, user_id, reason=reason)
        return document

    def erase(self, uow: UnitOfWork, principal: Principal, user_id: UUID, reason: str) -> int:
        if user_id == principal.user.user_id:
            raise Conflict("staff do not erase themselves here: DELETE /v1/me, once not staff")
        return self.erasure.erase(uow, principal, user_id, reason)

    def impersonate(
        self, uow: UnitOfWork, principal: Principal, user_id: UUID, reason: str
    ) -> dict:
        """A short-lived access token of the person `user_id` whose `act` claim (RFC 8693)
        names the staff member; no refresh token. Refused for staff (no one acts as
        another staff member), for oneself, and for a record without an account."""
        conn = uow.conn
        staff = principal.user
        person = store.target(conn, user_id)
        if person is None:
            raise NotFound("no record with this id")
        refusal = _impersonation_refusal(person, staff.user_id)
        if refusal is not None:
            security_event("impersonation.refused", principal, user_id=user_id, reason=refusal)
            raise Forbidden(_REFUSALS[refusal])
        seconds = min(self.impersonation_seconds, self.settings.access_token_seconds)
        session_id = store.impersonation(conn, user_id, staff.user_id, staff.site_name, seconds)
        security_event(
            "impersonation.started", principal, user_id=user_id, impersonation=session_id
        )
        trail.record(uow, "staff.impersonated", principal, user_id, reason=reason)
        token, expires_in = issue_access_token(
            self.ring,
            user_id=user_id,
            site=staff.site_name,
            issuer=self.settings.issuer,
            lifetime_seconds=seconds,
            extra={"sid": str(session_id), "amr": [], "act": {"sub": str(staff.user_id)}},
        )
        return {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}

    def audit(
        self,
        uow: UnitOfWork,
        principal: Principal,
        filters: dict,
        limit: int,
        reason: str,
    ) -> tuple[list[dict], int | None]:
        """A page of the trail, newest first, by person, actor and time; the cursor of the
        next page. Reading what was done to a person is reading their data."""
        found = audit_store.page(
            uow.conn,
            subject_id=filters.get("user_id"),
            actor_id=filters.get("actor_id"),
            since=filters.get("since"),
            until=filters.get("until"),
            before_id=filters.get("after"),
            limit=limit + 1,
        )
        page = found[:limit]
        subject = filters.get("user_id")
        trail.record(uow, "staff.read_trail", principal, subject, reason=reason)
        return page, page[-1]["id"] if len(found) > limit else None


_REFUSALS = {
    "staff": "a staff member's account cannot be acted as",
    "self": "you are signed in as yourself already",
    "no_account": "this record has no account to sign in to (a profile only)",
}


def _impersonation_refusal(person: dict, staff_id: UUID) -> str | None:
    if person["id"] == staff_id:
        return "self"
    if person["staff_role"] is not None:
        return "staff"
    if person["status"] != "registered":
        return "no_account"
    return None
