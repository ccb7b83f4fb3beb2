import json
import re
from html import unescape
from pathlib import Path

import pytest

from identity.api.docs import SWAGGER_UI_FOLDER
from identity.api.openapi import openapi_document
from identity.services.staff import STAFF_RIGHTS
from schemas.newsletters import ExportQuerySchema
from schemas.profiles import ImportQuerySchema, UserQuerySchema

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
PUBLIC = {"/health/live", "/health/ready", "/.well-known/jwks.json"}
METHODS = {"get", "put", "post", "patch", "delete"}


@pytest.fixture(scope="module")
def document():
    return json.loads(openapi_document())


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_the_committed_document_is_what_the_code_describes(document):
    assert COMMITTED.exists(), "run `make openapi` and commit openapi/openapi.json"
    assert json.loads(COMMITTED.read_text(encoding="utf-8")) == document, (
        "openapi/openapi.json is stale: run `make openapi` and commit it"
    )


def test_the_service_serves_the_same_document(client, document):
    assert client.get("/openapi.json").get_json() == document


def test_every_operation_is_documented_with_its_errors_and_examples(document):
    assert document["openapi"].startswith("3.")
    for path, method, operation in operations(document):
        where = f"{method.upper()} {path}"
        assert operation.get("summary"), where
        assert operation.get("description"), where
        responses = operation["responses"]
        assert any(code.startswith("2") for code in responses), where
        assert "default" in responses, where
        for code, response in responses.items():
            response = resolve(document, response)
            for media_type, content in response.get("content", {}).items():
                assert "example" in content or "examples" in content, (where, code, media_type)
                if code.startswith(("4", "5")) or code == "default":
                    assert media_type == "application/problem+json", (where, code)
        body = operation.get("requestBody")
        if body:
            for media_type, content in body["content"].items():
                assert "example" in content, (where, media_type)


def test_every_operation_that_reads_a_body_documents_the_ways_reading_it_fails(document):
    with_body = [(p, m, op) for p, m, op in operations(document) if "requestBody" in op]
    assert with_body
    for path, method, operation in with_body:
        missing = {"400", "408", "413", "415"} - set(operation["responses"])
        assert not missing, f"{method.upper()} {path} does not document {sorted(missing)}"


@pytest.mark.parametrize(
    ("path", "method", "schema"),
    [
        ("/v1/newsletters/{key}/subscribers", "get", ExportQuerySchema),
        ("/v1/profiles/import", "post", ImportQuerySchema),
        ("/v1/users", "get", UserQuerySchema),
    ],
)
def test_every_query_parameter_an_operation_reads_is_documented(document, path, method, schema):
    """A path parameter documented by hand once replaced the query's (the export's resume
    cursor was missing from the document)."""
    operation = document["paths"][path][method]
    documented = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
    assert documented == set(schema().fields)


def test_every_v1_operation_needs_a_site_key_with_a_named_scope_or_a_user_token(document):
    schemes = document["components"]["securitySchemes"]
    for path, _, operation in operations(document):
        if path in PUBLIC:
            assert operation["security"] == [], path
            continue
        if path.startswith("/v1/unsubscribe/{token}"):
            # The unsubscribe token in the path is the only credential (OpenAPI has no
            # scheme for a path parameter); a token that is not genuine is a 404.
            assert operation["security"] == [], path
            assert "404" in operation["responses"], path
            continue
        if path.startswith("/v1/admin"):
            assert operation["security"] == [{"staff": []}], path
            assert any(operation["x-staff-right"] in rights for rights in STAFF_RIGHTS.values())
            assert {"401", "403", "422"} <= set(operation["responses"]), path
            continue
        if path.startswith(("/v1/me", "/v1/companies")):
            assert operation["security"] == [{"userToken": []}], path
            assert "401" in operation["responses"], path
            continue
        assert operation["security"] == [{"siteKey": []}], path
        assert operation["x-scope"] in schemes["siteKey"]["description"]
        assert {"401", "403"} <= set(operation["responses"]), path


def test_the_docs_page_needs_nothing_from_the_internet(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "//cdn" not in html and "https://" not in html
    # Else the UI sends the document to swagger.io; the page's script reads this.
    config = re.search(r'data-config="([^"]*)"', html).group(1)
    assert json.loads(unescape(config)) == {"validatorUrl": None}
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js"):
        assert f"/docs/assets/{asset}" in html
        with client.get(f"/docs/assets/{asset}") as response:
            assert response.status_code == 200 and len(response.get_data()) > 1000
    assert client.get("/docs/assets/index.html").status_code == 404


def test_the_docs_page_is_swagger_ui_5(client):
    """The Swagger UI the page loads is the 5.x distribution, the one its VERSION names."""
    version = (SWAGGER_UI_FOLDER / "VERSION").read_text().strip()
    assert re.fullmatch(r"v5\.\d+\.\d+", version), version
    with client.get("/docs/assets/swagger-ui-bundle.js") as bundle:
        assert bundle.get_data() == (SWAGGER_UI_FOLDER / "swagger-ui-bundle.js").read_bytes()


def resolve(document, item):
    ref = item.get("$ref")
    if not ref:
        return item
    node = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node
