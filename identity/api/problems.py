"""The one error path: every failure becomes an RFC 9457 application/problem+json response."""

import logging
import traceback
from dataclasses import dataclass, field
from http import HTTPStatus

import psycopg
from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException, default_exceptions

from identity.errors import (
    ConfigurationError,
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    IdentityError,
    ImportStopped,
    InvalidInput,
    NotFound,
    ProviderUnavailable,
    ServiceStopping,
    TooManyExports,
    TooManyRequests,
    Unauthenticated,
)
from identity.logs import ROUTE, current_request_id
from identity.metrics import NO_ROUTE, THROTTLE_REFUSALS
from identity.store.transactions import RETRYABLE
from schemas.messages import field_paths, message_strings

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# Each domain error: its status and the `type` URI that names the kind of problem.
# A body of a megabyte can hold a hundred thousand wrong fields: the answer names this many.
_MAX_FIELDS_NAMED = 50
_DOMAIN = {
    InvalidInput: (HTTPStatus.UNPROCESSABLE_ENTITY, "invalid-input"),
    NotFound: (HTTPStatus.NOT_FOUND, "not-found"),
    Conflict: (HTTPStatus.CONFLICT, "conflict"),
    Unauthenticated: (HTTPStatus.UNAUTHORIZED, "unauthenticated"),
    Forbidden: (HTTPStatus.FORBIDDEN, "forbidden"),
    TooManyRequests: (HTTPStatus.TOO_MANY_REQUESTS, "too-many-requests"),
    DatabaseUnavailable: (HTTPStatus.SERVICE_UNAVAILABLE, "unavailable"),
    ServiceStopping: (HTTPStatus.SERVICE_UNAVAILABLE, "unavailable"),
    TooManyExports: (HTTPStatus.SERVICE_UNAVAILABLE, "unavailable"),
    ProviderUnavailable: (HTTPStatus.BAD_GATEWAY, "provider-unavailable"),
}

_TYPE_PREFIX = "urn:identity:problem:"

# All the caller hears of a fault of the server's own, with the request id to quote.
SERVER_FAULT = "something went wrong on our side"

# Seconds a client should wait before retrying while the database is away or busy.
_RETRY_AFTER = "2"


@dataclass
class Problem:
    """One problem document and the headers that go with it."""

    status: int
    detail: str
    kind: str | None = None
    errors: dict[str, list[str]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict = field(default_factory=dict)

    def response(self) -> Response:
        body = {
            "type": _TYPE_PREFIX + self.kind if self.kind else "about:blank",
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extensions)
        response = Response(json.dumps(body), status=self.status, mimetype=PROBLEM_JSON)
        response.headers.update(self.headers)
        return response


def problem(status: int, detail: str, **kwargs) -> Response:
    """A problem+json response; `kind` names a domain problem, else the status says it all."""
    return Problem(status, detail, **kwargs).response()


def example(status: int, detail: str, errors: dict | None = None, kind: str | None = None) -> dict:
    """The body `problem` answers, for the OpenAPI document."""
    extensions = {"request_id": "0f8fad5bd9cb469fa16570867728950e"} if status == 500 else {}
    return json.loads(
        problem(status, detail, errors=errors, kind=kind, extensions=extensions).get_data()
    )


def describe(error: BaseException) -> Problem:
    """What the caller is told about `error`."""
    if isinstance(error, ImportStopped):
        stopped = describe(error.cause)
        stopped.extensions["lines_done"] = error.lines_done
        if error.lines_done:
            stopped.detail += (
                f"; the import stopped after input line {error.lines_done}: the lines up to"
                " it are written and stay so, none after it is; running the whole file again"
                " is safe"
            )
        else:
            stopped.detail += "; no line was written, and running the whole file again is safe"
        return stopped
    if isinstance(error, IdentityError):
        return _from_domain_error(error)
    if isinstance(error, HTTPException):
        return _from_http_exception(error)
    if isinstance(error, psycopg.Error):
        return _from_database_error(error)
    return _from_unexpected_error(error)


def _from_domain_error(error: IdentityError) -> Problem:
    found = next((pair for cls, pair in _DOMAIN.items() if isinstance(error, cls)), None)
    if found is None:  # a ConfigurationError, or an error no answer was chosen for
        return _from_unexpected_error(error)
    status, kind = found
    headers = {}
    if status == HTTPStatus.UNAUTHORIZED:
        headers["WWW-Authenticate"] = "Bearer"
    if status == HTTPStatus.SERVICE_UNAVAILABLE:
        headers["Retry-After"] = _RETRY_AFTER
    if isinstance(error, TooManyRequests):
        headers["Retry-After"] = str(error.retry_after)
    return Problem(status, error.detail, kind, error.errors, headers)


def _from_http_exception(error: HTTPException) -> Problem:
    """Werkzeug's and webargs' errors: 404, 405, 413, 415, 422 and the rest."""
    if (error.code or 500) >= 500:
        # Flask's 500 wraps an error raised where no handler could take it (an
        # after_request function, say): the server's fault, whatever its words.
        return _from_unexpected_error(getattr(error, "original_exception", None) or error)
    data = getattr(error, "data", None) or {}
    headers = {}
    if error.code == HTTPStatus.METHOD_NOT_ALLOWED and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)
    headers.update(data.get("headers") or {})
    messages = data.get("messages")
    if messages:
        return _invalid_request(error.code, messages, headers)
    return Problem(error.code or 500, _detail(error), headers=headers)


