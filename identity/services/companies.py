"""Companies: their profiles, the people who belong to them (as `admin` or `member`), the
invitations that bring people in, and the partner model: a customer company's admin
chooses a partner company, whose people then read the customer's company data and its
people's contact data, and nothing else.

What a person may do with a company follows from one thing, their relation to it
(`RIGHTS`): their own role there, or `partner` when they belong to the company it chose
as partner. Someone with no relation learns nothing, not even that the company exists
(404); someone who may read it but not do this is told so (403)."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import phonenumbers
from stdnum import iban, vatin
from stdnum.exceptions import ValidationError as NumberError

from identity.errors import Conflict, Forbidden, InvalidInput, NotFound, TooManyRequests
from identity.mail import enqueue as enqueue_mail
from identity.services import mailed_tokens, trail
from identity.services.accounts.common import (
    INVALID_TOKEN,
    AccountSettings,
    Limit,
    count_attempt,
)
from identity.services.contact import email_key, normalise_email, normalise_phone
from identity.services.principal import Principal
from identity.services.sites import mailing_site
from identity.services.staff import staff_may
from identity.store import companies as store
from identity.store import users as users_store
from identity.store.transactions import UnitOfWork

# What each relation to a company may do. One table, so a rule changes in one place (and
# the access matrix test, tests/api/test_company_access.py, reads the same rules).
RIGHTS = {
    "admin": frozenset(
        {"read", "read_members", "edit", "manage_members", "invite", "choose_partner", "leave"}
    ),
    "member": frozenset({"read", "read_members", "leave"}),
    "partner": frozenset({"read", "read_members"}),
    # Staff whose role reads companies (identity.services.staff.STAFF_RIGHTS), on a company
    # they have nothing else to do with.
    "staff": frozenset({"read", "read_members", "read_customers"}),
}
ROLES = ("admin", "member")
_WHAT = {
    "edit": "only the company's admins may change the company",
    "manage_members": "only the company's admins may change or remove its members",
    "invite": "only the company's admins may invite people or see and withdraw invitations",
    "choose_partner": "only the company's admins may choose or drop its partner",
    "leave": "only the company's own members may leave it: the partner's people are none",
}
# Invitations one person may send within the throttle window (15 minutes), whatever the
# companies: past it the next waits (429). An admin inviting a team sends a few dozen; a
# stranger with a fresh company cannot use it to mail a list of addresses.
INVITATIONS_FREE = 30


@dataclass(frozen=True)
class CompanySettings:
    accounts: AccountSettings
    invitation_days: int = 14


class Companies:
    def __init__(self, settings: CompanySettings):
        self.settings = settings

    # --- the profile ---------------------------------------------------------------------

    def create(self, uow: UnitOfWork, principal: Principal, fields: dict) -> dict:
        """A new company; the person who made it is its first admin."""
        user = principal.user
        _internal_only_by_staff(principal, fields)
        checked = checked_fields(fields)
        company = store.insert(uow.conn, checked, self._sources(principal, checked), user.user_id)
        return _view(company, "admin", _staff_reads(principal))

    def read(self, uow: UnitOfWork, principal: Principal, company_id: UUID) -> dict:
        user_id = principal.user.user_id
        company = store.get_with_relation(uow.one_statement, company_id, user_id)
        relation = company and (company["relation"] or _as_staff(principal))
        if relation is None:
            raise NotFound("no such company")
        return _view(company, relation, _staff_reads(principal))

    def edit(self, uow: UnitOfWork, principal: Principal, company_id: UUID, fields: dict) -> dict:
        """Set (or clear, with null) the fields given; admins only. Each change records
        who made it and through which site."""
        relation = self.may(uow, principal, company_id, "read")  # 404 for a stranger first
        _internal_only_by_staff(principal, fields)
        if (not fields or set(fields) - {"internal_description"}) and "edit" not in RIGHTS[
            relation
        ]:
            raise Forbidden(_WHAT["edit"])
        conn = uow.conn
        stored = store.lock(conn, company_id)
        checked = checked_fields(fields, country=stored["country"])
        if not checked:
            return _view(store.get(conn, company_id), relation, _staff_reads(principal))
        company = store.update(conn, company_id, checked, self._sources(principal, checked))
        return _view(company, relation, _staff_reads(principal))

    # --- members -------------------------------------------------------------------------

    def members(self, uow: UnitOfWork, principal: Principal, company_id: UUID) -> list[dict]:
        self.may(uow, principal, company_id, "read_members")
        return store.members(uow.one_statement, company_id)

    def change_role(
        self, uow: UnitOfWork, principal: Principal, company_id: UUID, user_id: UUID, role: str
    ) -> dict:
        """An admin makes a member an admin or an admin a member; the last admin stays."""
        self.may(uow, principal, company_id, "manage_members")
        conn = uow.conn
        roles = store.lock_members(conn, company_id)
        if user_id not in roles:
            raise NotFound("no such member of this company")
        if roles[user_id] == "admin" and role != "admin" and _admins(roles) == 1:
            raise Conflict("the company's last admin cannot stop being one: make another first")
        store.set_role(conn, company_id, user_id, role)
        if role != "admin":  # an admin no longer: their open invitations go with it
            store.withdraw_invited_by(conn, company_id, user_id)
        trail.record(uow, "company.role_changed", principal, user_id, company=company_id, role=role)
        return next(m for m in store.members(conn, company_id) if m["user_id"] == user_id)

    def remove(
        self, uow: UnitOfWork, principal: Principal, company_id: UUID, user_id: UUID
    ) -> None:
        """An admin removes a member, or a member leaves; the last admin cannot go. The
        person keeps their own record."""
        me = principal.user.user_id
        self.may(uow, principal, company_id, "leave" if user_id == me else "manage_members")
        conn = uow.conn
        roles = store.lock_members(conn, company_id)
        if user_id not in roles:
            raise NotFound("no such member of this company")
        if roles[user_id] == "admin" and _admins(roles) == 1:
            raise Conflict("the company's last admin cannot leave: make another member admin first")
        store.remove_member(conn, company_id, user_id)
        store.withdraw_invited_by(conn, company_id, user_id)
        if user_id != me:
            trail.record(uow, "company.member_removed", principal, user_id, company=company_id)

    # --- invitations ---------------------------------------------------------------------

    def invite(
        self, uow: UnitOfWork, principal: Principal, company_id: UUID, address: str, role: str
    ) -> dict:
        """Invite an address (admins): a minimal profile for a new one (source
        `invitation`), one open invitation per company and address (inviting again mails a
        new link; the old one stops working), and the mail with its link on the site's
        pages (`{pages}/invitations/accept?token=…`)."""
        self.may(uow, principal, company_id, "invite")
        site = mailing_site(uow, principal)
        address = normalise_email(address)
        limit = Limit(f"invitations:{principal.user.user_id}", INVITATIONS_FREE, 3600)
        count_attempt(uow, self.settings.accounts, [limit], "too many invitations; wait a while")
        key = email_key(address)
        conn = uow.conn
        company = store.lock(conn, company_id)
        record = users_store.lock_holder(conn, key)
        if record is None:
            sources = users_store.field_sources_json({"email": self._source(principal)})
            users_store.insert_new(
                conn, [{"email": address, "email_key": key, "field_sources": sources}]
            )
            record = users_store.lock_holder(conn, key)
            trail.record(uow, "profile.created", principal, record["id"], source="invitation")
        if store.relation(conn, company_id, record["id"]) in ROLES:
            raise Conflict("this address belongs to the company already")
        if not mailed_tokens.may_mail(conn, record["id"], "company_invitation"):
            raise TooManyRequests(
                "this address had as many invitations as it may this hour", retry_after=3600
            )
        days = self.settings.invitation_days
        trail.record(uow, "company.invited", principal, record["id"], company=company_id, role=role)
        invitation = store.open_invitation(
            conn, company_id, record["id"], key, role, principal.user.user_id, days * 86400
        )
        token = mailed_tokens.issue(
            conn,
            "company_invitation",
            record["id"],
            timedelta(days=days),
            {"invitation": str(invitation)},
            site=site.name,
        )
        account = users_store.account_of(conn, record["id"])
        enqueue_mail(
            conn,
            "company_invitation",
            account["email"],
            account["own_language"],
            site,
            token=token,
            company=company["name"],
            valid_days=days,
        )
        return next(i for i in store.open_invitations(conn, company_id) if i["id"] == invitation)

    def invitations(self, uow: UnitOfWork, principal: Principal, company_id: UUID) -> list[dict]:
        self.may(uow, principal, company_id, "invite")
        return store.open_invitations(uow.one_statement, company_id)

    def withdraw(
        self, uow: UnitOfWork, principal: Principal, company_id: UUID, invitation_id: UUID
    ) -> None:
        self.may(uow, principal, company_id, "invite")
        if store.withdraw(uow.conn, company_id, invitation_id) is None:
            raise NotFound("no open invitation with this id")

    def accept(self, uow: UnitOfWork, principal: Principal, token: str) -> dict:
        """The signed-in person accepts an invitation with the mailed link's token: they
        belong to the company from now on, in the role invited (a member already keeps
        theirs). Only the account of the invited address may: another's is refused (403)
        and the link stays good for its own."""
        user = principal.user
        conn = uow.conn
        purposes = ("company_invitation",)
        owner = mailed_tokens.peek(conn, token, purposes, user.site_name)
        if owner is None:
            raise InvalidInput(INVALID_TOKEN, errors={"token": [INVALID_TOKEN]})
        if owner != user.user_id:
            raise Forbidden("this invitation is for another address: sign in with that one")
        found = mailed_tokens.take(conn, token, purposes, user.site_name)
        invitation = found and store.take_invitation(conn, UUID(found["payload"]["invitation"]))
        if invitation is None:  # withdrawn, replaced by a newer one, or spent meanwhile
            raise InvalidInput(INVALID_TOKEN, errors={"token": [INVALID_TOKEN]})
        account = users_store.lock_user(conn, user.user_id)
        if account["email_key"] != invitation["email_key"]:
            raise Forbidden("this invitation is for another address: sign in with that one")
        company_id = invitation["company_id"]
        store.add_member(conn, company_id, user.user_id, invitation["role"])
        relation = store.relation(conn, company_id, user.user_id)
        return _view(store.get(conn, company_id), relation)

    # --- partners ------------------------------------------------------------------------

    def choose_partner(
        self, uow: UnitOfWork, principal: Principal, company_id: UUID, partner_id: UUID
    ) -> dict:
        """The customer's admin chooses a company flagged as partner (422 for any other, so
        the answer tells nothing of companies that are not partners)."""
        relation = self.may(uow, principal, company_id, "choose_partner")
        conn = uow.conn
        partner = store.get(conn, partner_id)
        if partner is None or not partner["is_partner"] or partner_id == company_id:
            raise InvalidInput(
                "not a partner company",
                errors={"partner_id": ["not the id of a company that is a partner"]},
            )
        store.lock(conn, company_id)
        store.set_partner(conn, company_id, partner_id)
        return _view(store.get(conn, company_id), relation)

    def drop_partner(self, uow: UnitOfWork, principal: Principal, company_id: UUID) -> None:
        """The partner's people lose their view at once: their next request is refused."""
        self.may(uow, principal, company_id, "choose_partner")
        store.set_partner(uow.conn, company_id, None)

    def customers(
        self,
        uow: UnitOfWork,
        principal: Principal,
        partner_id: UUID,
        after: UUID | None,
        limit: int,
    ) -> list[dict]:
        """The companies that chose `partner_id` as partner, with their people's contact
        data, for the partner's own people (admins and members)."""
        relation = store.relation(uow.one_statement, partner_id, principal.user.user_id)
        if relation not in ROLES and _as_staff(principal) is None:
            raise NotFound("no such company")
        rows = store.customers(uow.one_statement, partner_id, after, limit)
        people = store.members_of(uow.one_statement, [row["id"] for row in rows])
        staff = _staff_reads(principal)
        return [_view(row, "partner", staff) | {"members": people[row["id"]]} for row in rows]

    # ---------------------------------------------------------------------------------------

    def may(self, uow: UnitOfWork, principal: Principal, company_id: UUID, right: str) -> str:
        """The caller's relation to the company, when it gives `right`: 404 when they have
        none (nothing tells them the company exists), 403 when it does not allow this."""
        relation = store.relation(uow.one_statement, company_id, principal.user.user_id)
        if relation is None and store.get(uow.one_statement, company_id) is not None:
            relation = _as_staff(principal)
        if relation is None:
            raise NotFound("no such company")
        if right not in RIGHTS[relation]:
            raise Forbidden(
                _WHAT.get(right, "the caller's relation to the company does not allow this")
            )
        return relation

    def _source(self, principal: Principal) -> dict:
        return {
            "source": "invitation",
            "by": str(principal.user.user_id),
            "site": principal.site_name,
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def _sources(self, principal: Principal, fields: dict) -> dict:
        source = self._source(principal) | {"source": "person"}
        return {name: source for name in fields}


def flag_partner(uow: UnitOfWork, company_id: UUID, *, on: bool) -> None:
    """An operator's: the company may be chosen as partner (or, off, no longer; its
    customers lose it at once)."""
    if not store.flag_partner(uow.conn, company_id, on):
        raise NotFound(f"no company {company_id}")


def _admins(roles: dict) -> int:
    return sum(1 for role in roles.values() if role == "admin")


# The fields only staff see, nor their sources.
_STAFFS = frozenset({"internal_description"})


def _as_staff(principal: Principal) -> str | None:
    """'staff' for a staff member whose role reads companies (signed in with a second
    factor), else None."""
    return "staff" if staff_may(principal.user.staff_role, "read_companies") else None


def _staff_reads(principal: Principal) -> bool:
    return _as_staff(principal) is not None


def _internal_only_by_staff(principal: Principal, fields: dict) -> None:
    if "internal_description" in fields and not staff_may(
        principal.user.staff_role, "edit_internal_description"
    ):
        raise Forbidden(
            "only staff may set the internal description (signed in with a second factor)"
        )


def _view(company: dict, relation: str, staff: bool = False) -> dict:
    """A company as the caller sees it: its fields, the partner it chose and whether it is
    a partner, the caller's own relation to it; and for staff, the internal description."""
    internal = {"internal_description": company["internal_description"]} if staff else {}
    sources = company["field_sources"]
    if not staff:  # not even who set it, or when: that there is one is staff's to know
        sources = {name: source for name, source in sources.items() if name not in _STAFFS}
    return internal | {
        **{name: company[name] for name in ("id", *store.COMPANY_FIELDS)},
        "is_partner": company["is_partner"],
        "partner_id": company["partner_id"],
        "field_sources": sources,
        "created_at": company["created_at"],
        "updated_at": company["updated_at"],
        "your_role": relation,
    }


def checked_fields(fields: dict, *, country: str | None = None) -> dict:
    """The company's fields as stored: an empty text is no value (null); country an ISO
    3166 code, phone in E.164 (read in the company's country: the one given, else
    `country`, the stored one), email normalised, VAT number and IBAN valid and compact
    (python-stdnum). Every field's fault is named at once (422)."""
    checked = {
        name: (None if value == "" and name != "name" else value) for name, value in fields.items()
    }
    errors = {}
    if checked.get("country") is not None:
        code = checked["country"]
        if not _COUNTRY.fullmatch(code) or code.upper() not in _COUNTRIES:
            errors["country"] = ["not an ISO 3166-1 alpha-2 country code (NL, BE, DE, ...)"]
        checked["country"] = code.upper()
    if "country" in fields:
        country = None if "country" in errors else checked["country"]
    for name, check in (
        ("phone", lambda v: normalise_phone(v, "phone", country)),
        ("email", lambda v: normalise_email(v, "email")),
        ("vat_number", lambda v: _vat_number(v, country)),
        ("bank_account", _iban),
    ):
        value = checked.get(name)
        if value:
            try:
                checked[name] = check(value)
            except InvalidInput as invalid:
                errors.update(invalid.errors or {name: [invalid.detail]})
    if errors:
        raise InvalidInput("some company fields are not acceptable", errors=errors)
    return checked


# ISO 3166-1 alpha-2, as the regions phonenumbers knows them, less the ITU's own codes for
# Ascension and Tristan da Cunha (AC, TA), which ISO does not assign.
_COUNTRY = re.compile(r"[A-Za-z]{2}")
_COUNTRIES = frozenset(phonenumbers.SUPPORTED_REGIONS) - {"AC", "TA"}


def _vat_number(value: str, country: str | None) -> str:
    """The VAT number, compact, with its country prefix (added from the company's country
    when the number has none; Greece's is EL)."""
    number = "".join(value.split()).upper()
    if country and not number[:2].isalpha():
        number = country + number
    if number.startswith("GR"):  # Greece's VAT numbers carry EL, not its ISO code
        number = "EL" + number[2:]
    try:
        return vatin.validate(number)
    except (NumberError, ValueError) as error:
        raise InvalidInput(
            "invalid VAT number", errors={"vat_number": [f"not a valid VAT number: {error}"]}
        ) from None


def _iban(value: str) -> str:
    try:
        return iban.validate(value)
    except (NumberError, ValueError) as error:
        raise InvalidInput(
            "invalid IBAN", errors={"bank_account": [f"not a valid IBAN: {error}"]}
        ) from None
