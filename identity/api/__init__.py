"""The HTTP face: the Api that documents itself, and the Blueprint every resource is made of."""

import functools
import time
from http import HTTPStatus

import flask_smorest
from flask import Flask, current_app, g, request, url_for
from werkzeug.exceptions import NotFound, UnsupportedMediaType

from identity import db
from identity.api import problems
from identity.api.parsing import Parser
from identity.concurrency import CpuThreads
from identity.db import database
from identity.errors import Unauthenticated
from identity.security.access_tokens import KeyRing
from identity.security.passwords import Passwords
from identity.security.unsubscribe_tokens import UnsubscribeTokens
from identity.services.accounts import Accounts, account_settings
from identity.services.newsletters import Newsletters
from identity.services.principal import LinkHolder, Principal
from identity.services.sites import RecentSiteKeys, authenticate_site
from schemas.common import ProblemSchema
from schemas.newsletters import NEWSLETTER_KEYS

JSON = "application/json"
RECENT_SITE_KEYS = "identity.recent_site_keys"
ACCOUNTS = "identity.accounts"
KEY_RING = "identity.key_ring"
NEWSLETTERS = "identity.newsletters"
# The time source of everything time-limited (site keys kept, an import's deadline):
# tests replace it to move time without sleeping.
CLOCK = "identity.clock"

# The errors every operation may document, with the example the document shows for each.
_PROBLEM_EXAMPLES = {
    HTTPStatus.BAD_REQUEST: ("json: Invalid JSON body.", None, "invalid-input"),
    HTTPStatus.UNAUTHORIZED: (
        "send the site key as Authorization: Bearer <key>",
        None,
        "unauthenticated",
    ),
    HTTPStatus.FORBIDDEN: ("this site key lacks the scope 'users:read'", None, "forbidden"),
    HTTPStatus.NOT_FOUND: ("no record with this id", None, "not-found"),
    HTTPStatus.REQUEST_TIMEOUT: (
        "the request body took too long to arrive",
        None,
        None,
    ),
    HTTPStatus.NOT_ACCEPTABLE: (
        "this answers application/x-ndjson or text/csv; the Accept header takes neither",
        None,
        None,
    ),
    HTTPStatus.CONFLICT: ("this value is already taken", None, "conflict"),
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: (
        "the request body is larger than this endpoint takes",
        None,
        None,
    ),
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: ("send the body as application/json", None, None),
    HTTPStatus.UNPROCESSABLE_ENTITY: (
        "some fields are not acceptable; see errors",
        {"email": ["The email address is not valid. It must have exactly one @-sign."]},
        "invalid-input",
    ),
    HTTPStatus.TOO_MANY_REQUESTS: (
        "this site's previous import is still running; one import per site at a time",
        None,
        "too-many-requests",
    ),
    HTTPStatus.SERVICE_UNAVAILABLE: (
        "the database cannot be reached; try again shortly",
        None,
        "unavailable",
    ),
}

# The headers that come with some of those errors.
_RETRY_AFTER = {
    "description": "seconds to wait before trying again",
    "schema": {"type": "integer", "minimum": 1},
}
_PROBLEM_HEADERS = {
    HTTPStatus.UNAUTHORIZED: {
        "WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}
    },
    HTTPStatus.METHOD_NOT_ALLOWED: {
        "Allow": {"description": "the methods this path takes", "schema": {"type": "string"}}
    },
    HTTPStatus.TOO_MANY_REQUESTS: {"Retry-After": _RETRY_AFTER},
    HTTPStatus.SERVICE_UNAVAILABLE: {"Retry-After": _RETRY_AFTER},
}


class Api(flask_smorest.Api):
    """flask-smorest's Api, answering and documenting errors as problem+json."""

    DEFAULT_ERROR_RESPONSE_NAME = "UNEXPECTED_ERROR"

    def _register_error_handlers(self):
        problems.init_app(self._app)

    def _register_pagination_header(self):
        """None: the service pages with cursors of its own, not flask-smorest's pages."""

    def _register_responses(self):
        for status, (detail, errors, kind) in _PROBLEM_EXAMPLES.items():
            self.spec.components.response(
                status.name, _problem_response(status, detail, errors, kind), lazy=True
            )
        self.spec.components.response(
            "UNEXPECTED_ERROR",
            _problem_response(
                HTTPStatus.INTERNAL_SERVER_ERROR, "something went wrong on our side", None, None
            )
            | {"description": "Any other error, e.g. 500 Internal Server Error"},
            lazy=True,
        )


def _problem_response(status, detail, errors, kind) -> dict:
    return {
        "description": status.phrase,
        **({"headers": _PROBLEM_HEADERS[status]} if status in _PROBLEM_HEADERS else {}),
        "content": {
            problems.PROBLEM_JSON: {
                "schema": ProblemSchema,
                "example": problems.example(status, detail, errors, kind),
            }
        },
    }


