"""Newsletters for the sites: the lists, subscribing with consent, double opt-in
confirmation, every subscriber's unsubscribe link (streamed) and links in bulk."""

import json
from http import HTTPStatus

from flask import Response, request
from flask.views import MethodView
from marshmallow import RAISE
from werkzeug.exceptions import NotAcceptable

from identity.api.guards import JSON, Blueprint, caller, principal, services
from identity.api.paging import next_link, next_link_header
from identity.api.profile_import import CSV, NDJSON
from identity.db import unit_of_work
from identity.errors import TooManyExports
from identity.services.newsletters import Consent
from identity.services.subscriber_rows import CSV_HEADER
from schemas.newsletters import (
    NEWSLETTER_KEYS,
    ConfirmationSchema,
    ExportCompleteSchema,
    ExportQuerySchema,
    LinksRequestSchema,
    LinksSchema,
    NewsletterSchema,
    SubscriberLinkSchema,
    SubscriptionRequestSchema,
    SubscriptionSchema,
)

blp = Blueprint(
    "newsletters",
    __name__,
    url_prefix="/v1/newsletters",
    description="The five lists: subscribing with proof of consent, and unsubscribe links.",
)

SCOPE = "newsletters"
_USER_ID = "7d5c3f0e-2b1a-4c8e-9f6d-0a1b2c3d4e5f"
_TOKEN = "AQF9XD8OKxpMjp9tChs8PU5fxA8ZrxcsR6x0wEXs2cqM"  # noqa: S105 - an example
_URL = f"https://id.example.com/v1/unsubscribe/{_TOKEN}"
_PREFERENCES = f"https://www.copernica.com/account/newsletters/preferences?token={_TOKEN}"
_LINK = {
    "user_id": _USER_ID,
    "email": "anna@example.com",
    "unsubscribe_url": _URL,
    "list_unsubscribe": f"<{_URL}>",
    "list_unsubscribe_post": "List-Unsubscribe=One-Click",
    "preferences_url": _PREFERENCES,
}
_CATALOG_EXAMPLE = [
    {
        "key": "copernica",
        "name": "Copernica newsletter",
        "product": "copernica",
        "description": "Copernica's regular newsletter: product news, cases and events.",
        "double_opt_in": True,
    }
]
_FLAG_EXAMPLE = {
    "newsletter": "copernica",
    "user_id": _USER_ID,
    "state": "pending",
    "changed_at": "2026-11-25T09:30:00Z",
}
# The list key in the path: one of the five, or a 404.
KEY_PARAMETER = {
    "in": "path",
    "name": "key",
    "required": True,
    "schema": {"type": "string", "enum": list(NEWSLETTER_KEYS)},
    "description": "the list",
}


@blp.route("")
class Catalog(MethodView):
    @blp.site_key(SCOPE)
    @blp.response(HTTPStatus.OK, NewsletterSchema(many=True), example=_CATALOG_EXAMPLE)
    def get(self):
        """The five lists

        `copernica`, `copernica-updates`, `copernica-partners`, `smtpeter` and `mailerq`,
        with their name, product, description and whether subscribing waits for a
        confirmation mail (double opt-in).
        """
        return services().newsletters.lists(unit_of_work())


@blp.route("/<key>/subscriptions", parameters=[KEY_PARAMETER])
class Subscriptions(MethodView):
    @blp.site_key(SCOPE)
    @blp.arguments(
        SubscriptionRequestSchema,
        example={
            "email": "anna@example.com",
            "consent": {
                "text": "Yes, send me the Copernica newsletter (v3)",
                "client_ip": "203.0.113.7",
                "user_agent": "Mozilla/5.0",
            },
        },
    )
    @blp.response(HTTPStatus.OK, SubscriptionSchema, example=_FLAG_EXAMPLE)
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.TOO_MANY_REQUESTS, response="TOO_MANY_REQUESTS")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    def post(self, body, key):
        """Subscribe an address to a list

        A new address gets a minimal record (source `newsletter`). A list with double
        opt-in answers `pending` and mails a confirmation link (`token=`) to the address,
        for `POST /v1/newsletters/confirm`; so does a flag that was `unsubscribed`, on
        every list: nothing here turns it back into `subscribed` without a fresh
        confirmation. Otherwise the flag is `subscribed` at once; one that was
        `subscribed` stays so. Every change of the flag is kept as a consent event: the
        list, what was done, when, by which site, the consent text, the person's IP
        address and browser (`client_ip` and `user_agent`, inside `consent` or beside it
        as on every endpoint a site calls for a person; the consent's own come first),
        and the channel. At most 3 confirmation mails per address and list an hour
        (`429`). The confirmation goes out in the calling site's brand, from its sender,
        its link on the site's pages (`{pages}/newsletters/confirm?token=…`): a site
        without pages is a `409`, whatever the list and the address.
        """
        given = body["consent"]
        consent = Consent.of(caller(given), given.get("channel") or "form", given.get("text"))
        return services().newsletters.subscribe(
            unit_of_work(), caller(given), key, body["email"], consent, body["language"]
        )


