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


def test_an_answer_about_a_record_links_to_that_record_by_id_and_by_address(site):
    created = site.post("/v1/profiles", json={"email": "Anna@Example.com", "source": "webinar"})
    assert created.status_code == 201
    record = created.get_json()
    links = document(site)["paths"]["/v1/profiles"]["post"]["responses"]["201"]["links"]
    assert links["GetUserById"]["parameters"] == {"user_id": "$response.body#/id"}
    assert links["GetUserByEmail"]["parameters"] == {"email": "$response.body#/email"}
    by_id = site.get(f"/v1/users/{record['id']}")
    by_address = site.get("/v1/users", query_string={"email": record["email"]})
    assert by_id.get_json()["id"] == by_address.get_json()["id"] == record["id"]
    assert created.headers["Location"] == f"/v1/users/{record['id']}"
