"""The Swagger UI page's assets, served by the service itself so /docs works with no
internet; and the page itself (docs_page/swagger_ui.html, which takes the place of
flask-smorest's), whose script is a file here too, so its Content-Security-Policy runs
only the service's own files."""

from pathlib import Path

from flask import Blueprint, Flask, abort, send_from_directory
from swagger_ui_bundle import swagger_ui_path

ASSETS_URL = "/docs/assets/"
# The page (found before flask-smorest's, as an app's templates are) and its script.
PAGE_FOLDER = Path(__file__).parent / "docs_page"

# Only what the page loads, each from where it is; the rest of the bundle (source maps,
# its demo page) is not served.
_ASSETS = {
    "swagger-ui.css": swagger_ui_path,
    "swagger-ui-bundle.js": swagger_ui_path,
    "swagger-ui-standalone-preset.js": swagger_ui_path,
    "swagger-init.js": PAGE_FOLDER,
}

blp = Blueprint("docs_assets", __name__)


@blp.get(ASSETS_URL + "<name>")
def asset(name: str):
    if name not in _ASSETS:
        abort(404)
    return send_from_directory(str(_ASSETS[name]), name, max_age=86400)


def init_app(app: Flask) -> None:
    app.register_blueprint(blp)
