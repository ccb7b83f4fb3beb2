"""Contract fuzzing, and what it found: each finding as a user meets it."""

import re

from identity.api.profile_import import NDJSON
from tests.api.problems import assert_problem


def document(client) -> dict:
    return client.get("/openapi.json").get_json()


def test_an_import_without_a_body_is_a_400_and_the_document_says_a_body_is_needed(site):
    response = site.post("/v1/profiles/import", data=b"", content_type=NDJSON)
    assert_problem(response, 400)
    body = document(site)["paths"]["/v1/profiles/import"]["post"]["requestBody"]
    for media_type in (NDJSON, "text/csv"):
        assert body["content"][media_type]["schema"]["minLength"] == 1


def test_a_name_with_a_control_character_is_a_422_and_the_document_says_so(site):
    response = site.post(
        "/v1/profiles",
        json={"email": "anna@example.com", "source": "webinar", "last_name": "Be\x01rg"},
    )
    assert_problem(response, 422, "last_name")
    fields = document(site)["components"]["schemas"]["ProfileSubmission"]["properties"]
    pattern = re.compile(fields["last_name"]["pattern"])
    assert not pattern.search("Be\x01rg")
    assert not pattern.search("Anna\u202egreB")
    assert pattern.search("Jean-Luc Dé Wit")
