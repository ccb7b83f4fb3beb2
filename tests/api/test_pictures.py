"""The person's picture through the HTTP API: put up, read (with If-None-Match), taken
down; what is refused, and how."""

import io

from PIL import Image, PngImagePlugin

from tests.api.problems import assert_problem
from tests.api.test_accounts import as_user, login, sign_up
from tests.test_images import encoded, png_of_size


def person(app, site, conn, email="anna@example.com"):
    sign_up(site, conn, email)
    return as_user(app, login(site, email).get_json()["access_token"])


def put(client, data: bytes, content_type="image/png"):
    return client.put("/v1/me/picture", data=data, headers={"Content-Type": content_type})


def test_a_picture_is_put_up_read_and_taken_down(app, site, conn):
    me = person(app, site, conn)
    assert me.get("/v1/me").get_json()["picture_url"] is None
    assert_problem(me.get("/v1/me/picture"), 404)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 0.0)}
    photo = encoded(Image.new("RGB", (40, 20), "red"), "JPEG", exif=exif.tobytes())
    answer = put(me, photo, "image/jpeg")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["content_type"] == "image/jpeg" and (body["width"], body["height"]) == (20, 40)
    assert body["url"].endswith("/v1/me/picture")
    assert me.get("/v1/me").get_json()["picture_url"] == body["url"]
    got = me.get("/v1/me/picture")
    assert got.status_code == 200 and got.mimetype == "image/jpeg"
    assert got.headers["ETag"] == f'"{body["etag"]}"'
    assert got.headers["Cache-Control"] == "private, max-age=300"
    kept = Image.open(io.BytesIO(got.get_data()))
    assert kept.size == (20, 40) and not kept.getexif()
    # The same version again: 304, no body.
    unchanged = me.get("/v1/me/picture", headers={"If-None-Match": got.headers["ETag"]})
    assert unchanged.status_code == 304 and unchanged.get_data() == b""
    assert unchanged.headers["ETag"] == got.headers["ETag"]
    assert me.get("/v1/me/picture", headers={"If-None-Match": '"other"'}).status_code == 200
    # A PATCH answers the URL as well.
    patched = me.patch("/v1/me", json={"first_name": "Anna"})
    assert patched.get_json()["picture_url"] == body["url"]
    # Taken down.
    assert me.delete("/v1/me/picture").status_code == 204
    assert_problem(me.get("/v1/me/picture"), 404)
    assert_problem(me.delete("/v1/me/picture"), 404)
    assert me.get("/v1/me").get_json()["picture_url"] is None


def test_a_png_loses_its_text_and_webp_stays_webp(app, site, conn):
    me = person(app, site, conn)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "where I live")
    answer = put(me, encoded(Image.new("RGBA", (10, 10)), "PNG", pnginfo=info))
    assert answer.status_code == 200
    assert b"where I live" not in me.get("/v1/me/picture").get_data()
    # A WebP sent as image/png is a WebP: the bytes decide.
    webp = put(me, encoded(Image.new("RGB", (10, 10)), "WEBP"), "image/png")
    assert webp.get_json()["content_type"] == "image/webp"
    assert me.get("/v1/me/picture").mimetype == "image/webp"


def test_what_is_not_a_picture_is_refused_as_a_problem(app, site, conn):
    me = person(app, site, conn)
    gif = encoded(Image.new("P", (5, 5)), "GIF")
    pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    jpeg = encoded(Image.new("RGB", (100, 100), "blue"), "JPEG")
    for data in (gif, pdf, svg, png_of_size(100_000, 100_000), jpeg[: len(jpeg) // 2], b""):
        assert_problem(put(me, data), 422, "picture")
    assert_problem(put(me, b"x" * (2 * 1024 * 1024 + 1)), 413)
    assert_problem(put(me, gif, "image/gif"), 415)
    assert_problem(me.put("/v1/me/picture", json={"picture": "data:image/png;base64,"}), 415)
    assert_problem(me.get("/v1/me/picture"), 404)  # nothing was kept


def test_a_picture_is_its_owners_alone(app, site, conn):
    anna = person(app, site, conn)
    bob = person(app, site, conn, "bob@example.com")
    assert put(anna, encoded(Image.new("RGB", (5, 5)), "PNG")).status_code == 200
    assert_problem(bob.get("/v1/me/picture"), 404)
    assert_problem(bob.delete("/v1/me/picture"), 404)
    assert bob.get("/v1/me").get_json()["picture_url"] is None
    assert anna.get("/v1/me/picture").status_code == 200
    assert_problem(app.test_client().get("/v1/me/picture"), 401)
    assert_problem(site.get("/v1/me/picture"), 401)  # a site key is no person
