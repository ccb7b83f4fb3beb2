"""The OpenAPI document: the Api that answers and documents errors as problem+json, the
security schemes, and the document as `identity openapi write` writes it."""

import json
from http import HTTPStatus

import flask_smorest

from identity.api import problems
from schemas.common import ProblemSchema
from schemas.newsletters import NEWSLETTER_KEYS

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
    HTTPStatus.BAD_GATEWAY: (
        "Google cannot be used right now: the provider did not answer in time",
        None,
        "provider-unavailable",
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


SECURITY_SCHEMES = {
    "siteKey": {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "A key issued to one site by `identity sites create NAME --scope SCOPE...`. A"
            " key has exactly the scopes it was given (`profiles:write`, `users:read`,"
            " `auth`, `newsletters`, `metrics`); the one an operation needs is its"
            " `x-scope`."
            " `newsletters` acts on every list; `newsletters:<list>` on that one list only,"
            " and an operation on another list answers 403."
        ),
    },
    "userToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": (
            "An access token from `POST /v1/auth/login` or `/v1/auth/refresh`: a JWT signed"
            " with ES256 (EdDSA by keys made before), verifiable with `/.well-known/jwks.json`,"
            " about 15 minutes long."
        ),
    },
    "staff": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": (
            "The access token (a `userToken`) of a staff member: a person an operator gave a"
            " role (`identity staff grant EMAIL support|dpo|admin`) who signed in with their"
            " second factor's app, which is still on. The right an operation needs is its"
            " `x-staff-right`; the README's table says which role has which. Every staff"
            " operation takes a `reason`, kept in the trail with what was done."
        ),
    },
}


def document_what_marshmallow_cannot(schemas: dict) -> None:
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


def openapi_document() -> str:
    """The document /openapi.json serves, as stable, diffable text."""
    from identity import create_app
    from identity.db import NoDatabase

    app = create_app(database=NoDatabase())
    spec = app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec.to_dict()
    return json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