@blp.route("/confirm")
class Confirmation(MethodView):
    @blp.site_key(SCOPE)
    @blp.arguments(
        ConfirmationSchema,
        example={
            "token": "n7Qb1tZkV6Yc9xM2pLr8sD4fGh3jK5aW0eUoIy7TqCw",
            "client_ip": "203.0.113.7",
            "user_agent": "Mozilla/5.0",
        },
    )
    @blp.response(
        HTTPStatus.OK, SubscriptionSchema, example=_FLAG_EXAMPLE | {"state": "subscribed"}
    )
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    def post(self, body):
        """Confirm a subscription (double opt-in)

        With the `token` of the confirmation mail's link: the flag becomes `subscribed`,
        and a consent event keeps the consent text of the request and where this
        confirmation came from (`client_ip`, `user_agent`). A token works once and for
        72 hours (`IDENTITY_NEWSLETTER_CONFIRM_HOURS`); any other is a `422`.
        """
        return services().newsletters.confirm(unit_of_work(), caller(body), body["token"])


_EXPORT_NDJSON = json.dumps(_LINK) + "\n" + '{"complete":true,"rows":1}\n'
_EXPORT_CSV = CSV_HEADER + (
    f'{_USER_ID},"anna@example.com","{_URL}","<{_URL}>",List-Unsubscribe=One-Click,'
    f'"{_PREFERENCES}"\r\n'
    "#complete,1,,,,\r\n"
)


@blp.route("/<key>/subscribers", parameters=[KEY_PARAMETER])
class Subscribers(MethodView):
    @blp.site_key(SCOPE)
    @blp.arguments(ExportQuerySchema, location="query", unknown=RAISE)
    @blp.doc(
        responses={
            "200": {
                "description": "One subscriber per line, in `user_id` order, then the"
                " closing line of a whole answer.",
                "headers": {
                    "Link": next_link_header(
                        f"…/v1/newsletters/copernica/subscribers?limit=1000&after={_USER_ID}"
                    )
                },
                "content": {
                    NDJSON: {
                        "schema": {"oneOf": [SubscriberLinkSchema, ExportCompleteSchema]},
                        "example": _EXPORT_NDJSON,
                    },
                    CSV: {"schema": {"type": "string"}, "example": _EXPORT_CSV},
                },
            }
        }
    )
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    @blp.alt_response(HTTPStatus.NOT_ACCEPTABLE, response="NOT_ACCEPTABLE")
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    def get(self, query, key):
        """Every subscriber of a list, with their unsubscribe link

        Streamed, for millions of rows at database speed and in flat memory: NDJSON by
        default, CSV (a header row, then one row each) with `Accept: text/csv`. Each row:
        `user_id`, `email`, `unsubscribe_url`, and the values of the two headers a mail
        needs for one-click unsubscribe (RFC 8058): `List-Unsubscribe` (`<url>`, the whole
        header line at most 998 characters) and `List-Unsubscribe-Post`; and
        `preferences_url`, the person's page of every flag on the pages of the site that
        manages the list (`{pages}/newsletters/preferences?token=`, the same token). A list
        no site manages, or whose site has no pages, is a `409` that says what to set,
        before anything is streamed. Only `subscribed` flags are listed. Rows come in
        `user_id` order: to resume after a broken transfer, ask again with `after` = the
        last `user_id` received. With `limit`, a page: the
        next `limit` subscribers as the request finds them, up to and including the
        last one's `user_id`; while more follow, a `Link` header (`rel="next"`) names
        the next page, which begins after that `user_id`. Whoever subscribes within a
        page's range while it is sent comes in it too, so a page can hold a few more
        than `limit` rows, and none who stayed subscribed is ever skipped. In
        CSV, an address that starts with `=`, `+`, `-`, `@` or `'` comes with a `'` put
        before it, so no spreadsheet takes it for a formula: take one leading `'` away
        to read the address.

        A whole answer ends with a closing line that counts the rows before it: in NDJSON
        `{"complete":true,"rows":N}`, in CSV a last row `#complete,N,,,,` (no user id
        starts with `#`). An answer without it was cut short (a database blip, a stop),
        whatever HTTP said: ask again with `after` = the last `user_id` received.
        """
        service, uow = services().newsletters, unit_of_work()
        after, limit = query["after"], query["limit"]
        # Before the stream begins: an unknown list is a 404, and a page's end is found.
        through, more = service.export_page(uow, principal(), key, after, limit)
        csv = _export_type(request.headers.get("Accept", "")) == CSV
        slot = services().exports.take()
        if slot is None:
            raise TooManyExports(
                "this replica is streaming as many exports as it may; try again shortly"
            )
        # The rows are read as they are sent, long after this request's work is
        # committed: each batch on a connection borrowed for it (`uow.briefly()`).
        rows = service.export(uow, key, csv, after, through)

        def body():
            try:
                if csv:
                    yield CSV_HEADER.encode()
                # In pieces of 64 KiB: a slow reader has IDENTITY_SEND_TIMEOUT_SECONDS
                # for each, not for a whole batch of a megabyte or more.
                for batch in rows:
                    for start in range(0, len(batch), _PIECE):
                        yield batch[start : start + _PIECE]
            finally:
                slot.release()

        answer = Response(
            body(),
            mimetype=CSV if csv else NDJSON,
            headers=next_link(through if more else None, limit, key=key),
        )
        # Sent, cut off or never started: the slot is free again when the stream ends or
        # the server closes the answer, whichever comes first.
        answer.call_on_close(rows.close)
        answer.call_on_close(slot.release)
        return answer


