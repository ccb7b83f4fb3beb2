"""The Swagger UI assets, served by the service itself so /docs works with no internet."""

from flask import Blueprint, Flask, abort, send_from_directory
from swagger_ui_bundle import swagger_ui_path

ASSETS_URL = "/docs/assets/"

# Only what the page loads; the rest of the bundle (source maps, demo page) is not served.
_ASSETS = {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"}

blp = Blueprint("docs_assets", __name__)


@blp.get(ASSETS_URL + "<name>")
def asset(name: str):
    if name not in _ASSETS:
        abort(404)
    return send_from_directory(str(swagger_ui_path), name, max_age=86400)


def init_app(app: Flask) -> None:
    app.register_blueprint(blp)
