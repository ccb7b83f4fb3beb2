"""Newsletters: the five lists, each person's flag on each, the consent that proves every
change, double opt-in, one-click unsubscribe and unsubscribe links in bulk.

Every function joins the caller's transaction (one statement, where it says so, is its
own). A public endpoint never turns `unsubscribed` (or anything) into `subscribed`
without a fresh confirmation, and nothing subscribes through an unsubscribe token.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg

from identity.concurrency import Batcher
from identity.errors import Conflict, InvalidInput, NotFound, TooManyRequests
from identity.mail import enqueue as enqueue_mail
from identity.metrics import ONE_CLICKS
from identity.security.masking import mask_address
from identity.security.secret_tokens import new_secret, secret_hash
from identity.security.unsubscribe_tokens import TOKEN_LENGTH, UnsubscribeTokens
from identity.services import trail
from identity.services.contact import email_key, normalise_email
from identity.services.principal import LinkHolder, Principal
from identity.services.profiles import join_record
from identity.services.sites import MailingSite, mailing_site
from identity.services.subscriber_rows import LIST_UNSUBSCRIBE_POST, UUID_TEXT, CsvRows, JsonRows
from identity.services.suppression import Suppression
from identity.store import newsletters as store
from identity.store import users as users_store
from identity.store.transactions import UnitOfWork

# RFC 5322's limit on a header line, CRLF not counted.
MAX_HEADER_LINE = 998
# Links per POST .../unsubscribe-links.
MAX_LINKS_BATCH = 1000
# A connection, or a call that gives one when it is needed.
Connecting = psycopg.Connection | Callable[[], psycopg.Connection]
# At most this many one-clicks written in one statement.
ONE_CLICKS_BATCH = 100
# Confirmation mails to one address for one list per hour: the endpoint cannot be used
# to flood someone's mailbox.
_CONFIRMATIONS_AN_HOUR = 3
INVALID_CONFIRMATION = (
    "this confirmation link is not valid: it was used already, has expired, or was never made"
)
_NEVER = UUID(int=0)
_LAST = UUID(int=2**128 - 1)


@dataclass(frozen=True)
class Consent:
    """Where a change of a flag came from, as its consent event records it."""

    channel: str
    site: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    text: str | None = None

    @classmethod
    def of(cls, principal: Principal, channel: str, text: str | None = None) -> "Consent":
        """The consent of this request's caller: their site, the browser they came with."""
        browser = principal.browser
        return cls(channel, principal.site_name, browser.client_ip, browser.user_agent, text)

    def event(self, action: str, at: datetime | None = None) -> dict:
        return {
            "action": action,
            "at": at,
            "site": self.site,
            "client_ip": self.client_ip,
            "user_agent": self.user_agent,
            "consent_text": self.text,
            "channel": self.channel,
        }


