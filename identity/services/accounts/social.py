"""Signing in with Google, LinkedIn or Facebook, and joining their identities to the one
record.

A flow: `authorize` keeps a state, a nonce and a PKCE verifier for the site and the
redirect URI (one the site registered, compared whole), and gives the provider's URL;
`callback` takes that state once, exchanges the code with no connection held, and signs
the person in as a login does.

An identity is (provider, subject), never an address. Its first sign-in joins the record
with the provider's address only when the provider vouches for the address and the record
is a minimal profile or an account whose address is proven; otherwise the address proves
itself first, with a link mailed to it (`POST /v1/auth/verify-email`). Every join is
recorded and told to the record's address in the brand of the site it happened on."""

import secrets
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from identity.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    ProviderUnavailable,
    Unauthenticated,
)
from identity.mail import enqueue as enqueue_mail
from identity.security.secret_tokens import secret_hash
from identity.services import mailed_tokens
from identity.services.accounts import common
from identity.services.accounts.common import AccountSettings, Tokens
from identity.services.accounts.login import Login, SecondFactorRequired
from identity.services.contact import email_key, normalise_email
from identity.services.principal import Principal
from identity.services.security_events import security_event
from identity.services.sites import MailingSite, mailing_site
from identity.social.providers import TITLES, Person, Provider, ProviderDown, ProviderRefused
from identity.store import sites as sites_store
from identity.store import social as store
from identity.store import users as users_store
from identity.store.transactions import UnitOfWork

INVALID_STATE = (
    "this sign-in is not valid (used, expired, or begun by another site or for another"
    " provider): begin again at authorize"
)
_OFF = "no such provider here"
# Sign-ins begun per client network within the throttle window (15 minutes) before the next
# waits: an office behind one address signs in many times; a script filling the flows
# table is stopped.
AUTHORIZE_FREE = 60


@dataclass(frozen=True)
class AddressProofRequired:
    """A first sign-in that joins nothing yet: a link went to the address (when it may
    have one more this hour), and the join waits for it."""

    verification_required: bool = True


