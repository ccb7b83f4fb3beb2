"""Keyset paging's one shape: `limit`, `after` (the last id received) and a `Link` header
that names the next page while there is one."""

from flask import request, url_for


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


def linked(paged: tuple[list, object], limit: int):
    """A page as the answer, with a `Link` to the next one while there is one."""
    page, last = paged
    return page, next_link(last, limit)
