"""The signed-in person's picture: the image itself in, the image itself out."""

from http import HTTPStatus

from flask import Response, current_app, request
from flask.views import MethodView

from identity.api.guards import Blueprint, accepts, principal, services
from identity.api.parsing import read_body
from identity.db import unit_of_work
from identity.images import JPEG, PNG, WEBP
from identity.services.pictures import MAX_PICTURE_BYTES
from schemas.accounts import PictureSchema

blp = Blueprint(
    "pictures", __name__, url_prefix="/v1/me/picture", description="The signed-in person's picture."
)

PATH = "/v1/me/picture"
# A cache (the site's) may show a picture this long before it asks again with
# If-None-Match; nothing shared may keep it: it is the person's.
CACHE_CONTROL = "private, max-age=300"
_NAMES = {PNG: "PNG", JPEG: "JPEG", WEBP: "WebP"}
# The image itself, for each type; the example only says so (its bytes are no text).
BINARY = {
    content_type: {
        "schema": {"type": "string", "format": "binary"},
        "example": f"(the {name} file's bytes)",
    }
    for content_type, name in _NAMES.items()
}
ETAG = "5f3c9a0e1d2b4c6a8e7f9012a3b4c5d6"
ETAG_HEADER = {"description": "the picture's version, quoted", "schema": {"type": "string"}}


def known_etags() -> list[str] | None:
    """The entity tags the request's If-None-Match names that could be ours (printable
    ASCII: any other, a NUL byte say, matches nothing); None for `*` (any will do)."""
    etags = request.if_none_match
    if etags.star_tag:
        return None
    tags = etags.as_set(include_weak=True)
    return sorted(tag for tag in tags if tag.isascii() and tag.isprintable())


def image_answer(found: dict) -> Response:
    """An image as stored (identity.store.pictures.image_of): its bytes with its `ETag`
    and caching headers, or a `304` without a body when the caller has it (no data)."""
    headers = {"ETag": f'"{found["etag"]}"', "Cache-Control": CACHE_CONTROL}
    if found["data"] is None:
        unchanged = Response(status=HTTPStatus.NOT_MODIFIED, headers=headers)
        unchanged.headers.pop("Content-Type", None)
        return unchanged
    return Response(bytes(found["data"]), mimetype=found["content_type"], headers=headers)


def image_get_doc(what: str) -> dict:
    """The OpenAPI of a GET that answers an image (`what`: picture, logo): If-None-Match,
    the image with its headers, or a 304."""
    return {
        "parameters": [
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "description": f"the `ETag` of the {what} the caller has: `304` while it"
                " is still the one",
                "schema": {"type": "string"},
                "example": f'"{ETAG}"',
            }
        ],
        "responses": {
            "200": {
                "description": f"The {what} itself.",
                "headers": {
                    "ETag": ETAG_HEADER,
                    "Cache-Control": {
                        "description": f"`{CACHE_CONTROL}`",
                        "schema": {"type": "string"},
                    },
                },
                "content": BINARY,
            },
            "304": {
                "description": f"The {what} is still the one the caller has (If-None-Match).",
                "headers": {"ETag": ETAG_HEADER},
            },
        },
    }


# The OpenAPI of a PUT that takes an image.
IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "description": "The image itself, at most 2 MiB: PNG, JPEG or WebP.",
        "content": BINARY,
    }
}


def picture_url() -> str:
    """Where the signed-in person's picture is, under IDENTITY_PUBLIC_URL."""
    return current_app.config["IDENTITY"]["PUBLIC_URL"].rstrip("/") + PATH


@blp.route("")
class Picture(MethodView):
    @blp.user_token()
    @blp.doc(**image_get_doc("picture"))
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    def get(self):
        """The person's picture

        The image itself, as it was kept: PNG, JPEG or WebP, at most 1024 pixels a side,
        with its `ETag` and `Cache-Control: private, max-age=300`. Sent again with
        `If-None-Match: "<etag>"`, the answer is a `304` without a body while the picture
        is unchanged. `404` when the person has no picture.
        """
        found = services().pictures.picture(unit_of_work(), principal(), known_etags())
        return image_answer(found)

    @blp.user_token()
    @blp.doc(**IMAGE_BODY)
    @blp.response(
        HTTPStatus.OK,
        PictureSchema,
        description="The picture as it is kept now.",
        example={
            "content_type": JPEG,
            "width": 1024,
            "height": 768,
            "etag": ETAG,
            "url": "https://identity.example.com/v1/me/picture",
        },
    )
    @blp.body_problems
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @accepts(*BINARY)
    def put(self):
        """Put up the person's picture

        The body is the image itself, with its type (`image/png`, `image/jpeg` or
        `image/webp`; another is a `415`), at most 2 MiB (`413` beyond). What the image is
        goes by its bytes, not by the type it is sent as: anything but a PNG, JPEG or WebP
        (a GIF, an SVG, a PDF) is a `422`, as are an empty body, an image more than 4096
        pixels on a side or of more than 12 megapixels (by its header, before it is
        decoded), and a truncated or corrupt one. Of an animation, the first frame is kept.

        The picture is made anew from its pixels: turned upright by its EXIF orientation,
        scaled down to at most 1024 pixels on its longer side, and written as the kind it
        came as (a JPEG at quality 85), with nothing else of the file: no EXIF (so no GPS
        position), XMP, ICC profile, text or comments. It replaces any picture before it.
        """
        data = read_body(request, MAX_PICTURE_BYTES)
        picture = services().pictures.put(unit_of_work(), principal(), data)
        return picture | {"url": picture_url()}

    @blp.user_token()
    @blp.response(HTTPStatus.NO_CONTENT, description="The picture is gone.")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    def delete(self):
        """Take the person's picture down

        `404` when there is none.
        """
        services().pictures.remove(unit_of_work(), principal())