class Newsletters:
    """The newsletter service of one app: its token keys, its public URL, its catalog."""

    def __init__(
        self,
        tokens: UnsubscribeTokens,
        public_url: str,
        suppression: Suppression,
        confirm_hours: int = 72,
        catalog_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.tokens = tokens
        self.suppression = suppression
        self.public_url = public_url.rstrip("/")
        self.unsubscribe_base = f"{self.public_url}/v1/unsubscribe/"
        self.confirm_hours = confirm_hours
        # The lists and when they were read; read again after `catalog_seconds`.
        self._catalog: tuple[float, list[dict]] | None = None
        self._catalog_seconds = catalog_seconds
        self._clock = clock
        # One-clicks that arrive together are written together (see one_click).
        self._one_clicks = Batcher(
            max_size=ONE_CLICKS_BATCH, key=lambda click: (click["user_id"], click["newsletter"])
        )
        if len(self.list_unsubscribe_header("x" * TOKEN_LENGTH)) > MAX_HEADER_LINE:
            raise ValueError("IDENTITY_PUBLIC_URL is too long for a List-Unsubscribe header line")

    # --- the catalog ---------------------------------------------------------------------

    def catalog(self, conn: Connecting) -> list[dict]:
        """The lists, kept `catalog_seconds` by this process: a list retired (its row
        deleted) is refused by every process within that time. `conn` may be a call that
        gives one, made only when the lists are read."""
        read = self._catalog
        now = self._clock()
        if read is None or not 0 <= now - read[0] < self._catalog_seconds:
            read = self._catalog = (now, store.catalog(conn() if callable(conn) else conn))
        return read[1]

    def lists(self, uow: UnitOfWork) -> list[dict]:
        """The lists the service sends."""
        return self.catalog(uow.one_statement)

    def newsletter(self, conn: psycopg.Connection, key: str) -> dict:
        for newsletter in self.catalog(conn):
            if newsletter["key"] == key:
                return newsletter
        raise NotFound(
            "no such newsletter; the lists are " + ", ".join(n["key"] for n in self.catalog(conn))
        )

    def _by_id(self, conn: Connecting, list_id: int) -> dict:
        """The list a token names; NotFound for one no longer in the catalog (old mails
        keep their links when a list is retired)."""
        for newsletter in self.catalog(conn):
            if newsletter["id"] == list_id:
                return newsletter
        raise NotFound("this unsubscribe link is for a list that is no longer sent")

    # --- links -------------------------------------------------------------------------

    @staticmethod
    def list_unsubscribe_header(url: str) -> str:
        """The whole header line a mail carries (RFC 2369, RFC 8058)."""
        return f"List-Unsubscribe: <{url}>"

    def link(self, user_id: UUID, list_id: int, preferences: str) -> dict:
        """A subscriber's links: one-click unsubscribe on IDENTITY_PUBLIC_URL, and the
        preferences page on the pages at `preferences` (`preferences_base`), with the same
        token."""
        token = self.tokens.sign(user_id, list_id)
        url = self.unsubscribe_base + token
        return {
            "user_id": user_id,
            "unsubscribe_url": url,
            "list_unsubscribe": f"<{url}>",
            "list_unsubscribe_post": LIST_UNSUBSCRIBE_POST,
            "preferences_url": preferences + token,
        }

    @staticmethod
    def preferences_base(conn: psycopg.Connection, newsletter: dict) -> str:
        """`{pages}/newsletters/preferences?token=`, on the pages of the site that manages
        the list: the page a subscriber changes every flag on, which calls
        /v1/unsubscribe/{token}/preferences. Read at each use, not with the catalog, so a
        site set up a moment ago counts at once. A 409 that says what to set when no
        site manages the list, or its site has no pages: links that lead nowhere are
        worse than none."""
        key = newsletter["key"]
        site = store.managing_site(conn, newsletter["id"])
        if site is None:
            raise Conflict(
                f"no site manages the list {key}, so its subscribers have no preferences page:"
                f" name the site that does, with its pages, `identity sites update SITE"
                f" --list {key} --pages https://...` (with every list the site manages)"
            )
        if not site["pages_url"]:
            raise Conflict(
                f"the site {site['name']} manages the list {key} but has no pages URL for its"
                f" preferences page: `identity sites update {site['name']} --pages https://...`"
            )
        return f"{site['pages_url']}/newsletters/preferences?token="

    # --- subscribing -------------------------------------------------------------------

    def subscribe(
        self,
        uow: UnitOfWork,
        principal: Principal,
        key: str,
        address: str,
        consent: Consent,
        language: str | None = None,
    ) -> dict:
        """Subscribe an address (a minimal profile, source `newsletter`, when it is new).
        A list with double opt-in, or a flag that was `unsubscribed`, gets `pending` and
        a confirmation mail; `subscribed` stays as it is. The flag as it now is.

        Whether it mails depends on the list and on the address's flag, so a site without
        pages for the confirmation's link is refused (409) whatever it asks, first: the
        answer says nothing about the address, and nothing is written."""
        conn = uow.conn
        newsletter = self.newsletter(conn, key)
        principal.require_list(key)
        site = mailing_site(uow, principal)
        user = self._record_for(conn, principal, address, language)
        current = store.flags(conn, user["id"], lock=True).get(newsletter["id"])
        state = current["state"] if current else None
        if state == "subscribed":
            return self._flag(newsletter, user["id"], current)
        if (
            newsletter["double_opt_in"]
            or state in ("unsubscribed", "pending")
            or self.suppression.held(conn, [email_key(user["email"])])
        ):
            flag = self._ask_confirmation(conn, site, newsletter, user, consent, current)
        else:
            flag = self._flag(
                newsletter,
                user["id"],
                store.set_flag(
                    conn, user["id"], newsletter["id"], "subscribed", consent.event("subscribe")
                ),
            )
        trail.record(
            uow, "newsletter.flag_set", principal, user["id"], list=key, state=flag["state"]
        )
        return flag

    def _record_for(self, conn, principal: Principal, address: str, language: str | None) -> dict:
        data = {"email": address, "source": "newsletter"}
        if language:
            data["language"] = language
        user, _ = join_record(conn, principal, data, self.suppression)
        return user

    def _ask_confirmation(
        self,
        conn: psycopg.Connection,
        site: MailingSite,
        newsletter: dict,
        user: dict,
        consent: Consent,
        current: dict | None,
    ) -> dict:
        if (
            store.confirmations_since(conn, user["id"], newsletter["id"], 3600)
            >= _CONFIRMATIONS_AN_HOUR
        ):
            raise TooManyRequests(
                "a confirmation for this list was mailed to this address several times in"
                " the last hour; it can be asked for again later",
                retry_after=3600,
            )
        token = new_secret()
        store.insert_confirmation(
            conn,
            secret_hash(token),
            user["id"],
            newsletter["id"],
            {
                "site": consent.site,
                "client_ip": consent.client_ip,
                "user_agent": consent.user_agent,
                "text": consent.text,
                "channel": consent.channel,
            },
            datetime.now(UTC) + timedelta(hours=self.confirm_hours),
        )
        enqueue_mail(
            conn,
            "newsletter_confirm",
            user["email"],
            user["own_language"],
            site,
            token=token,
            newsletter=newsletter["name"],
        )
        if current is not None and current["state"] == "pending":
            return self._flag(newsletter, user["id"], current)
        flag = store.set_flag(
            conn, user["id"], newsletter["id"], "pending", consent.event("request")
        )
        return self._flag(newsletter, user["id"], flag)

    def confirm(self, uow: UnitOfWork, principal: Principal, token: str) -> dict:
        """Subscribe with the token from a confirmation mail (once; it expires). The
        consent event keeps the text of the request and where the confirmation came from.
        A person who left the list after the mail was sent has withdrawn that request:
        its link no longer subscribes. A flag already subscribed stays as it is."""
        conn = uow.conn
        found = store.take_confirmation(conn, secret_hash(token))
        asked_by = found and found["consent"].get("site")
        if found is None or (asked_by and asked_by != principal.site_name):
            # Another site's confirmation is none here (its link is on that site's pages):
            # refused, it is given back, as taken in this rolled-back transaction.
            raise InvalidInput(INVALID_CONFIRMATION, errors={"token": [INVALID_CONFIRMATION]})
        newsletter = self._by_id(conn, found["newsletter"])
        # Refused before anything is written: the token, taken above, is given back.
        principal.require_list(newsletter["key"])
        current = store.flags(conn, found["user_id"], lock=True).get(newsletter["id"])
        if current is not None and current["state"] == "subscribed":
            return self._flag(newsletter, found["user_id"], current)
        # Leaving the list after the mail went out withdrew its request for good, also
        # when a later request (with its own mail and consent text) is pending now.
        if store.left_since(conn, found["user_id"], newsletter["id"], found["created_at"]):
            raise InvalidInput(INVALID_CONFIRMATION, errors={"token": [INVALID_CONFIRMATION]})
        consent = Consent.of(
            principal, found["consent"].get("channel") or "form", found["consent"].get("text")
        )
        flag = store.set_flag(
            conn, found["user_id"], newsletter["id"], "subscribed", consent.event("confirm")
        )
        # Consent confirmed from the mailbox: an erased address may be on lists again.
        self.suppression.lift(conn, found["email_key"])
        trail.record(
            uow,
            "newsletter.flag_set",
            principal,
            found["user_id"],
            list=newsletter["key"],
            state="subscribed",
        )
        return self._flag(newsletter, found["user_id"], flag)

    @staticmethod
    def _flag(newsletter: dict, user_id: UUID, flag: dict) -> dict:
        return {
            "newsletter": newsletter["key"],
            "user_id": user_id,
            "state": flag["state"],
            "changed_at": flag["changed_at"],
        }

    # --- through an unsubscribe token ----------------------------------------------------

    def link_of(self, token: str) -> tuple[UUID, int]:
        """(person, list number) of a genuine token; NotFound for anything else, which
        says nothing about why."""
        named = self.tokens.verify(token)
        if named is None:
            raise NotFound("this unsubscribe link is not valid")
        return named

    def describe_link(self, uow: UnitOfWork, link: LinkHolder) -> dict:
        """Which list and which (masked) address a link is for, and its state. Reads only."""
        conn = uow.one_statement
        newsletter = self._by_id(conn, link.list_id)
        found = store.flag_of(conn, link.user_id, link.list_id)
        if found is None:
            raise NotFound("this unsubscribe link is for a record that no longer exists")
        return {
            "newsletter": newsletter["key"],
            "name": newsletter["name"],
            "email": mask_address(found["email"]),
            "state": found["state"],  # None: never subscribed, as the preferences say
        }

    def one_click(self, uow: UnitOfWork, link: LinkHolder, consent: Consent) -> dict:
        """Unsubscribe from the link's one list, at once; a repeat changes nothing. One
        statement, outside a transaction (it commits on its own): the one documented
        exception to a request's one transaction. One-clicks that come while one is
        being written wait, and are then written together, in one statement, by the first
        of them (a campaign's mail brings thousands in a minute): one round trip and one
        commit for all of them, and no connection held while waiting."""
        newsletter = self._by_id(lambda: uow.one_statement, link.list_id)
        click = {"user_id": link.user_id, "newsletter": link.list_id}
        click |= consent.event("unsubscribe")
        found = self._one_clicks(
            click, lambda clicks: store.unsubscribe(uow.one_statement, clicks, skip_busy=True)
        )
        if found["busy"]:  # another change of this person's is under way: after it, alone
            found = store.unsubscribe(uow.one_statement, [click])[0]
        if found["email"] is None:
            raise NotFound("this unsubscribe link is for a record that no longer exists")
        ONE_CLICKS.labels("true" if found["changed"] else "false").inc()
        return {
            "newsletter": newsletter["key"],
            "name": newsletter["name"],
            "email": mask_address(found["email"]),
            "state": "unsubscribed",
            "changed": found["changed"],
        }

    def preferences(self, uow: UnitOfWork, link: LinkHolder) -> dict:
        """Every list's flag of the person a link names, and the masked address; a link
        to a list no longer in the catalog is a 404 here too, as at the link itself."""
        conn = uow.one_statement
        self._by_id(conn, link.list_id)
        return self._preferences(conn, link.user_id)

    def _preferences(self, conn: psycopg.Connection, user_id: UUID) -> dict:
        user = users_store.get_by_id(conn, user_id)
        if user is None:
            raise NotFound("this unsubscribe link is for a record that no longer exists")
        return {"email": mask_address(user["email"]), "newsletters": self._all_flags(conn, user_id)}

    def set_preferences(
        self, uow: UnitOfWork, link: LinkHolder, wanted: dict[str, bool] | None, consent: Consent
    ) -> dict:
        """Leave the lists set to false (every list, for `wanted` None); true keeps a
        subscribed flag and is refused for any other: subscribing takes a confirmation,
        never an unsubscribe token. Refused as a whole, so nothing changes, or done whole."""
        conn = uow.conn
        self._by_id(conn, link.list_id)
        if wanted is None:
            wanted = {n["key"]: False for n in self.catalog(conn)}
        user_id = link.user_id
        if users_store.get_by_id(conn, user_id) is None:
            raise NotFound("this unsubscribe link is for a record that no longer exists")
        lists = {n["key"]: n for n in self.catalog(conn)}
        retired = {
            f"newsletters.{key}": ["this list is no longer sent"]
            for key in wanted
            if key not in lists
        }
        if retired:
            raise InvalidInput("some lists are no longer sent", errors=retired)
        current = store.flags(conn, user_id, lock=True)
        refused = {
            f"newsletters.{key}": [
                f"subscribing takes a confirmation: POST /v1/newsletters/{key}/subscriptions"
            ]
            for key, want in wanted.items()
            if want and (current.get(lists[key]["id"]) or {}).get("state") != "subscribed"
        }
        if refused:
            raise InvalidInput("an unsubscribe link can only unsubscribe", errors=refused)
        for key, want in sorted(wanted.items()):
            flag = current.get(lists[key]["id"])
            if not want and (flag is None or flag["state"] != "unsubscribed"):
                store.set_flag(
                    conn, user_id, lists[key]["id"], "unsubscribed", consent.event("unsubscribe")
                )
        return self._preferences(conn, user_id)

    def _all_flags(self, conn: psycopg.Connection, user_id: UUID) -> list[dict]:
        current = store.flags(conn, user_id)
        return [
            {
                "key": n["key"],
                "name": n["name"],
                "product": n["product"],
                "state": current[n["id"]]["state"] if n["id"] in current else None,
                "subscribed": n["id"] in current and current[n["id"]]["state"] == "subscribed",
            }
            for n in self.catalog(conn)
        ]

    # --- the signed-in person ------------------------------------------------------------

    def mine(self, uow: UnitOfWork, principal: Principal) -> list[dict]:
        return self._all_flags(uow.one_statement, principal.user.user_id)

    def set_mine(
        self,
        uow: UnitOfWork,
        principal: Principal,
        key: str,
        subscribed: bool,
        consent: Consent,
    ) -> list[dict]:
        """The signed-in person subscribes or unsubscribes themselves: their sign-in has
        proven the address, so no confirmation mail is needed. Leaving a list they were
        never on records the refusal (`unsubscribed`), so no import subscribes them."""
        conn, user_id = uow.conn, principal.user.user_id
        newsletter = self.newsletter(conn, key)
        current = store.flags(conn, user_id, lock=True).get(newsletter["id"])
        state = "subscribed" if subscribed else "unsubscribed"
        if subscribed:
            self.suppression.lift(conn, email_key(principal.user.record["email"]))
        if (current["state"] if current else None) != state:
            store.set_flag(
                conn,
                user_id,
                newsletter["id"],
                state,
                consent.event("subscribe" if subscribed else "unsubscribe"),
            )
        return self._all_flags(conn, user_id)

    # --- links in bulk -----------------------------------------------------------------

    def links(
        self,
        uow: UnitOfWork,
        principal: Principal,
        key: str,
        emails: list[str] | None,
        user_ids: list[UUID] | None,
    ) -> dict:
        """One unsubscribe link (and preferences page) per given address and id that has a
        record; the rest (an address that is not valid has no record either) are listed as
        unknown. Reads only: a link is computed, never stored. 409 when the list has no
        site with pages for its preferences page (`preferences_base`).

        A key without `users:read` gets links for the list's subscribers alone (their flag
        `subscribed`), which its export shows it anyway; everyone else is unknown, a
        record or not: the list's scope is no way to learn who has a record, nor their
        id. A pending flag is not enough, since any site may ask for anyone."""
        conn = uow.one_statement
        newsletter = self.newsletter(conn, key)
        principal.require_list(key)
        preferences = self.preferences_base(conn, newsletter)
        subscribed_to = None if principal.has_scope("users:read") else newsletter["id"]
        links, unknown, keyed = [], [], []
        for address in emails or ():
            try:
                keyed.append((address, email_key(normalise_email(address))))
            except InvalidInput:
                keyed.append((address, None))
        by_key = store.users_by_email_key(
            conn, [k for _, k in keyed if k is not None], subscribed_to
        )
        by_id = store.users_by_id(conn, user_ids, subscribed_to) if user_ids else {}
        wanted = [(address, by_key.get(k)) for address, k in keyed]
        wanted += [(str(user_id), by_id.get(user_id)) for user_id in user_ids or ()]
        for given, user in wanted:
            if user is None:
                unknown.append(given)
            else:
                link = self.link(user["id"], newsletter["id"], preferences)
                links.append({"given": given, "email": user["email"], **link})
        return {"newsletter": newsletter["key"], "links": links, "unknown": unknown}

    def export_page(
        self,
        uow: UnitOfWork,
        principal: Principal,
        key: str,
        after: UUID | None,
        limit: int | None,
    ) -> tuple[UUID | None, bool]:
        """Where a page of `limit` subscribers after `after` ends: the user id of its last
        (None without `limit`, or when fewer are left) and whether more follow it. The page
        is every subscriber up to that id when it is sent: a row counted now is never cut
        off by one that subscribes meanwhile, and the next page begins after it.

        Asked before the stream begins, so what would refuse the export does so here, in
        a whole answer: an unknown list (404), a list the key may not manage (403, before
        anything about the list's site is told), a list without a site with pages for its
        preferences page (409)."""
        conn = uow.one_statement
        newsletter = self.newsletter(conn, key)
        principal.require_list(key)
        self.preferences_base(conn, newsletter)
        if limit is None:
            return None, False
        return store.subscriber_page_end(conn, newsletter["id"], after or _NEVER, limit)

    def export(
        self,
        uow: UnitOfWork,
        key: str,
        csv: bool,
        after: UUID | None,
        through: UUID | None = None,
        batch_size: int = 20_000,
    ) -> Iterator[bytes]:
        """Every subscriber of a list in user id order, from after `after` up to
        `through` (a page's end, `export_page`), as NDJSON or CSV (UTF-8) with their
        unsubscribe URL, header values and preferences page, a batch at a time.

        PostgreSQL hands over each batch as two texts (the ids and addresses, written
        out and escaped, and the ids' 16 bytes); the tokens are signed in one sweep and
        every line is put together by joining slices, so no Python runs per field.
        While a batch is signed, PostgreSQL already reads the next (pipeline mode): the
        two cores work at once. A connection is borrowed per batch (`uow.briefly()`),
        not for the whole, however slowly the client reads; memory stays flat.

        Batches of up to 20,000 rows: PostgreSQL spends less per row the longer a batch
        (docs/measurements.md has its figures). A batch asks for as many rows as would
        hold _BATCH_BYTES of ids and addresses were they as long as the batch before's
        (the first batch: as long as an address can be), so a list of long addresses
        comes in shorter batches. Its lines are made and handed over a few thousand at
        a time (_PART_ROWS), each let go once sent, so each export holds a few
        megabytes, however many a worker streams at once."""
        with uow.briefly() as conn:
            newsletter = self.newsletter(conn, key)
            preferences = self.preferences_base(conn, newsletter)
        list_id = newsletter["id"]
        written_as = CsvRows if csv else JsonRows
        pieces = written_as(self.unsubscribe_base, preferences)
        params = {"newsletter": list_id, "after": after or _NEVER, "through": through or _LAST}

        def ask(conn, row_bytes):
            size = max(1, min(batch_size, _BATCH_BYTES // row_bytes))
            return store.ask_for_subscriber_batch(conn, params | {"limit": size}), size

        with uow.briefly() as conn, conn.pipeline():
            asked, size = ask(conn, _LONGEST_ROW_BYTES)
            user_ids, emails = store.subscriber_batch(asked)
        rows = 0
        while user_ids:
            n = len(user_ids) // UUID_TEXT
            rows += n
            params["after"] = UUID(user_ids[-UUID_TEXT:].decode())
            last = n < size or params["after"] == through
            row_bytes = (len(user_ids) + len(emails)) // n + 1
            with uow.briefly() as conn, conn.pipeline():
                if not last:  # PostgreSQL reads on meanwhile
                    asked, size = ask(conn, row_bytes)
                # The ids' 16 bytes, for the tokens: hex without the dashes, in one call.
                raw_ids = bytes.fromhex(user_ids.replace(b"-", b"").decode())
                parts = pieces.lines(user_ids, emails, self.tokens.sign_many(raw_ids, list_id))
                user_ids, emails = (b"", b"") if last else store.subscriber_batch(asked)
            parts.reverse()
            while parts:
                yield parts.pop()  # and once sent, let go
        # The mark of a whole answer: a stream cut by a database blip or a stop ends
        # without it, which a client can tell even where HTTP cannot (HTTP/1.0, a proxy
        # that removes chunking).
        yield pieces.complete(rows)


# What a batch of the export may hold of ids and addresses (a row's id is 36 bytes, a
# typical address 20 to 30): 20,000 typical rows, 5,000 of the longest addresses, 254
# bytes (RFC 5321's path limit less its brackets).
_BATCH_BYTES = 1_500_000
_LONGEST_ROW_BYTES = UUID_TEXT + 254 + 1
