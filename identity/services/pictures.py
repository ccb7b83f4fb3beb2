"""The signed-in person's picture: put up (checked and re-encoded by identity.images),
read and taken down. One per person, kept in PostgreSQL, so every replica serves it."""

from collections.abc import Callable
from typing import Any

from identity.errors import NotFound
from identity.images import MEBIBYTE, reencode
from identity.security.passwords import call_directly
from identity.services.principal import Principal
from identity.store import pictures as store
from identity.store.transactions import UnitOfWork

# What a picture may be as it is sent: 2 MiB, a phone's 12-megapixel photo, 4096 pixels a
# side; it is kept at most 1024 pixels a side.
MAX_PICTURE_BYTES = 2 * MEBIBYTE
MAX_PICTURE_PIXELS = 12 * 1024 * 1024
MAX_PICTURE_SIDE = 4096
PICTURE_SIDE = 1024


def _reencode(data: bytes, field: str = "picture"):
    return reencode(
        data,
        max_bytes=MAX_PICTURE_BYTES,
        max_pixels=MAX_PICTURE_PIXELS,
        max_side=MAX_PICTURE_SIDE,
        longest_side=PICTURE_SIDE,
        field=field,
    )


class Pictures:
    """`offload(fn, *args)` runs the decoding and encoding (tens of milliseconds of CPU
    for a photo): on a thread of its own under gevent (identity.concurrency.CpuThreads),
    so the worker's other requests go on meanwhile."""

    def __init__(self, offload: Callable[..., Any] = call_directly):
        self._offload = offload

    def picture(self, uow: UnitOfWork, principal: Principal, known: list[str] | None = ()) -> dict:
        """The person's picture: content_type, etag, width, height, updated_at and data;
        data None when the etag is one of `known` (or for `known=None`: any). 404 when
        there is none."""
        found = store.image_of(
            uow.one_statement, store.PICTURES, principal.user.user_id, unless=known
        )
        if found is None:
            raise NotFound("there is no picture; PUT one first")
        return found

    def put(self, uow: UnitOfWork, principal: Principal, data: bytes) -> dict:
        """`data` checked and re-encoded (before any connection is taken), then the
        person's picture, replacing any before it: content_type, etag, width, height."""
        image = self._offload(_reencode, data)
        store.save(uow.one_statement, store.PICTURES, principal.user.user_id, image)
        return {
            "content_type": image.content_type,
            "etag": image.etag,
            "width": image.width,
            "height": image.height,
        }

    def remove(self, uow: UnitOfWork, principal: Principal) -> None:
        """Take the person's picture down; 404 when there is none."""
        if not store.remove(uow.one_statement, store.PICTURES, principal.user.user_id):
            raise NotFound("there is no picture")


class Logos:
    """A company's logo, as the person's picture is (the same limits and re-encoding):
    read by whoever may read the company, put up and taken down by its admins. Who may is
    asked of `may(uow, principal, company_id, right)` (identity.services.companies)."""

    def __init__(self, may: Callable[..., Any], offload: Callable[..., Any] = call_directly):
        self._may = may
        self._offload = offload

    def logo(
        self, uow: UnitOfWork, principal: Principal, company_id, known: list[str] | None = ()
    ) -> dict:
        self._may(uow, principal, company_id, "read")
        found = store.image_of(uow.one_statement, store.LOGOS, company_id, unless=known)
        if found is None:
            raise NotFound("the company has no logo; its admins PUT one")
        return found

    def put(self, uow: UnitOfWork, principal: Principal, company_id, data: bytes) -> dict:
        self._may(uow, principal, company_id, "edit")
        uow.release()  # no connection held while the image is re-encoded
        image = self._offload(_reencode, data, "logo")
        store.save(uow.one_statement, store.LOGOS, company_id, image)
        return {
            "content_type": image.content_type,
            "etag": image.etag,
            "width": image.width,
            "height": image.height,
        }

    def remove(self, uow: UnitOfWork, principal: Principal, company_id) -> None:
        self._may(uow, principal, company_id, "edit")
        if not store.remove(uow.one_statement, store.LOGOS, company_id):
            raise NotFound("the company has no logo")
