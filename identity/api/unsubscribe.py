"""Unsubscribe links: what a link in a newsletter (and its List-Unsubscribe header) may
do, with no credential but the token in its path. Reading never changes anything (link
scanners fetch every link of a mail); POST unsubscribes from that one list at once
(RFC 8058 one-click); the preferences leave any of the person's lists. Nothing here ever
subscribes, and nothing answers with a redirect."""

import io
import json
from http import HTTPStatus
from urllib.parse import parse_qsl

from flask import Response, request
from flask.views import MethodView
from werkzeug.formparser import parse_form_data

from identity.api.guards import JSON, Blueprint, accepts, principal, services
from identity.api.parsing import load_json, read_body
from identity.db import unit_of_work
from identity.errors import InvalidInput
from identity.services.newsletters import Consent
from identity.services.subscriber_rows import LIST_UNSUBSCRIBE_POST
from schemas.newsletters import (
    LinkSchema,
    PreferencesChangeSchema,
    PreferencesSchema,
    UnsubscribedSchema,
)

blp = Blueprint(
    "unsubscribe",
    __name__,
    url_prefix="/v1/unsubscribe",
    description="What an unsubscribe link does: its token is the only credential.",
)

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
_ONE_CLICK_KEY, _, _ONE_CLICK_VALUE = LIST_UNSUBSCRIBE_POST.partition("=")
_ONE_CLICK_BODY = LIST_UNSUBSCRIBE_POST.encode()
# The body a one-click POST may carry: RFC 8058's, or nothing to speak of.
_ONE_CLICK = {
    "type": "object",
    "properties": {_ONE_CLICK_KEY: {"type": "string", "enum": [_ONE_CLICK_VALUE]}},
}
_BODY_LIMIT = 64 * 1024
_TOKEN = "<string(length=44):token>"  # noqa: S105 - a URL rule, not a secret

_LINK_EXAMPLE = {
    "newsletter": "copernica",
    "name": "Copernica newsletter",
    "email": "a***@e***.com",
    "state": "subscribed",
}
_FLAGS_EXAMPLE = {
    "email": "a***@e***.com",
    "newsletters": [
        {
            "key": "copernica",
            "name": "Copernica newsletter",
            "product": "copernica",
            "subscribed": True,
            "state": "subscribed",
        },
        {
            "key": "smtpeter",
            "name": "SMTPeter newsletter",
            "product": "smtpeter",
            "subscribed": False,
            "state": None,
        },
    ],
}


@blp.route(f"/{_TOKEN}")
class Link(MethodView):
    @blp.unsubscribe_link()
    @blp.response(HTTPStatus.OK, LinkSchema, example=_LINK_EXAMPLE)
    def get(self):
        """What an unsubscribe link is for

        The list, the address (masked: `a***@e***.com`) and its flag (null for a person
        never subscribed, as the preferences say). Changes nothing: mail scanners open
        every link. A
        token that is not one this service signed, or that was altered, is a `404`.
        """
        return services().newsletters.describe_link(unit_of_work(), principal().link)

    @blp.unsubscribe_link()
    @blp.doc(
        requestBody={
            "required": False,
            "description": "RFC 8058's `List-Unsubscribe=One-Click` (form-encoded or"
            " multipart), or an empty or JSON body; none is needed.",
            "content": {
                FORM: {"schema": _ONE_CLICK, "example": {_ONE_CLICK_KEY: _ONE_CLICK_VALUE}},
                MULTIPART: {
                    "schema": _ONE_CLICK,
                    "example": {_ONE_CLICK_KEY: _ONE_CLICK_VALUE},
                },
                JSON: {"schema": _ONE_CLICK, "example": {}},
            },
        }
    )
    @blp.response(
        HTTPStatus.OK,
        UnsubscribedSchema,
        example=_LINK_EXAMPLE | {"state": "unsubscribed", "changed": True},
    )
    @blp.body_problems
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @accepts(FORM, MULTIPART, JSON)
    def post(self):
        """Unsubscribe from this list (one-click)

        At once, from the link's one list; the person's other lists stay as they are.
        This is the URL of the mail's `List-Unsubscribe` header: mailbox providers POST
        `List-Unsubscribe=One-Click` to it (RFC 8058), form-encoded or as
        `multipart/form-data`; an empty or JSON body works too. No cookie or other
        credential is needed, and the answer is never a redirect. Using the link again is
        a `200` that changes nothing (`changed: false`). The change is kept as a consent
        event (channel `one-click`, the client's IP address and user agent). A body that
        says anything else than One-Click is a `422` and changes nothing; a
        `multipart/form-data` body that cannot be read as a form (no boundary, a broken
        part) says nothing, and counts as an empty body: the click unsubscribes, as a
        mailbox provider's imperfect POST is still the person's click.
        """
        _check_one_click_body()
        holder = principal()
        # One statement that commits by itself: no BEGIN and COMMIT round trips; the
        # connection is borrowed only by the request that writes (a batch of) them.
        answer = services().newsletters.one_click(
            unit_of_work(), holder.link, Consent.of(holder, "one-click")
        )
        # Written as it is (every value a plain string or bool): the busiest endpoint of
        # all, every mailbox provider's one-click, skips the schema's dump.
        return Response(json.dumps(answer), mimetype=JSON)