class SocialLogin:
    def __init__(
        self,
        settings: AccountSettings,
        providers: dict[str, Provider],
        login: Login,
        flow_seconds: int,
    ):
        self.settings = settings
        self.providers = providers
        self.login = login
        self.flow_seconds = flow_seconds

    def provider(self, name: str) -> Provider:
        """The provider turned on under `name`; 404 for one that is off or unknown."""
        found = self.providers.get(name)
        if found is None:
            raise NotFound(_OFF)
        return found

    def authorize(
        self, uow: UnitOfWork, principal: Principal, name: str, redirect_uri: str
    ) -> dict:
        """The provider's authorization URL and its state, the flow kept for the calling
        site and `redirect_uri`, which must be one of the site's registered redirect URIs,
        character for character."""
        provider = self.provider(name)
        site = principal.site
        network = common.network(principal.browser.client_ip)
        limit = common.Limit(
            f"social-ip:{network}", AUTHORIZE_FREE, self.settings.ip_request_cap_seconds
        )
        common.count_attempt(uow, self.settings, [limit], "too many sign-ins begun; wait a moment")
        registered = sites_store.find_site(uow.one_statement, site.site_name)
        uow.release()  # the provider's discovery document may be read next
        if redirect_uri not in (registered or {}).get("redirect_uris", []):
            raise InvalidInput(
                "the redirect_uri is not one this site registered",
                errors={"redirect_uri": ["not one of the site's registered redirect URIs"]},
            )
        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # RFC 7636: 43 to 128 characters
        try:
            url = provider.authorization_url(redirect_uri, state, nonce, verifier)
        except ProviderDown as down:
            raise _unavailable(name, down) from None
        store.begin_flow(
            uow.one_statement,
            state_hash=secret_hash(state),
            provider=name,
            site_id=site.site_id,
            redirect_uri=redirect_uri,
            nonce=nonce,
            code_verifier=verifier,
            seconds=self.flow_seconds,
        )
        return {"authorization_url": url, "state": state}

    def callback(
        self,
        uow: UnitOfWork,
        principal: Principal,
        name: str,
        state: str,
        code: str | None,
        error: str | None = None,
    ) -> Tokens | SecondFactorRequired | AddressProofRequired:
        """Finish a flow: its state taken (once, by the site that began it), the code
        exchanged and the provider's answer checked, then the person signed in (the
        tokens, or the second step when a second factor is on) or their first sign-in's
        address sent its proof. A declined consent spends the state too."""
        provider = self.provider(name)
        flow = store.take_flow(uow.one_statement, secret_hash(state), name, principal.site.site_id)
        uow.commit()  # spent, whatever comes next; nothing is held while the provider answers
        if flow is None or not flow["live"]:
            security_event("social.refused", principal, provider=name, reason="state")
            raise Unauthenticated(INVALID_STATE)
        if error is not None or not code:
            security_event("social.refused", principal, provider=name, reason="declined")
            raise Unauthenticated(
                f"the sign-in was not allowed at {TITLES[name]} ({error or 'no code came back'})"
            )
        try:
            person = provider.person(
                code, flow["redirect_uri"], flow["code_verifier"], flow["nonce"]
            )
        except ProviderRefused as refused:
            security_event("social.refused", principal, provider=name, reason="answer")
            raise Unauthenticated(f"{TITLES[name]}: {refused}") from None
        except ProviderDown as down:
            raise _unavailable(name, down) from None
        return self._signed_in(uow, principal, name, person)

    def _signed_in(
        self, uow: UnitOfWork, principal: Principal, name: str, person: Person
    ) -> Tokens | SecondFactorRequired | AddressProofRequired:
        conn = uow.conn
        joined = store.owner(conn, name, person.subject)
        if joined is None:
            site = mailing_site(uow, principal)  # a join mails: 409 first without pages
            joined = self._first_sign_in(conn, principal, site, name, person)
            if joined is None:
                return AddressProofRequired()
        # The record before its identity, as a first sign-in locks them: two sign-ins of
        # one person racing each other queue instead of deadlocking.
        record = users_store.lock_user(conn, joined)
        store.used(conn, name, person.subject)
        uow.commit()
        security_event("social.signed_in", principal, user_id=joined, provider=name)
        return self.login.signed_in_elsewhere(uow, principal, joined, record["email_key"], "fed")

    def _first_sign_in(
        self, conn, principal: Principal, site: MailingSite, name: str, person: Person
    ) -> UUID | None:
        """The record this first sign-in joins, now; or None: its address was sent a link
        to prove it first. A new address gets a record (two first sign-ins of one new
        address racing each other make one)."""
        if not person.email:
            raise InvalidInput(
                f"{TITLES[name]} shared no email address: allow it to, or register with one",
                errors={"email": ["the provider gave none"]},
            )
        address = normalise_email(person.email)
        key = email_key(address)
        record = users_store.lock_holder(conn, key)
        if record is None:
            users_store.insert_new(conn, [_new_record(address, key, principal, name)])
            record = users_store.lock_holder(conn, key)
        minimal = common.profile_only(record)
        # The provider vouches for the address it gave, not for another that shares its
        # key (straße@ and strasse@ are one record, but may be two mailboxes).
        same = record["email"].lower() == address.lower()
        proven = minimal or record["email_verified_at"] is not None
        if person.email_verified and same and proven:
            join_identity(conn, principal, site, record, name, person.subject, _names(person))
            return record["id"]
        self._ask_for_proof(conn, principal, site, record, name, person)
        return None

    def _ask_for_proof(
        self, conn, principal: Principal, site: MailingSite, record: dict, name: str, person
    ) -> None:
        """Mail the address a link that joins the identity once clicked, unless the
        address had as many such mails as it may this hour (then the answer is the same,
        and no mail goes)."""
        user_id = record["id"]
        asked_from = common.mail_network(principal.browser.client_ip)
        if mailed_tokens.may_mail(conn, user_id, "social_join", asked_from):
            hours = self.settings.verify_email_hours
            token = mailed_tokens.issue(
                conn,
                "social_join",
                user_id,
                timedelta(hours=hours),
                {
                    "provider": name,
                    "subject": person.subject,
                    "names": _names(person),
                    "email": record["email"],
                },
                asked_from=asked_from,
                site=site.name,
            )
            account = users_store.account_of(conn, user_id)
            enqueue_mail(
                conn,
                "social_join_confirm",
                account["email"],
                account["own_language"],
                site,
                token=token,
                provider=TITLES[name],
                valid_hours=hours,
            )
        security_event("social.proof_requested", principal, user_id=user_id, provider=name)

    def identities(self, uow: UnitOfWork, principal: Principal) -> list[dict]:
        return store.identities_of(uow.one_statement, principal.user.user_id)

    def leave(self, uow: UnitOfWork, principal: Principal, name: str) -> None:
        """Remove the person's identity of `name` (404: none); refused (409) when it is
        the account's last way to sign in (no password, no other identity)."""
        user_id = principal.user.user_id
        conn = uow.conn
        account = users_store.lock_user(conn, user_id)
        others = [i for i in store.identities_of(conn, user_id) if i["provider"] != name]
        if not store.leave(conn, user_id, name):
            raise NotFound(f"no {TITLES.get(name, name)} identity is joined to this account")
        if account["password_hash"] is None and not others:
            raise Conflict(
                f"{TITLES[name]} is this account's only way to sign in: choose a password"
                " first (a password reset sets one), or join another provider"
            )
        security_event("social.left", principal, provider=name)


