"""Reading request bodies: whole, bounded, and parsed as JSON without a way to a 500."""

from flask import Request, current_app
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    RequestEntityTooLarge,
    UnprocessableEntity,
)

from identity.strict_json import InvalidJson, parse_json

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
