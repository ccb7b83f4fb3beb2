"""Contract fuzzing, and what it found: each finding as a user meets it."""

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
