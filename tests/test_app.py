"""create_app without a database: refused, except for the OpenAPI document."""

import json

import pytest

from identity import create_app
from identity.api.openapi import openapi_document
from identity.errors import ConfigurationError


@pytest.fixture(autouse=True)
def no_database_url(monkeypatch):
    monkeypatch.delenv("IDENTITY_DATABASE_URL", raising=False)


def test_the_app_refuses_to_start_without_a_database_url():
    """wsgi.py's case: libpq would otherwise connect to whatever it finds on the host."""
    with pytest.raises(ConfigurationError, match=r"^IDENTITY_DATABASE_URL is not set; "):
        create_app()


def test_the_openapi_document_needs_no_database():
    assert json.loads(openapi_document())["info"]["title"] == "identity"