class Blueprint(flask_smorest.Blueprint):
    """A resource: MethodViews plus the guards that say who may call them.

    A guard goes above @arguments. It decides who is calling (the `Principal`, then
    `g.principal`) before anything else happens: before a pooled connection is held for
    the request and before the body's type is checked or the body read, so a stranger
    learns nothing about what a valid request looks like and costs next to nothing.
    """

    ARGUMENTS_PARSER = Parser()
    # What any operation that reads a body may answer before its schema sees it.
    BODY_PROBLEMS = (
        HTTPStatus.BAD_REQUEST,
        HTTPStatus.REQUEST_TIMEOUT,
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    )

    def arguments(self, schema, *, location="json", **kwargs):
        """flask-smorest's, and for a body also the problems of reading one: malformed
        (400), too slow (408), too large (413), of another type (415). A schema class is
        made into its instance here, once: webargs would make one for every request."""
        if isinstance(schema, type):
            schema = schema()
        decorator = super().arguments(schema, location=location, **kwargs)
        if location not in ("json", "form", "json_or_form", "files"):
            return decorator

        def documented(view):
            view = decorator(view)
            for status in self.BODY_PROBLEMS:
                view = self.alt_response(status, response=status.name)(view)
            return view

        return documented

    def alt_response(self, status_code, **kwargs):
        """flask-smorest's, documenting only. Its own wraps the view in one more call for
        every answer it documents (an operation documents seven or more), to run
        coroutine views that this service does not have."""
        document = super().alt_response(status_code, **kwargs)

        def decorator(view):
            view._apidoc = document(view)._apidoc
            return view

        return decorator

    def site_key(self, scope: str):
        """Let a request through only with a valid, active site key that has `scope`."""

        def decorator(view):
            @functools.wraps(view)
            def guarded(*args, **kwargs):
                g.principal = authenticate_site(
                    bearer_token(),
                    scope,
                    current_app.extensions[RECENT_SITE_KEYS],
                    database().connection,
                )
                check_media_type()
                return view(*args, **kwargs)

            guarded = self.alt_response(HTTPStatus.UNAUTHORIZED, response="UNAUTHORIZED")(guarded)
            guarded = self.alt_response(HTTPStatus.FORBIDDEN, response="FORBIDDEN")(guarded)
            guarded = self.alt_response(
                HTTPStatus.SERVICE_UNAVAILABLE, response="SERVICE_UNAVAILABLE"
            )(guarded)
            return self.doc(security=[{"siteKey": []}], **{"x-scope": scope})(guarded)

        return decorator

    def user_token(self):
        """Let a request through only with a valid access token of a signed-in person.
        The token is checked here, offline; whether its sign-in still holds (not logged
        out, no password change since) is checked by the service in the request's
        transaction."""

        def decorator(view):
            @functools.wraps(view)
            def guarded(*args, **kwargs):
                g.principal = accounts().authenticate_user(bearer_token())
                check_media_type()
                return view(*args, **kwargs)

            guarded = self.alt_response(HTTPStatus.UNAUTHORIZED, response="UNAUTHORIZED")(guarded)
            guarded = self.alt_response(
                HTTPStatus.SERVICE_UNAVAILABLE, response="SERVICE_UNAVAILABLE"
            )(guarded)
            return self.doc(security=[{"userToken": []}])(guarded)

        return decorator

    def unsubscribe_link(self):
        """Let a request through only with a genuine unsubscribe token in its path (the
        view's `token`): no other credential, no cookie. The token is checked here, in
        memory, before anything else; the view gets the `Principal` holding the link."""

        def decorator(view):
            @functools.wraps(view)
            def guarded(*args, token, **kwargs):
                user_id, list_id = newsletter_service().holder(token)
                g.principal = Principal(link=LinkHolder(user_id, list_id))
                check_media_type()
                return view(*args, **kwargs)

            guarded = self.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")(guarded)
            guarded = self.alt_response(
                HTTPStatus.SERVICE_UNAVAILABLE, response="SERVICE_UNAVAILABLE"
            )(guarded)
            return self.doc(security=[])(guarded)

        return decorator


def accounts():
    """This app's accounts service."""
    return current_app.extensions[ACCOUNTS]


def newsletter_service() -> Newsletters:
    """This app's newsletter service."""
    return current_app.extensions[NEWSLETTERS]


def principal() -> Principal:
    """Who is calling this request, as its guard found."""
    return g.principal


def bearer_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send the key or token as Authorization: Bearer <it>")
    return token.strip()


def accepts(*media_types: str):
    """The body types a view method takes (application/json when not marked)."""

    def decorator(view):
        view.accepted_media_types = media_types
        return view

    return decorator


def check_media_type() -> None:
    """415 for a body of a type the operation does not take, before anything reads it."""
    req = request._get_current_object()  # one look-up of the proxy, not eight
    if req.method not in ("POST", "PUT", "PATCH") or req.endpoint is None:
        return
    headers = req.headers
    if not req.content_length and "chunked" not in headers.get("Transfer-Encoding", ""):
        return
    if headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        raise UnsupportedMediaType("send the body without a Content-Encoding (no gzip)")
    view = current_app.view_functions[req.endpoint]
    method = getattr(getattr(view, "view_class", None), req.method.lower(), view)
    media_types = getattr(method, "accepted_media_types", (JSON,))
    if req.mimetype not in media_types:
        raise UnsupportedMediaType(f"send the body as {' or '.join(media_types)}")