@blp.route("/<key>/unsubscribe-links", parameters=[KEY_PARAMETER])
class UnsubscribeLinks(MethodView):
    @blp.site_key(SCOPE)
    @blp.arguments(LinksRequestSchema, example={"emails": ["anna@example.com"]})
    @blp.response(
        HTTPStatus.OK,
        LinksSchema,
        example={
            "newsletter": "copernica",
            "links": [{"given": "Anna@Example.com", **_LINK}],
            "unknown": ["nobody@example.com"],
        },
    )
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    def post(self, body, key):
        """Unsubscribe links for a batch of addresses or ids

        `{emails: [...]}` or `{user_ids: [...]}` (or both), up to 1,000 each: one link for
        each that has a record (whatever its flag) when the key has `users:read`; without
        it, one for each subscriber of the list alone (its flag `subscribed`: what the
        export shows), and a record that is not one is `unknown` just as an address with
        no record is. In the order given, with the ready
        `List-Unsubscribe` and `List-Unsubscribe-Post` values, the `preferences_url` on
        the pages of the site that manages the list (a `409` says what to set when none
        does, or it has no pages), and `given`, the address as sent or the id (in lower
        case; `email` is the record's own spelling); the others (an address that is not
        valid among them) are listed in `unknown`, the same way. An id is written
        `8-4-4-4-12` (hexadecimal, either case). Nothing is stored: a link is computed,
        and the same person and list always get the same link.
        """
        return services().newsletters.links(
            unit_of_work(), principal(), key, body.get("emails"), body.get("user_ids")
        )


_PIECE = 64 * 1024
_NOT_ACCEPTABLE = "this answers application/x-ndjson or text/csv; the Accept header takes neither"


def _export_type(accept: str) -> str:
    """CSV when the Accept header prefers it to NDJSON (by quality, then by the more
    specific range: `text/csv, */*` is CSV, `*/*` NDJSON), else NDJSON; a 406 when it
    takes neither, nor application/json (which HTTP clients send by default). Each type
    counts at its most specific range (`text/csv;q=0, */*` takes NDJSON). Media-type
    parameters are ignored (`text/csv; charset=utf-8`, RFC 4180's `header=present`):
    werkzeug's matching would take them as a different type."""
    if not accept.strip():
        return NDJSON
    weights: dict[str, float] = {}
    for item in accept.split(","):
        media_type, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media_type = media_type.lower()
        weights[media_type] = max(weights.get(media_type, 0.0), quality)

    def rank(media_type: str) -> tuple[float, int]:
        """The quality the header gives a type, and how specifically it names it."""
        ranges = (media_type, media_type.split("/")[0] + "/*", "*/*")
        for specific, accepted in zip((2, 1, 0), ranges, strict=True):
            if accepted in weights:
                return weights[accepted], specific
        return 0.0, 0

    # application/json stands in for NDJSON only when named: through a wildcard it
    # would undo an explicit `application/x-ndjson;q=0`.
    named_json = (weights[JSON], 2) if JSON in weights else (0.0, 0)
    csv, ndjson = rank(CSV), max(rank(NDJSON), named_json)
    if csv[0] == ndjson[0] == 0:
        raise NotAcceptable(_NOT_ACCEPTABLE)
    return CSV if csv > ndjson else NDJSON