def _invalid_request(status: int, messages: dict, headers: dict) -> Problem:
    """webargs' {location: {field: [messages]}}: field messages under `errors`; a message
    about a whole location (a body that is not JSON) is the detail."""
    errors: dict[str, list[str]] = {}
    whole = []
    for location, fields in messages.items():
        if isinstance(fields, dict):
            for name, field_messages in field_paths(fields):
                if name not in errors and len(errors) == _MAX_FIELDS_NAMED:
                    whole.append(f"more fields than the {_MAX_FIELDS_NAMED} named are wrong")
                    break
                errors.setdefault(name, []).extend(field_messages)
        else:
            whole.extend(f"{location}: {m}" for m in message_strings(fields))
    detail = "; ".join(whole) if whole else "some fields are not acceptable; see errors"
    if errors and whole:
        detail = "some fields are not acceptable; see errors; " + detail
    return Problem(status, detail, "invalid-input", errors, headers)


def _detail(error: HTTPException) -> str:
    """The error's own words where it has some; werkzeug's stock ones are replaced."""
    stock = default_exceptions.get(error.code or 500)
    if error.description and (stock is None or error.description != stock.description):
        return error.description
    return {
        HTTPStatus.NOT_FOUND: "no resource at this path",
        HTTPStatus.METHOD_NOT_ALLOWED: "this method is not allowed here; see the Allow header",
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "the request body is larger than this endpoint takes",
    }.get(error.code, error.description or HTTPStatus(error.code).phrase)


def _from_database_error(error: psycopg.Error) -> Problem:
    if isinstance(error, psycopg.errors.UniqueViolation):
        return _from_domain_error(Conflict("this value is already taken"))
    if isinstance(
        error, (*RETRYABLE, psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable)
    ):
        # Deadlocks and serialization failures were already retried; a statement or lock
        # timeout is load. Neither means the database is gone.
        log.warning("database busy", extra=_error_fields(error))
        return Problem(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "the database is busy with other changes to the same records; try again shortly",
            "busy",
            headers={"Retry-After": _RETRY_AFTER},
        )
    if isinstance(error, psycopg.errors.ReadOnlySqlTransaction):
        # A standby, or a database set read-only (a failover under way, a full disk
        # guarded): writes wait until it takes them again. Reads go on.
        log.warning("database read-only", extra=_error_fields(error))
        return _from_domain_error(
            DatabaseUnavailable("the database takes no changes right now; try again shortly")
        )
    if isinstance(error, psycopg.OperationalError):
        log.warning("database unavailable", extra=_error_fields(error))
        return _from_domain_error(
            DatabaseUnavailable("the database cannot be reached; try again shortly")
        )
    return _from_unexpected_error(error)


def _from_unexpected_error(error: BaseException) -> Problem:
    """A fault of the server's own (a setting, a bug): the caller hears only that, and the
    request id; what it was is logged under that id."""
    request_id = current_request_id()
    log_server_fault(error, request_id)
    extensions = {"request_id": request_id} if request_id else {}
    return Problem(HTTPStatus.INTERNAL_SERVER_ERROR, SERVER_FAULT, extensions=extensions)


def log_server_fault(error: BaseException | None, request_id: str | None) -> None:
    """One JSON line of what went wrong, under the id the caller was given."""
    fields = {} if error is None else _error_fields(error)
    message = "unexpected error"
    if isinstance(error, ConfigurationError):
        # The service's own words about a setting, written for whoever runs it: no
        # person's data, and what it takes to mend it.
        message = "configuration error"
        fields["error_detail"] = error.detail
    log.error(message, extra={**fields, "request_id": request_id})


def _error_fields(error: BaseException) -> dict:
    """What is logged of an error: its type, its SQLSTATE, and where it was raised, but not
    its message or any value: "Failing row contains (...)" or a KeyError of an address
    would put a person's data in the log."""
    frames = traceback.extract_tb(error.__traceback__)
    return {
        "error_type": f"{type(error).__module__}.{type(error).__qualname__}",
        "sqlstate": getattr(error, "sqlstate", None),
        "where": [f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in frames[-8:]],
    }


def handle(error: BaseException) -> Response:
    if isinstance(error, TooManyRequests):
        THROTTLE_REFUSALS.labels(request.environ.get(ROUTE) or NO_ROUTE).inc()
    return describe(error).response()


def init_app(app: Flask) -> None:
    """Route every error through this module."""
    app.register_error_handler(Exception, handle)
    # Flask logs an error raised where no handler could take it (an after_request
    # function) as "Exception on <path>", and a path can hold an unsubscribe token. Its
    # 500 then comes to `handle`, which logs what it was under the request id.
    app.log_exception = lambda exc_info: None
