"""What a security scanner (or a browser) sees in the headers of every answer: no type
sniffing, no referrer, no caching of what is about people, no framing, a content policy
that lets /docs load only its own files, HSTS only over https, and no CORS at all."""

from html.parser import HTMLParser

import pytest

from identity import create_app
from identity.db import PinnedDatabase
from tests.api.test_accounts import BROWSER, PASSWORD, login, sign_up
from tests.settings import CHEAP

EVERY_ANSWER = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
PREFLIGHT = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}


def assert_for_browsers(answer, *, cache: str = "no-store", html: bool = False):
    """The headers every answer carries, and no Access-Control-* header."""
    for name, value in EVERY_ANSWER.items():
        assert answer.headers[name] == value, (name, answer.status_code)
    assert answer.headers["Cache-Control"] == cache
    policy = answer.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy
    if not html:
        assert policy == API_POLICY
    assert not [name for name, _ in answer.headers.items() if name.lower().startswith("access-")]
    assert "Strict-Transport-Security" not in answer.headers  # http://127.0.0.1:8000


def test_every_kind_of_answer_carries_them(site, conn, client, app):
    sign_up(site, conn)
    tokens = login(site).get_json()
    assert_for_browsers(
        site.post("/v1/profiles", json={"email": "b@example.com", "source": "event"})
    )
    assert_for_browsers(site.get("/v1/users?email=anna@example.com"))
    assert_for_browsers(login(site))  # tokens in the body
    logout = site.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert logout.status_code == 204
    assert_for_browsers(logout)
    assert_for_browsers(client.get("/health/live"))
    assert_for_browsers(client.get("/openapi.json"))
    # Answers that are the same for everyone say how long they may be kept, and keep it.
    assert_for_browsers(client.get("/.well-known/jwks.json"), cache="public, max-age=300")
    with client.get("/docs/assets/swagger-ui.css") as asset:
        assert_for_browsers(asset, cache="no-cache, max-age=0")


def test_errors_carry_them_wherever_they_are_made(site, client, conn, database_url, site_key):
    answers = {
        "no route": client.get("/v1/nothing-here"),
        "a double slash, before any view": site.get("//v1/newsletters"),
        "no key, at the guard": client.get("/v1/users?email=anna@example.com"),
        "another method": site.delete("/v1/profiles"),
        "another type": site.post("/v1/profiles", data="email=x"),
        "malformed JSON": site.post("/v1/profiles", data="{", content_type="application/json"),
        "a bad field": site.post("/v1/profiles", json={"email": "no", "source": "event"}),
        "a wrong password": login(site, password="not it"),
        "an unknown unsubscribe link": client.get("/v1/unsubscribe/" + "A" * 44),
        "an asset not served": client.get("/docs/assets/index.html"),
    }
    small = create_app(
        {"DATABASE_URL": database_url, **CHEAP, "MAX_BODY_BYTES": 64},
        database=PinnedDatabase(conn),
    )
    answers["too large"] = small.test_client().post(
        "/v1/profiles",
        json={"email": "anna@example.com", "source": "event", "first_name": "A" * 100},
        headers={"Authorization": f"Bearer {site_key}"},
    )
    for why, answer in answers.items():
        assert answer.status_code >= 400, why
        assert answer.mimetype == "application/problem+json", why
        assert_for_browsers(answer)


def test_a_failure_in_the_handlers_themselves_still_carries_them(conn, database_url):
    app = create_app({"DATABASE_URL": database_url, **CHEAP}, database=PinnedDatabase(conn))

    @app.after_request
    def fail(response):
        raise RuntimeError("an after_request function failed")

    answer = app.test_client().get("/health/live")
    assert answer.status_code == 500
    assert_for_browsers(answer)


@pytest.mark.parametrize(
    "path", ["/v1/auth/login", "/v1/users", "/v1/me", "/v1/unsubscribe/" + "A" * 44, "/docs"]
)
def test_a_browsers_preflight_gets_no_cors_answer(client, path):
    """No other site's script may call the API from a browser: the preflight is answered
    without Access-Control-Allow-Origin (nor any other Access-Control-* header), so the
    browser sends nothing."""
    answer = client.options(path, headers=PREFLIGHT)
    assert not [name for name, _ in answer.headers.items() if name.lower().startswith("access-")]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    # Nor does an answer to a request that names its origin.
    called = client.get("/health/live", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in called.headers


class _Page(HTMLParser):
    """The scripts, styles and other files a page loads."""

    def __init__(self):
        super().__init__()
        self.loads, self.inline_scripts, self._in_script = [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self._in_script = "src" not in attrs
            if "src" in attrs:
                self.loads.append(attrs["src"])
        if tag == "link":
            self.loads.append(attrs["href"])
        if "style" in attrs or any(name.startswith("on") for name in attrs):
            self.inline_scripts.append(f"{tag} {attrs}")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def test_the_docs_page_loads_only_its_own_files_and_runs_no_inline_script(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert_for_browsers(page, html=True)
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in page.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    parsed = _Page()
    parsed.feed(page.get_data(as_text=True))
    assert parsed.inline_scripts == []
    assert len(parsed.loads) == 4  # the stylesheet, the icon, Swagger UI, its start
    for url in parsed.loads:
        assert url.startswith("/docs/assets/"), url  # 'self': the service's own
        with client.get(url) as asset:
            assert asset.status_code == 200, url
            assert asset.mimetype in ("text/css", "text/javascript", "image/png"), url
    with client.get("/docs/assets/swagger-init.js") as script:
        started = script.get_data(as_text=True)
    assert "SwaggerUIBundle" in started and "dataset.url" in started
    # What it starts with: the document the page names, which the service serves.
    assert 'data-url="/openapi.json"' in page.get_data(as_text=True)
    assert client.get("/openapi.json").get_json()["openapi"]


def test_https_answers_ask_browsers_to_keep_to_https(conn, database_url, site):
    served = create_app(
        {"DATABASE_URL": database_url, **CHEAP, "PUBLIC_URL": "https://id.example.com"},
        database=PinnedDatabase(conn),
    )
    client = served.test_client()
    for answer in (client.get("/health/live"), client.get("/nope"), client.get("/docs")):
        assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
    # Over plain http (the default), it would only be ignored: it is not sent.
    assert "Strict-Transport-Security" not in site.get("/health/live").headers


def test_a_token_bearing_answer_is_kept_by_no_cache(site, conn):
    sign_up(site, conn)
    answer = site.post(
        "/v1/auth/login", json={"email": "anna@example.com", "password": PASSWORD, **BROWSER}
    )
    assert answer.status_code == 200 and answer.get_json()["access_token"]
    assert answer.headers["Cache-Control"] == "no-store"
