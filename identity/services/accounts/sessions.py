"""Sign-ins: whether one is live (the one place that decides it), refreshing its tokens,
ending it, and the person's own lists of sign-ins and login attempts."""

from datetime import UTC, datetime
from uuid import UUID

from identity.concurrency import Batcher
from identity.errors import NotFound, Unauthenticated
from identity.security.access_tokens import KeyRing
from identity.security.secret_tokens import new_secret, secret_hash
from identity.services.accounts import common
from identity.services.accounts.common import AccountSettings, Tokens
from identity.services.contact import email_key, normalise_email
from identity.services.principal import Principal, UserCaller
from identity.services.security_events import security_event
from identity.store import sessions as store
from identity.store import throttles, users
from identity.store.transactions import UnitOfWork

SIGN_IN_ENDED = "this sign-in has ended; log in again"


class Sessions:
    def __init__(self, settings: AccountSettings, ring: KeyRing):
        self.settings = settings
        self.ring = ring
        # Refreshes that come together are rotated together; one token's never.
        self._rotations = Batcher(key=lambda rotation: rotation["old"])

    def signed_in(self, uow: UnitOfWork, access_token: str) -> Principal:
        """The person an access token names, while the token is genuine and its sign-in
        holds (a claim, a password change or a logout ends it at once, access tokens
        included); with their record. Every endpoint for the signed-in person passes here.

        The ring does not check a token's signature again while the token lives (a site
        sends the same one with every request of a person for its quarter of an hour), but
        does refuse it once its key is revoked. The sign-in is looked up every time, in
        one statement that also reads the record."""
        claims = self.ring.verify(access_token, audience=None, issuer=self.settings.issuer)
        if not isinstance(claims.get("aud"), str):  # one site's token, never a list
            raise Unauthenticated("this access token is not valid")
        try:
            user_id, session_id = UUID(claims["sub"]), UUID(claims["sid"])
            site_name = str(claims["aud"])
            issued_at = datetime.fromtimestamp(int(claims["iat"]), UTC)
        except (KeyError, ValueError, TypeError, OverflowError):
            raise Unauthenticated("this access token is not valid") from None
        record = store.signed_in_user(uow.one_statement, user_id, session_id)
        if record is None:
            raise Unauthenticated(SIGN_IN_ENDED)
        return Principal(user=UserCaller(user_id, site_name, session_id, issued_at, record))

    def refresh(self, uow: UnitOfWork, principal: Principal, refresh_token: str) -> Tokens:
        """A new pair for a live refresh token of the calling site's sign-in, which is
        spent. A spent one shown again means it was copied: its whole family is revoked.
        The rotation is one statement outside a transaction; refreshes that come while
        one is being written wait and are then rotated together, in one statement
        (Batcher), holding no connection while they wait."""
        old_hash = secret_hash(refresh_token)
        refresh = new_secret("idrt_")
        rotation = {"old": old_hash, "new": secret_hash(refresh), "site": principal.site_name}
        idle = self.settings.refresh_idle_seconds
        rotated = self._rotations(
            rotation,
            lambda rotations: store.rotate_refresh_tokens(uow.one_statement, rotations, idle),
        )
        if rotated["session_id"] is None:
            conn = uow.one_statement
            copied = store.spent_refresh_token_session(conn, old_hash, principal.site_name)
            if copied is not None:
                store.revoke_session(conn, copied["session_id"])
                security_event("refresh_token.reused", principal, **copied, family_ended=True)
                uow.refuse(
                    Unauthenticated("this refresh token was used before; the sign-in is ended")
                )
            security_event("refresh_token.refused", principal)
            raise Unauthenticated("this refresh token is not valid, or its sign-in ended")
        access, expires_in = common.access_token(
            self.ring,
            self.settings,
            rotated["user_id"],
            rotated["site_name"],
            rotated["session_id"],
            rotated["amr"],
        )
        return Tokens(access, refresh, expires_in, None)

    def log_out(self, uow: UnitOfWork, principal: Principal, refresh_token: str) -> None:
        """End the sign-in the refresh token belongs to (nothing, for an unknown one or
        another site's)."""
        conn = uow.conn
        found = store.lock_refresh_token(conn, secret_hash(refresh_token))
        if found is not None and found["site_name"] == principal.site_name:
            store.revoke_session(conn, found["session_id"])
            security_event("session.logged_out", principal, **_sign_in_of(found))

    def sign_ins(
        self, uow: UnitOfWork, principal: Principal, limit: int, after: UUID | None
    ) -> tuple[list[dict], UUID | None]:
        """A page of the person's live sign-ins, the latest begun first, after the sign-in
        `after` (live or ended since); and the cursor of the next page (None on the
        last)."""
        conn, user_id = uow.one_statement, principal.user.user_id
        before = common.cursor(after, lambda: store.session_of(conn, user_id, after), "sign-ins")
        return common.page(store.live_sessions(conn, user_id, limit + 1, before), limit)

    def end(self, uow: UnitOfWork, principal: Principal, session_id: UUID) -> None:
        if not store.revoke_session(uow.one_statement, session_id, principal.user.user_id):
            raise NotFound("no live sign-in of yours with this id")
        security_event("session.revoked", principal, ended_session_id=session_id)

    def login_attempts(
        self, uow: UnitOfWork, principal: Principal, limit: int, after: int | None
    ) -> tuple[list[dict], int | None]:
        """A page of the person's attempts, newest first, after the attempt `after`; and
        the cursor of the next page (None on the last)."""
        conn, user_id = uow.one_statement, principal.user.user_id
        before = common.cursor(
            after, lambda: throttles.attempt_of(conn, user_id, after), "attempts"
        )
        return common.page(throttles.attempts_of(conn, user_id, limit + 1, before), limit)


def end_sign_ins_of(uow: UnitOfWork, address: str) -> int:
    """End every sign-in of the person with this address, from outside (an operator's
    `identity sessions revoke --email`): their refresh tokens are refused, and their
    access tokens at once by this service (`signed_in` finds the sign-in ended). How many
    were live. An address no record holds is NotFound, not zero: an operator who
    mistyped it must not believe the person signed out."""
    conn = uow.one_statement
    record = users.get_by_email(conn, email_key(normalise_email(address)))
    if record is None:
        raise NotFound("no record has this address")
    ended = store.end_sessions(conn, record["id"])
    security_event("sessions.revoked", user_id=record["id"], count=ended, by="operator")
    return ended


def end_every_sign_in(uow: UnitOfWork) -> int:
    """End everyone's sign-ins (`identity sessions revoke --all`): after a leak of refresh
    tokens, or of the database. How many were live."""
    ended = store.end_sessions(uow.one_statement, None)
    security_event("sessions.revoked", count=ended, by="operator", everyone=True)
    return ended


def _sign_in_of(found: dict) -> dict:
    """The person and sign-in a refresh token belongs to, as an event names them."""
    return {"user_id": found["user_id"], "session_id": found["session_id"]}
