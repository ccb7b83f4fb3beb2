"""Registering, and proving the address: the account waits for proof, and the record the
address had (a minimal profile, an unproven registration) is claimed only then. Every
answer has one shape, whatever the address."""

from datetime import timedelta

from identity.errors import InvalidInput
from identity.mail import enqueue as enqueue_mail
from identity.security.passwords import Passwords
from identity.security.secret_tokens import secret_hash
from identity.services import mailed_tokens
from identity.services.accounts import common
from identity.services.accounts.common import INVALID_TOKEN, PASSWORD_HISTORY, AccountSettings
from identity.services.accounts.settings import change_email
from identity.services.accounts.social import join_identity
from identity.services.contact import email_key, normalise_email
from identity.services.principal import Principal
from identity.services.security_events import security_event
from identity.services.sites import MailingSite, mailing_site
from identity.store import mailed_tokens as tokens_store
from identity.store import sessions
from identity.store import users as users_store
from identity.store.transactions import UnitOfWork

# A registration made again with the same password replaces the same person's earlier
# one; only this many of the newest other pending ones are compared, an argon2 check
# each. Every registration makes exactly this many checks (against a decoy where there
# are fewer to compare), whatever the address: its time tells nothing about it.
_COMPARED_REGISTRATIONS = 3


class Registration:
    def __init__(self, settings: AccountSettings, passwords: Passwords):
        self.settings = settings
        self.passwords = passwords

    def register(self, uow: UnitOfWork, principal: Principal, data: dict) -> None:
        """Start an account; the same outcome for the caller whatever the address. Nothing
        the registering party sent reaches the record before the address is proven: it
        waits in the verification token.

        Refused first (409) when the calling site has no pages for the mail's link, for
        every address alike and before anything is counted or written. Then counted
        (committed on its own), then the password checked and hashed with no connection
        held, then written in one transaction; then a registration made again with the
        same password (a double submit, "the mail did not come", two clicks at once) is
        settled, also with no connection held while it is compared. The argon2 work is
        the same for every address (one hash, _COMPARED_REGISTRATIONS checks), and none
        of it grows with how many registrations are pending."""
        site = mailing_site(uow, principal)
        self._count(uow, principal, data)
        uow.commit()
        address = normalise_email(data["email"])
        key = email_key(address)
        fields = common.own_fields(data)
        password = common.acceptable_password(
            self.passwords,
            data["password"],
            email=address,
            names=common.names(fields),
            previous=[],
        )
        password_hash = self.passwords.hash(password)
        made = self._start(uow, principal, site, address, key, fields, password_hash)
        uow.commit()
        security_event("registration.requested", principal, user_id=made[0])
        self._settle_made_again(uow, made, password)

    def _count(self, uow: UnitOfWork, principal: Principal, data: dict) -> None:
        """Count a registration before its password is hashed (the dearest thing a
        stranger can make the service do), like login checks: past a few within the
        window, registrations wait. Per client IP; per address only when the site sends
        no client IP, because a limit per address is one a stranger can use up to keep
        its owner from registering."""
        s = self.settings
        client_ip = principal.browser.client_ip
        if client_ip:
            throttle = f"register-ip:{common.network(client_ip)}"
            free, cap = s.ip_free_failures, s.ip_block_cap_seconds
        else:
            key = email_key(normalise_email(data["email"]))
            throttle = f"register:{common.account_throttle(s, key)}"
            free, cap = s.account_free_failures, s.account_block_cap_seconds
        until = common.reserve(uow.one_statement, s, throttle, free, cap)
        if until is not None:
            uow.refuse(common.waiting(until, "too many registrations; wait before trying again"))

    def _settle_made_again(self, uow: UnitOfWork, made: tuple, password: str) -> None:
        """Of the address's newest pending registrations made with this same password
        (this one among them), only the newest stays; the rest are the same person's and
        are superseded, so they do not make the proof contested. Read after this one is
        committed, without a lock, and compared with no connection held: two made at once
        each see at least what was committed before them, and both settle on the same
        newest (by time, then token hash), whichever settles last.

        A registration of a proven account (`made` has no token) has none pending; it
        reads and checks as much all the same, against a decoy."""
        user_id, token_hash = made
        conn = uow.one_statement
        pending = tokens_store.pending_registrations(conn, user_id, _COMPARED_REGISTRATIONS + 1)
        uow.release()
        others = [p for p in pending if p["token_hash"] != token_hash][:_COMPARED_REGISTRATIONS]
        same = [p for p in pending if p["token_hash"] == token_hash]
        same += [p for p in others if self.passwords.verify(p["password_hash"], password)]
        for _ in range(_COMPARED_REGISTRATIONS - len(others)):
            self.passwords.verify_nothing(password)
        same.sort(key=lambda p: (p["created_at"], bytes(p["token_hash"])), reverse=True)
        older = [p["token_hash"] for p in same[1:]]
        if older:
            tokens_store.supersede_registrations(uow.one_statement, older)

    def _start(
        self,
        uow: UnitOfWork,
        principal: Principal,
        site: MailingSite,
        address: str,
        key: str,
        fields: dict,
        password_hash: str,
    ) -> tuple:
        """The registration written: (the record's id, its token's hash); the hash is
        None for an address that has an account already (which gets a notice instead)."""
        conn = uow.conn
        user = users_store.lock_by_email_key(conn, key)
        if user is None:
            users_store.insert_new(conn, [common.new_record(address, key, principal)])
            user = users_store.lock_by_email_key(conn, key)
        # The mail limits count per asking network: a stranger's registrations spend
        # their networks' budgets and a cap they share, never another network's budget
        # (mailed_tokens.may_mail).
        asked_from = common.mail_network(principal.browser.client_ip)
        may_mail = mailed_tokens.may_mail(conn, user["id"], "verify_email", asked_from)
        if user["email_verified_at"] is not None:
            if may_mail:
                enqueue_mail(
                    conn, "registration_attempt", user["email"], user["own_language"], site
                )
                mailed_tokens.count_only(conn, "verify_email", user["id"], asked_from)
            return user["id"], None
        # Every registration's link stays good (a later one, perhaps a stranger's, voids
        # none), and each is kept even when the hourly limit sends no mail for it: at
        # proof, more than one registration means none of their passwords is taken.
        hours = self.settings.verify_email_hours
        token = mailed_tokens.issue(
            conn,
            "verify_email",
            user["id"],
            timedelta(hours=hours),
            {"password_hash": password_hash, "fields": fields, "site": principal.site_name},
            mailed=may_mail,
            asked_from=asked_from,
        )
        if may_mail:
            enqueue_mail(
                conn,
                "verify_email",
                user["email"],
                fields.get("language") or user["own_language"],
                site,
                token=token,
                valid_hours=hours,
            )
        return user["id"], secret_hash(token)

    def verify_email(self, uow: UnitOfWork, principal: Principal, token: str) -> dict:
        """Prove an address with the token mailed to it: the registration it finishes (the
        record claimed, earlier data kept, the person's own fields winning, every session
        and token from before void), the change of address it confirms, or the join of a
        social identity it was asked for (identity.services.accounts.social). A site without
        pages is refused (409) before the token is looked at: a contested registration
        mails a link to choose a password."""
        site = mailing_site(uow, principal)
        conn = uow.conn
        found = mailed_tokens.take(
            conn, token, ("verify_email", "email_change", "social_join"), principal.site_name
        )
        if found is None:
            raise InvalidInput(INVALID_TOKEN, errors={"token": [INVALID_TOKEN]})
        user_id, payload = found["user_id"], found["payload"]
        if found["purpose"] == "email_change":
            change_email(conn, self.settings, principal, site, user_id, payload)
        elif found["purpose"] == "social_join":
            record = users_store.lock_record(conn, user_id)
            if record["email"] != payload["email"]:  # the record moved since it was mailed
                raise InvalidInput(INVALID_TOKEN, errors={"token": [INVALID_TOKEN]})
            provider, subject = payload["provider"], payload["subject"]
            join_identity(conn, principal, site, record, provider, subject, payload["names"])
        else:
            self._claim(conn, principal, site, user_id, payload)
        return users_store.get_by_id(conn, user_id)

    def _claim(self, conn, principal: Principal, site: MailingSite, user_id, payload: dict) -> None:
        """The address is proven. With one registration in its link's lifetime, the
        account takes that registration's password and fields. With more, the link's
        clicker cannot be told from whoever else registered the address (a stranger may
        have registered it after its owner, hoping the owner clicks the stranger's
        link): the address is proven, no password or field of any of them is taken, and
        the proven address gets a link to choose a password."""
        user = users_store.lock_user(conn, user_id)
        window = self.settings.verify_email_hours * 3600
        # Counted no further than two: however many are pending, proof reads as much.
        contested = tokens_store.registrations_since(conn, user_id, window, at_most=2) > 1
        fields = {} if contested else payload["fields"]
        password_hash = None if contested else payload["password_hash"]
        users_store.prove_address(
            conn,
            user_id,
            password_hash,
            fields,
            common.person_sources(("email", *fields), payload.get("site") or principal),
        )
        if password_hash is not None:
            users_store.remember_password(conn, user_id, password_hash, PASSWORD_HISTORY)
        mailed_tokens.void(conn, user_id, ("verify_email", "email_change", "password_reset"))
        sessions.revoke_sessions(conn, user_id)
        security_event("registration.proven", principal, user_id=user_id, contested=contested)
        if contested:
            minutes = self.settings.password_reset_minutes
            token = mailed_tokens.issue(
                conn, "password_reset", user_id, timedelta(minutes=minutes), site=site.name
            )
            enqueue_mail(
                conn,
                "choose_password",
                user["email"],
                user["own_language"],
                site,
                token=token,
                valid_minutes=minutes,
            )
