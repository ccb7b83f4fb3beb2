"""Reading request bodies: whole, bounded, and parsed as JSON without a way to a 500."""

import json

from flask import Request, current_app
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    RequestEntityTooLarge,
    UnprocessableEntity,
)

_CHUNK = 64 * 1024


class IncompleteBody(BadRequest):
    """The body ended before its Content-Length, or the client went away while sending it."""

    description = (
        "the request body ended before its Content-Length or its last chunk, or its chunks"
        " could not be read; nothing was done"
    )


def read_body(req: Request, limit: int) -> bytes:
    """The whole body, at most `limit` bytes (413 beyond), refusing one shorter than its
    Content-Length. Read from the server's stream itself: werkzeug's own reading cuts a
    chunked body at the limit without a word, which would parse a cut-off document."""
    cached = getattr(req, "_identity_body", None)
    if cached is not None:
        return cached
    length = req.content_length
    if length is not None and length > limit:
        raise RequestEntityTooLarge()
    stream = req.environ["wsgi.input"]
    want = limit + 1 if length is None else length
    parts, received = [], 0
    while received < want:
        try:
            chunk = stream.read(min(_CHUNK, want - received))
        except HTTPException:  # the body's deadline passed (408)
            raise
        except Exception:  # the server's own "client went away" errors differ per server
            raise IncompleteBody() from None
        if not chunk:
            break
        parts.append(chunk)
        received += len(chunk)
    if length is not None and received < length:
        raise IncompleteBody()
    if received > limit:
        raise RequestEntityTooLarge()
    body = b"".join(parts)
    req._identity_body = body
    return body


class DuplicateKey(ValueError):
    """An object names a key twice: parsers differ on which one counts."""


def unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """An object_pairs_hook for json.loads that refuses a key given twice: a site that
    checked the first "email" and a service that took the last would disagree."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise DuplicateKey("a key is given twice in one object")
    return obj


class InvalidJson(ValueError):
    """Bytes that are not one JSON document; `why` says what is wrong, in a client's words."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


def parse_json(data: bytes):
    """The JSON document in `data`, or InvalidJson saying why not: the same reasons for a
    request body and for a line of an import."""
    try:
        return json.loads(
            data.decode("utf-8"),
            object_pairs_hook=unique_keys,
            parse_constant=_not_json,
            parse_float=_finite,
        )
    except UnicodeDecodeError:
        raise InvalidJson("not UTF-8") from None
    except RecursionError:
        raise InvalidJson("nested too deep") from None
    except InvalidJson:
        raise
    except DuplicateKey as exc:
        raise InvalidJson(str(exc)) from None
    except json.JSONDecodeError as exc:
        if exc.msg.startswith("Unexpected UTF-8 BOM"):  # Python's words: "use utf-8-sig"
            raise InvalidJson("a byte order mark (U+FEFF) before the JSON: leave it out") from None
        # Some of json's messages end in "at" ("Invalid control character at").
        what = exc.msg.removesuffix(" at")
        raise InvalidJson(f"{what} at line {exc.lineno} column {exc.colno}") from None
    except ValueError:  # Python's limit on the digits of an integer (4,300)
        raise InvalidJson("a number is too long") from None


def _not_json(name: str):
    """NaN and Infinity: Python reads them, JSON (RFC 8259) has no such numbers."""
    raise InvalidJson(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise InvalidJson("a number is too large")
    return number


def load_json(data: bytes):
    """The JSON document in `data`; BadRequest naming what is wrong with it."""
    try:
        return parse_json(data)
    except InvalidJson as exc:
        raise _invalid_json(exc.why) from None


def _invalid_json(why: str) -> BadRequest:
    error = BadRequest(f"the body is not valid JSON: {why}")
    error.data = {"messages": {"json": [f"Invalid JSON body: {why}."]}}
    return error


class Parser(FlaskParser):
    """webargs' parser, with the body read by `read_body` and parsed by `load_json`, and
    a query parameter given twice refused rather than read as its first value."""

    def load_querystring(self, req: Request, schema):
        repeated = sorted({key for key in req.args if len(req.args.getlist(key)) > 1})
        if repeated:
            error = UnprocessableEntity("a query parameter is given more than once")
            error.data = {
                "messages": {"query": {key: ["Given more than once."] for key in repeated}}
            }
            raise error
        return super().load_querystring(req, schema)

    def load_json(self, req: Request, schema):
        # A body of another type was refused before (415, check_media_type): not JSON
        # here means no body at all. Empty is not a JSON document, nor taken for `{}`.
        data = (
            read_body(req, current_app.config["MAX_CONTENT_LENGTH"])
            if is_json_request(req)
            else b""
        )
        if not data:
            raise _invalid_json("it is empty; send a JSON object")
        return load_json(data)
