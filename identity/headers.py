"""The headers every answer carries for the browsers and security scanners that may meet
it, whoever writes the answer: the app, or gunicorn for a request it could not read.

The API is called server to server; the browsers that reach it at all open an unsubscribe
link or /docs, or were sent there by a page that wants something of it. So: no type is
guessed from a body, no URL leaks to another site, nothing is kept by a cache, nothing
can be framed, a JSON answer opened in a browser runs nothing, and there is no CORS: no
Access-Control-* header is ever sent, so no other site's script may read an answer.
"""

# A JSON answer (every answer but /docs) loads nothing and may be framed by no page.
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
# /docs: Swagger UI from the service's own assets (its scripts, styles, and the images its
# stylesheet holds as data: URLs), the document from the service itself; no inline script,
# no other origin, no form, no <base>, and no page may frame it.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# An answer that names no caching of its own (every one but the Swagger UI assets and the
# JWKS): it may be about a person or carry a token, so no cache or history keeps it.
NO_STORE = "no-store"
# A year of https only, once a browser has seen the service over https; not for the
# subdomains, which are not the service's to vouch for.
HSTS = "max-age=31536000"


def every_answer(public_url: str) -> dict[str, str]:
    """The headers that go on every answer, whatever it is: Strict-Transport-Security only
    where the service is served over https (IDENTITY_PUBLIC_URL says so)."""
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }
    if public_url.startswith("https://"):
        headers["Strict-Transport-Security"] = HSTS
    return headers


def unless_set(html: bool) -> dict[str, str]:
    """The headers an answer gets unless it set its own: no caching, and the content
    policy of a page (`html`) or of anything else."""
    return {
        "Cache-Control": NO_STORE,
        "Content-Security-Policy": DOCS_POLICY if html else API_POLICY,
    }


class BrowserHeaders:
    """WSGI middleware: every answer of the app gets the headers, whichever part of it
    wrote the answer (a view, an error handler, a guard before the view, a failure in
    the handlers themselves), as it starts. The service itself sends no Access-Control-*
    header anywhere, so none is added or kept from here on either."""

    def __init__(self, app, public_url: str):
        self.app = app
        self.always = list(every_answer(public_url).items())
        self.replaced = {name.lower() for name, _ in self.always}

    def __call__(self, environ, start_response):
        def start(status, headers, exc_info=None):
            return start_response(status, self.with_ours(headers), exc_info)

        return self.app(environ, start)

    def with_ours(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        names = {name.lower() for name, _ in headers}
        media_type = next(
            (
                value.partition(";")[0].strip().lower()
                for name, value in headers
                if name.lower() == "content-type"
            ),
            "",
        )
        kept = [
            (name, value)
            for name, value in headers
            if name.lower() not in self.replaced and not _cross_origin(name)
        ]
        defaults = unless_set(html=media_type == "text/html").items()
        return kept + self.always + [(n, v) for n, v in defaults if n.lower() not in names]


def _cross_origin(name: str) -> bool:
    return name.lower().startswith("access-control-")
