"""The Swagger UI page's assets, served by the service itself so /docs works with no
internet; and the page itself (docs_page/swagger_ui.html, which takes the place of
flask-smorest's), whose script is a file here too, so its Content-Security-Policy runs
only the service's own files.

Swagger UI is the 5.x distribution that the flask-swagger-ui package ships (its version
follows Swagger UI's own, and `make lock` pins it with its hash): only its files are used,
not its blueprint, whose page runs an inline script."""

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Flask, abort, send_from_directory

ASSETS_URL = "/docs/assets/"
# The page (found before flask-smorest's, as an app's templates are) and its script.
PAGE_FOLDER = Path(__file__).parent / "docs_page"
# swagger-ui-dist's files, with its VERSION and LICENSE (Apache 2.0).
SWAGGER_UI_FOLDER = Path(flask_swagger_ui.__file__).parent / "dist"

# Only what the page loads, each from where it is; the rest of the distribution (its demo
# page, the OAuth2 redirect page, the standalone layout, the unbundled script) is not served.
_ASSETS = {
    "swagger-ui.css": SWAGGER_UI_FOLDER,
    "swagger-ui-bundle.js": SWAGGER_UI_FOLDER,
    # Named by the page, so a browser does not ask for /favicon.ico (a 404).
    "favicon-32x32.png": SWAGGER_UI_FOLDER,
    "swagger-init.js": PAGE_FOLDER,
}

blp = Blueprint("docs_assets", __name__)


@blp.get(ASSETS_URL + "<name>")
def asset(name: str):
    if name not in _ASSETS:
        abort(404)
    # Asked again each time, answered 304 while unchanged: the names stay the same across
    # Swagger UI's versions, so a day's cache would mix an old file with a new page.
    return send_from_directory(str(_ASSETS[name]), name, max_age=0)


def init_app(app: Flask) -> None:
    app.register_blueprint(blp)
