"""The HTTP face: one module per resource, built on the Blueprint of `guards`; this module
registers them, in a fixed order so the document is stable, with the response hooks every
answer shares."""

from http import HTTPStatus

from flask import Flask, request
from werkzeug.exceptions import NotFound

from identity.api.guards import SERVICES, TRUSTED_PROXIES
from identity.api.openapi import SECURITY_SCHEMES, Api, document_what_marshmallow_cannot
from identity.composition import Services
from identity.config import trusted_proxies


def _no_double_slash_in_front():
    """A path that starts `//` is a 404, as one with `//` anywhere else (werkzeug drops
    the leading slashes before it matches, and would serve `//v1/users`)."""
    if request.environ.get("PATH_INFO", "").startswith("//"):
        raise NotFound()


def _no_type_without_content(response):
    """A `204` has no body, so no type either (Flask names one for every answer)."""
    if response.status_code == HTTPStatus.NO_CONTENT:
        response.headers.pop("Content-Type", None)
    return response


def init_app(app: Flask, services: Services) -> Api:
    """The Api with every resource, and the services its views call."""
    from identity.api import (
        admin,
        auth,
        companies,
        docs,
        health,
        jwks,
        me,
        metrics,
        my_newsletters,
        newsletters,
        pictures,
        profiles,
        social,
        unsubscribe,
        users,
    )

    app.extensions[SERVICES] = services
    app.extensions[TRUSTED_PROXIES] = trusted_proxies(app.config["IDENTITY"]["TRUSTED_PROXIES"])
    app.after_request(_no_type_without_content)
    app.before_request(_no_double_slash_in_front)
    api = Api(app)
    for name, scheme in SECURITY_SCHEMES.items():
        api.spec.components.security_scheme(name, scheme)
    for module in (
        health,
        jwks,
        auth,
        social,
        profiles,
        users,
        me,
        pictures,
        newsletters,
        unsubscribe,
        my_newsletters,
        companies,
        admin,
        metrics,
    ):
        api.register_blueprint(module.blp)
    document_what_marshmallow_cannot(api.spec.components.schemas)
    docs.init_app(app)
    return api
