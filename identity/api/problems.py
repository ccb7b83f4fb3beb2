"""The one error path: every failure becomes an RFC 9457 application/problem+json response."""

import logging
from http import HTTPStatus

import psycopg
from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

from identity.errors import (
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    IdentityError,
    InvalidInput,
    NotFound,
    Unauthenticated,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# Each domain error: its status and the `type` URI that names the kind of problem.
_DOMAIN = {
    InvalidInput: (HTTPStatus.UNPROCESSABLE_ENTITY, "invalid-input"),
    NotFound: (HTTPStatus.NOT_FOUND, "not-found"),
    Conflict: (HTTPStatus.CONFLICT, "conflict"),
    Unauthenticated: (HTTPStatus.UNAUTHORIZED, "unauthenticated"),
    Forbidden: (HTTPStatus.FORBIDDEN, "forbidden"),
    DatabaseUnavailable: (HTTPStatus.SERVICE_UNAVAILABLE, "unavailable"),
}

_TYPE_PREFIX = "urn:identity:problem:"

# Seconds a client should wait before retrying while the database is away.
_RETRY_AFTER = "2"


def problem(
    status: int,
    detail: str,
    *,
    errors: dict[str, list[str]] | None = None,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A problem+json response; `kind` names a domain problem, else the status says it all."""
    body = {
        "type": _TYPE_PREFIX + kind if kind else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    response.headers.update(headers or {})
    return response


def example(status: int, detail: str, errors: dict | None = None, kind: str | None = None) -> dict:
    """The body `problem` answers, for the OpenAPI document."""
    return json.loads(problem(status, detail, errors=errors, kind=kind).get_data())


def from_domain_error(error: IdentityError) -> Response:
    status, kind = next(
        (pair for cls, pair in _DOMAIN.items() if isinstance(error, cls)),
        (HTTPStatus.BAD_REQUEST, "bad-request"),
    )
    headers = {}
    if status == HTTPStatus.UNAUTHORIZED:
        headers["WWW-Authenticate"] = "Bearer"
    if status == HTTPStatus.SERVICE_UNAVAILABLE:
        headers["Retry-After"] = _RETRY_AFTER
    return problem(status, error.detail, errors=error.errors, kind=kind, headers=headers)


def from_http_exception(error: HTTPException) -> Response:
    """Werkzeug's and webargs' errors: 404, 405, 413, 415, 422 and the rest."""
    data = getattr(error, "data", None) or {}
    headers = {}
    if error.code == HTTPStatus.METHOD_NOT_ALLOWED and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)
    headers.update(data.get("headers") or {})
    messages = data.get("messages")
    if messages:
        return _invalid_request(error.code, messages, headers)
    return problem(error.code or 500, _detail(error), headers=headers)


def _invalid_request(status: int, messages: dict, headers: dict) -> Response:
    """webargs' {location: {field: [messages]}}: field messages under `errors`; a message
    about a whole location (a body that is not JSON) is the detail."""
    errors: dict[str, list[str]] = {}
    whole = []
    for location, fields in messages.items():
        if isinstance(fields, dict):
            for field, field_messages in fields.items():
                errors.setdefault(field, []).extend(_strings(field_messages))
        else:
            whole.extend(f"{location}: {m}" for m in _strings(fields))
    detail = "; ".join(whole) if whole else "some fields are not acceptable; see errors"
    return problem(status, detail, errors=errors, kind="invalid-input", headers=headers)


def _detail(error: HTTPException) -> str:
    return {
        HTTPStatus.NOT_FOUND: "no resource at this path",
        HTTPStatus.METHOD_NOT_ALLOWED: "this method is not allowed here; see the Allow header",
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "the request body is larger than this endpoint takes",
    }.get(error.code, error.description or HTTPStatus(error.code).phrase)


def _strings(messages) -> list[str]:
    if isinstance(messages, dict):  # nested field: {index or name: [messages]}
        return [f"{key}: {m}" for key, value in messages.items() for m in _strings(value)]
    if isinstance(messages, list | tuple):
        return [str(m) for m in messages]
    return [str(messages)]


def from_database_error(error: psycopg.Error) -> Response:
    if isinstance(error, psycopg.errors.UniqueViolation):
        return from_domain_error(Conflict("this value is already taken"))
    if isinstance(error, psycopg.OperationalError):
        log.warning("database unavailable: %s", type(error).__name__)
        return from_domain_error(
            DatabaseUnavailable("the database cannot be reached; try again shortly")
        )
    return from_unexpected_error(error)


def from_unexpected_error(error: Exception) -> Response:
    log.error("unexpected error", exc_info=error)
    return problem(HTTPStatus.INTERNAL_SERVER_ERROR, "something went wrong on our side")


def init_app(app: Flask) -> None:
    """Route every error through this module."""
    app.register_error_handler(IdentityError, from_domain_error)
    app.register_error_handler(HTTPException, from_http_exception)
    app.register_error_handler(psycopg.Error, from_database_error)
    app.register_error_handler(Exception, from_unexpected_error)