SECURITY_SCHEMES = {
    "siteKey": {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "A key issued to one site by `identity sites create NAME`. Keys carry scopes"
            " (`profiles:write`, `users:read`, `auth`, `newsletters`); the one an operation"
            " needs is its"
            " `x-scope`."
        ),
    },
    "userToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": (
            "An access token from `POST /v1/auth/login` or `/v1/auth/refresh`: a JWT signed"
            " with EdDSA, verifiable with `/.well-known/jwks.json`, about 15 minutes long."
        ),
    },
}


def _no_double_slash_in_front():
    """A path that starts `//` is a 404, as one with `//` anywhere else (werkzeug drops
    the leading slashes before it matches, and would serve `//v1/users`)."""
    if request.environ.get("PATH_INFO", "").startswith("//"):
        raise NotFound()


def _kept_by_no_cache(response):
    """Every /v1 answer is about people (a record, an address, a link that unsubscribes
    someone): no shared cache or browser history keeps it."""
    if request.path.startswith("/v1/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _no_type_without_content(response):
    """A `204` has no body, so no type either (Flask names one for every answer)."""
    if response.status_code == HTTPStatus.NO_CONTENT:
        response.headers.pop("Content-Type", None)
    return response


def _document_what_marshmallow_cannot(schemas: dict) -> None:
    """Rules the schemas check in code, which JSON Schema can say: at least one of emails
    and user_ids; either `all` or `newsletters`, the latter naming lists and at least one."""
    schemas["LinksRequest"]["minProperties"] = 1
    preferences = schemas["PreferencesChange"]
    preferences.update(minProperties=1, maxProperties=1)
    preferences["properties"]["newsletters"].update(
        properties={key: {"type": "boolean"} for key in NEWSLETTER_KEYS},
        additionalProperties=False,
        minProperties=1,
    )


def init_app(app: Flask) -> Api:
    """The Api with every resource, registered in a fixed order so the document is stable."""
    from identity.api import (
        auth,
        docs,
        health,
        jwks,
        me,
        my_newsletters,
        newsletters,
        profiles,
        unsubscribe,
        users,
    )

    app.extensions[CLOCK] = time.monotonic
    app.extensions[RECENT_SITE_KEYS] = RecentSiteKeys(
        app.config["IDENTITY"]["SITE_KEY_CACHE_SECONDS"], clock=lambda: app.extensions[CLOCK]()
    )
    # The ring reads the keys on a connection of its own, borrowed for a moment: beside,
    # not inside, a request's transaction, and outside a request too.
    app.extensions[KEY_RING] = KeyRing(
        lambda: app.extensions[db.EXTENSION].connection(), app.config["IDENTITY"]["SECRET_KEY"]
    )
    app.after_request(_kept_by_no_cache)
    app.after_request(_no_type_without_content)
    app.before_request(_no_double_slash_in_front)
    api = Api(app)
    for name, scheme in SECURITY_SCHEMES.items():
        api.spec.components.security_scheme(name, scheme)
    settings = app.config["IDENTITY"]
    app.extensions[ACCOUNTS] = Accounts(
        account_settings(settings),
        Passwords.from_settings(settings, offload=CpuThreads(settings["PASSWORD_THREADS"])),
        app.extensions[KEY_RING],
    )
    app.extensions[NEWSLETTERS] = Newsletters(
        UnsubscribeTokens(settings["SECRET_KEY"], settings["UNSUBSCRIBE_KEY_ID"]),
        settings["PUBLIC_URL"],
        confirm_hours=settings["NEWSLETTER_CONFIRM_HOURS"],
        catalog_seconds=settings["NEWSLETTER_CATALOG_SECONDS"],
        clock=lambda: app.extensions[CLOCK](),
    )
    for module in (health, jwks, auth, profiles, users, me, newsletters, unsubscribe,
                   my_newsletters):  # fmt: skip
        api.register_blueprint(module.blp)
    _document_what_marshmallow_cannot(api.spec.components.schemas)
    docs.init_app(app)
    return api


def next_link_header(example: str) -> dict:
    """The OpenAPI description of a paged list's `Link` header; `example` its URL."""
    return {
        "description": f'`<{example}>; rel="next"`: the next page, while there is one',
        "schema": {"type": "string"},
    }


def next_link(cursor, limit: int, **path) -> dict:
    """The headers of a page: a `Link` to the next (this endpoint, the same `limit`,
    `after` = `cursor`), none on the last page (`cursor` None)."""
    if cursor is None:
        return {}
    following = url_for(request.endpoint, **path, limit=limit, after=cursor)
    return {"Link": f'<{following}>; rel="next"'}