def _check_one_click_body() -> None:
    """Whatever the body says, it must not say something else than RFC 8058's words."""
    if not request.content_length and "chunked" not in request.headers.get("Transfer-Encoding", ""):
        return
    if request.mimetype == FORM:
        body = read_body(request, _BODY_LIMIT)
        if body.strip() == _ONE_CLICK_BODY:  # what mailbox providers send: no parsing
            return
        values = [
            v
            for k, v in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
            if k == _ONE_CLICK_KEY
        ]
        value = _said(values)
    elif request.mimetype == JSON:
        # Read as every other JSON body is: a key given twice or NaN is a 400 here too.
        body = load_json(read_body(request, _BODY_LIMIT) or b"{}")
        if not isinstance(body, dict):
            raise InvalidInput(
                "send a JSON object, or List-Unsubscribe=One-Click as a form",
                errors={"_schema": ["not a JSON object"]},
            )
        value = body.get(_ONE_CLICK_KEY, _ONE_CLICK_VALUE)
    else:
        # Read whole first, as the other types are: a body shorter than its
        # Content-Length is a 400 here too, not an empty form.
        body = read_body(request, _BODY_LIMIT)
        environ = request.environ | {
            "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body)),
        }
        value = _said(parse_form_data(environ)[1].getlist(_ONE_CLICK_KEY))
    if value != _ONE_CLICK_VALUE:
        raise InvalidInput(
            f"the body may only say {LIST_UNSUBSCRIBE_POST}",
            errors={_ONE_CLICK_KEY: [f"must be {_ONE_CLICK_VALUE}"]},
        )


def _said(values: list[str]) -> str | None:
    """What a form's List-Unsubscribe fields say together: One-Click when none is given,
    or when each one given says it (a client that sends the field twice still means it);
    otherwise not."""
    return _ONE_CLICK_VALUE if set(values) <= {_ONE_CLICK_VALUE} else None


@blp.route(f"/{_TOKEN}/preferences")
class Preferences(MethodView):
    @blp.unsubscribe_link()
    @blp.response(HTTPStatus.OK, PreferencesSchema, example=_FLAGS_EXAMPLE)
    def get(self):
        """All lists of the person a link is for

        Every one of the five lists with the person's flag (`state` null: never
        subscribed), and the masked address. Changes nothing.
        """
        return services().newsletters.preferences(unit_of_work(), principal().link)

    @blp.unsubscribe_link()
    @blp.arguments(
        PreferencesChangeSchema,
        example={"newsletters": {"copernica": True, "smtpeter": False}},
    )
    @blp.response(HTTPStatus.OK, PreferencesSchema, example=_FLAGS_EXAMPLE)
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    def put(self, body):
        """Leave some or all of the person's lists

        `{all: false}` leaves every list; `{newsletters: {key: false, ...}}` the lists
        set to false. `true` keeps a list the person is subscribed to and is refused
        (`422`, nothing changed) for any other: a link never subscribes, that takes a
        confirmation. Each flag that changes gets a consent event (channel
        `preference-page`).
        """
        holder = principal()
        consent = Consent.of(holder, "preference-page")
        return services().newsletters.set_preferences(
            unit_of_work(), holder.link, body.get("newsletters"), consent
        )
