"""Images people send (a person's picture, a company's logo): checked, turned upright and
re-encoded from their pixels alone, so nothing of the file they came in survives. No
Flask, no database: CPU work, to run while no connection or lock is held."""

import hashlib
import io
from dataclasses import dataclass

from PIL import Image as Pillow
from PIL import ImageOps

from identity.errors import InvalidInput

PNG, JPEG, WEBP = "image/png", "image/jpeg", "image/webp"
# What Pillow finds in the bytes -> what it is written as. A camera's JPEG with a second
# picture in it (MPO) is a JPEG; only its first picture is kept.
_FORMATS = {"PNG": PNG, "JPEG": JPEG, "MPO": JPEG, "WEBP": WEBP}
_OPENED = ["PNG", "JPEG", "WEBP"]  # the only decoders tried (JPEG's opens an MPO)
_SAVE = {
    PNG: ("PNG", {"optimize": True}),
    JPEG: ("JPEG", {"quality": 85, "optimize": True}),
    WEBP: ("WEBP", {"quality": 85, "method": 4}),
}
MEBIBYTE = 1024 * 1024


@dataclass(frozen=True)
class Image:
    """A re-encoded image: its bytes, their type, its size in pixels, and `etag`, a hash of
    the bytes (the same picture sent twice has the same one)."""

    data: bytes
    content_type: str
    width: int
    height: int
    etag: str


def reencode(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    max_side: int,
    longest_side: int = 1024,
    field: str = "picture",
) -> Image:
    """`data` as a PNG, JPEG or WebP of its own kind, made anew from its pixels: upright
    (its EXIF orientation applied), at most `longest_side` pixels on its longer side, and
    without EXIF, GPS, XMP, ICC profile, text or comments. Of an animation, the first frame.

    Refused (`InvalidInput`, the error on `field`) before it is decoded: more than
    `max_bytes`, anything but PNG, JPEG or WebP by its bytes (never by a declared type or
    name), a side over `max_side` or more than `max_pixels` by its header (a decompression
    bomb); and when decoding fails (truncated, corrupt)."""
    if not data:
        raise _refused(field, "the body is empty; send the image itself")
    if len(data) > max_bytes:
        raise _refused(field, f"larger than {_size(max_bytes)}")
    try:
        # Pillow checks its own bound (MAX_IMAGE_PIXELS, far above any `max_pixels` here)
        # as it opens: past it a warning (an error where warnings are, as in the tests),
        # past twice it an error. Either is a refusal; below it, `max_pixels` decides.
        # (No catch_warnings: it changes the process's filters, which threads share.)
        with Pillow.open(io.BytesIO(data), formats=_OPENED) as opened:
            content_type = _FORMATS.get(opened.format or "")
            if content_type is None:
                raise _refused(field, "not a PNG, JPEG or WebP image")
            width, height = opened.size
            if width < 1 or height < 1:
                raise _refused(field, "an image without pixels")
            if max(width, height) > max_side:
                raise _refused(field, f"wider or taller than {max_side} pixels")
            if width * height > max_pixels:
                raise _refused(field, f"more than {max_pixels} pixels")
            if content_type == JPEG:
                # Decode at the smallest scale that still covers the size kept.
                opened.draft(None, (longest_side, longest_side))
            opened.seek(0)
            opened.load()
            upright = ImageOps.exif_transpose(opened)
            pixels = _pixels(upright, content_type)
    except InvalidInput:
        raise
    except (Pillow.DecompressionBombError, Pillow.DecompressionBombWarning):
        raise _refused(field, f"more than {max_pixels} pixels") from None
    except Pillow.UnidentifiedImageError:
        raise _refused(field, "not a PNG, JPEG or WebP image") from None
    except Exception:  # hostile bytes make decoders raise anything
        # OSError (truncated), ValueError, SyntaxError, struct.error, EOFError, ...: what
        # each decoder raises on a broken file differs, and every one means the same here.
        raise _refused(field, "the image cannot be read: it is truncated or corrupt") from None
    pixels.thumbnail((longest_side, longest_side), Pillow.Resampling.LANCZOS)
    # A new image of the pixels alone: Pillow carries `info` (EXIF, ICC, text, comments)
    # through convert and resize, and some encoders write what they find there.
    clean = Pillow.frombytes(pixels.mode, pixels.size, pixels.tobytes())
    out = io.BytesIO()
    kind, options = _SAVE[content_type]
    clean.save(out, kind, **options)
    encoded = out.getvalue()
    return Image(
        data=encoded,
        content_type=content_type,
        width=clean.width,
        height=clean.height,
        etag=hashlib.sha256(encoded).hexdigest()[:32],
    )


def _pixels(image: Pillow.Image, content_type: str) -> Pillow.Image:
    """The image in a mode its format writes: 8 bits a channel, a palette or transparency
    kept as the pixels they make (RGBA), CMYK as RGB."""
    mode = image.mode
    if mode.startswith("I") or mode == "F":  # 16 or 32 bits of grey: scaled to 8
        image = image.convert("I").point(lambda v: v / 257 if mode.startswith("I;16") else v)
        image = image.convert("L")
    elif mode in ("P", "PA"):
        alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if alpha else "RGB")
    elif mode == "1":
        image = image.convert("L")
    elif mode not in ("L", "LA", "RGB", "RGBA"):  # CMYK, YCbCr, LAB, RGBX, La, ...
        image = image.convert("RGBA" if "A" in mode or "a" in mode else "RGB")
    if content_type == JPEG and image.mode not in ("L", "RGB"):
        image = image.convert("RGB")  # a JPEG has no transparency
    if content_type == WEBP and image.mode in ("L", "LA"):
        image = image.convert("RGBA" if image.mode == "LA" else "RGB")
    return image


def _refused(field: str, why: str) -> InvalidInput:
    return InvalidInput("the image is not acceptable; see errors", errors={field: [why]})


def _size(n: int) -> str:
    return f"{n // MEBIBYTE} MiB" if n % MEBIBYTE == 0 else f"{n} bytes"
