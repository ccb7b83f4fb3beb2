"""identity.images on its own: what survives a re-encoding (the pixels, upright) and what
is refused, each kind of file made with Pillow here."""

import io
import struct
import zlib

import pytest
from PIL import Image, PngImagePlugin

from identity.errors import InvalidInput
from identity.images import JPEG, PNG, WEBP, reencode

LIMITS = {"max_bytes": 2 * 1024 * 1024, "max_pixels": 12 * 1024 * 1024, "max_side": 4096}


def encoded(image: Image.Image, kind: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def refusal(data: bytes, **limits) -> str:
    with pytest.raises(InvalidInput) as refused:
        reencode(data, **(LIMITS | limits))
    assert list(refused.value.errors) == ["picture"]
    return refused.value.errors["picture"][0]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of_size(width: int, height: int, pixel_data: bytes = b"\0" * 64) -> bytes:
    """A PNG whose header says `width` x `height` (8-bit grey), in a few dozen bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(pixel_data))
        + png_chunk(b"IEND", b"")
    )


def test_a_jpeg_comes_back_upright_without_its_exif_and_gps():
    photo = Image.new("RGB", (60, 20), "white")
    photo.paste((255, 0, 0), (0, 0, 20, 20))  # red on the left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # to be turned 90 degrees clockwise for viewing
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 0.0), 3: "E", 4: (4.0, 53.0, 0.0)}
    exif[0x010F] = "Camera maker"
    data = encoded(photo, "JPEG", exif=exif.tobytes(), comment=b"a comment")
    assert b"Camera maker" in data
    image = reencode(data, **LIMITS)
    assert (image.content_type, image.width, image.height) == (JPEG, 20, 60)
    kept = opened(image.data)
    assert kept.format == "JPEG"
    assert not kept.getexif() and "exif" not in kept.info and "comment" not in kept.info
    assert b"Camera maker" not in image.data and b"Exif" not in image.data
    # Turned: what was on the left is now at the top.
    red, green, blue = kept.getpixel((10, 5))
    assert red > 200 and green < 60 and blue < 60
    assert kept.getpixel((10, 50))[1] > 200


def test_a_png_loses_its_text_and_icc_profile_and_keeps_its_transparency():
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "where I live")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>secret</x:xmpmeta>")
    picture = Image.new("RGBA", (30, 30), (0, 0, 255, 0))
    picture.putpixel((1, 1), (255, 0, 0, 255))
    icc = b"\0" * 128
    image = reencode(encoded(picture, "PNG", pnginfo=info, icc_profile=icc), **LIMITS)
    assert image.content_type == PNG
    kept = opened(image.data)
    assert kept.info == {} or set(kept.info) <= {"dpi"}
    assert b"where I live" not in image.data and b"xmpmeta" not in image.data
    assert b"iCCP" not in image.data and b"tEXt" not in image.data
    assert kept.convert("RGBA").getpixel((1, 1)) == (255, 0, 0, 255)
    assert kept.convert("RGBA").getpixel((5, 5))[3] == 0


def test_a_palette_png_with_a_transparent_colour_keeps_it_as_pixels():
    picture = Image.new("P", (8, 8), 0)
    picture.putpalette([0, 0, 0, 255, 255, 0] + [0] * 762)
    picture.putpixel((2, 2), 1)
    kept = opened(reencode(encoded(picture, "PNG", transparency=0), **LIMITS).data)
    assert kept.convert("RGBA").getpixel((0, 0))[3] == 0
    assert kept.convert("RGBA").getpixel((2, 2)) == (255, 255, 0, 255)


def test_webp_stays_webp_and_a_large_image_is_scaled_down():
    image = reencode(encoded(Image.new("RGB", (3000, 1500), "green"), "WEBP"), **LIMITS)
    assert (image.content_type, image.width, image.height) == (WEBP, 1024, 512)
    assert opened(image.data).format == "WEBP"


def test_a_cmyk_jpeg_a_16_bit_png_and_one_pixel_come_out_clean():
    cmyk = reencode(encoded(Image.new("CMYK", (10, 10), (0, 255, 255, 0)), "JPEG"), **LIMITS)
    assert cmyk.content_type == JPEG and opened(cmyk.data).mode == "RGB"
    red = opened(cmyk.data).getpixel((5, 5))
    assert red[0] > 200 and red[1] < 60
    deep = Image.new("I;16", (4, 4), 0)
    deep.putpixel((0, 0), 65535)
    grey = opened(reencode(encoded(deep, "PNG"), **LIMITS).data)
    assert grey.mode == "L" and grey.getpixel((0, 0)) == 255 and grey.getpixel((1, 1)) == 0
    one = reencode(encoded(Image.new("RGB", (1, 1), "red"), "PNG"), **LIMITS)
    assert (one.width, one.height) == (1, 1)


def test_of_an_animation_the_first_frame_is_kept():
    frames = [Image.new("RGB", (10, 10), colour) for colour in ("red", "blue")]
    for kind in ("PNG", "WEBP"):
        data = encoded(frames[0], kind, save_all=True, append_images=frames[1:])
        kept = opened(reencode(data, **LIMITS).data)
        assert getattr(kept, "n_frames", 1) == 1
        assert kept.convert("RGB").getpixel((5, 5))[0] > 200


def test_the_same_picture_has_the_same_etag_and_another_another():
    red = encoded(Image.new("RGB", (5, 5), "red"), "PNG")
    blue = encoded(Image.new("RGB", (5, 5), "blue"), "PNG")
    assert reencode(red, **LIMITS).etag == reencode(red, **LIMITS).etag
    assert reencode(red, **LIMITS).etag != reencode(blue, **LIMITS).etag


@pytest.mark.parametrize(
    "data",
    [
        encoded(Image.new("P", (5, 5)), "GIF"),
        encoded(Image.new("RGB", (5, 5)), "BMP"),
        encoded(Image.new("RGB", (5, 5)), "TIFF"),
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        b"\x89PNG\r\n\x1a\n",
        b"plain text",
    ],
    ids=["gif", "bmp", "tiff", "pdf", "svg", "png-signature-alone", "text"],
)
def test_anything_but_png_jpeg_or_webp_is_refused(data):
    assert refusal(data) in (
        "not a PNG, JPEG or WebP image",
        "the image cannot be read: it is truncated or corrupt",
    )


def test_a_decompression_bomb_is_refused_by_its_header():
    assert refusal(png_of_size(100_000, 100_000)) in (
        "more than 12582912 pixels",
        "wider or taller than 4096 pixels",
    )
    assert refusal(png_of_size(4096, 4096)) == "more than 12582912 pixels"
    assert refusal(png_of_size(5000, 10)) == "wider or taller than 4096 pixels"


def test_truncated_empty_and_too_large_files_are_refused():
    jpeg = encoded(Image.new("RGB", (200, 200), "blue"), "JPEG")
    assert "truncated" in refusal(jpeg[: len(jpeg) // 2])
    png = encoded(Image.new("RGB", (200, 200), "blue"), "PNG")
    assert "truncated" in refusal(png[:-30])
    assert "empty" in refusal(b"")
    assert refusal(jpeg, max_bytes=100) == "larger than 100 bytes"
