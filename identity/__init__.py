"""identity: the one email-keyed user record of copernica.com, smtpeter.com and mailerq.com."""

from importlib.metadata import version
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

API_DESCRIPTION = """\
The one record per email address that copernica.com, smtpeter.com and mailerq.com share.

The sites call this API server to server with a **site key** (`Authorization: Bearer <key>`),
issued per site by `identity sites create NAME`. Every error is RFC 9457
`application/problem+json`, with `errors: {field: [messages]}` for bad fields.
Timestamps are RFC 3339 in UTC.
"""


def create_app(config: dict | None = None, database=None) -> "Flask":
    """The WSGI app: settings (defaults, IDENTITY_*, then `config`), database, the services
    (`identity.composition.build`, the one composition root), Api, resources.

    `database` replaces the pool made from IDENTITY_DATABASE_URL (tests pass one).
    """
    # Imported here, not when the package is: the import's helper processes import
    # identity.imports.checking, and with it this package, and must not load Flask, the
    # database and every service for it.
    from flask import Flask

    from identity import api, db, logs
    from identity.api.docs import ASSETS_URL, PAGE_FOLDER
    from identity.composition import build
    from identity.config import load_config
    from identity.deadlines import BodyDeadline
    from identity.headers import BrowserHeaders
    from identity.metrics import RequestMetrics

    settings = load_config(config)
    # The app's one template is the /docs page, in place of flask-smorest's.
    app = Flask(__name__, template_folder=PAGE_FOLDER)
    # werkzeug answers a path with "//" by redirecting to it merged: the API never
    # redirects (an unsubscribe POST must not be one), so such a path is a 404.
    app.url_map.merge_slashes = False
    app.config.update(
        IDENTITY=settings,
        MAX_CONTENT_LENGTH=settings["MAX_BODY_BYTES"],
        API_TITLE="identity",
        API_VERSION=version("identity"),
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=ASSETS_URL,
        # Swagger UI would send the document to validator.swagger.io for its badge.
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None},
        API_SPEC_OPTIONS={"info": {"description": API_DESCRIPTION}},
    )
    logs.init_app(app)
    database = db.init_app(app, database)
    api.init_app(app, build(settings, database.connection))
    app.wsgi_app = RequestMetrics(
        BrowserHeaders(
            BodyDeadline(app.wsgi_app, settings["BODY_TIMEOUT_SECONDS"]), settings["PUBLIC_URL"]
        ),
        logs.ROUTE,
    )
    return app