def join_identity(
    conn, principal: Principal, site: MailingSite, record: dict, name: str, subject: str, names
) -> None:
    """Join the identity (provider `name`, `subject`) to the record (as `lock_holder` reads
    it, locked): a minimal profile becomes an account with its address proven, the
    provider's names fill blanks only, the join is recorded and told to the address in
    the brand of `site`. A parallel first sign-in of the same identity joins it once."""
    user_id = record["id"]
    if not store.join(conn, name, subject, user_id, principal.site_name):
        if store.owner(conn, name, subject) == user_id:
            return
        raise Conflict(
            f"this {TITLES[name]} account is joined to another record, or this record has"
            f" another {TITLES[name]} account"
        )
    new_account = record["status"] == "minimal"
    users_store.prove_by_provider(conn, user_id)
    # The address is proven now: a registration still pending for it (a stranger's, say,
    # with a password of their own) must not be finished by its old link later.
    mailed_tokens.void(conn, user_id, ("verify_email",))
    fills = {field: value for field, value in names.items() if value and not record[field]}
    if fills:
        source = common.person_source(principal) | {"source": "social", "provider": name}
        fills["id"] = user_id
        fills["field_sources"] = users_store.field_sources_json(
            {field: source for field in fills if field != "id"}
        )
        users_store.fill_blanks(conn, [fills])
    account = users_store.account_of(conn, user_id)
    enqueue_mail(
        conn,
        "social_joined",
        account["email"],
        account["own_language"],
        site,
        provider=TITLES[name],
        new_account=new_account,
    )
    security_event(
        "social.joined", principal, user_id=user_id, provider=name, new_account=new_account
    )


def _names(person: Person) -> dict:
    return {"first_name": person.first_name, "last_name": person.last_name}


def _new_record(address: str, key: str, principal: Principal, name: str) -> dict:
    source = common.person_source(principal) | {"source": "social", "provider": name}
    return {
        "email": address,
        "email_key": key,
        "field_sources": users_store.field_sources_json({"email": source}),
    }


def _unavailable(name: str, down: ProviderDown) -> ProviderUnavailable:
    return ProviderUnavailable(f"{TITLES[name]} cannot be used right now: {down}")
