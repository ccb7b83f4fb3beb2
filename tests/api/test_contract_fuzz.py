"""Contract fuzzing: schemathesis sends what /openapi.json allows, and much that it does not,
to every operation of the app (in-process WSGI, on the tests' PostgreSQL), and checks each
answer against the document: no 5xx, a documented status, content type and headers, a body
that fits its schema, schema-valid input accepted and schema-violating input refused, the
site key enforced. Below the fuzzing: what it found, each finding as a user meets it.

The phases: examples, coverage and fuzzing per operation (`@schema.parametrize()`), and
stateful sequences along the document's links (POST /v1/profiles -> the record by id or by
address). Every check schemathesis has is on; what is narrowed, and why, is in
`filter_failure`. Some have nothing to act on here: use_after_free needs a DELETE,
object_level_authorization a second identity (and every site may read every record, by
design), max_response_time a limit (timing is not what this suite pins). A fixed seed and
no example database make every run send the same requests. Each test's `conn` transaction
(and a savepoint per stateful scenario) is rolled back, so nothing is left behind.
"""

import json
import os
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.core.parameters import ParameterLocation
from schemathesis.openapi.checks import RejectedPositiveData

from identity import create_app
from identity.api.profile_import import NDJSON
from identity.db import NoDatabase
from identity.security.site_keys import new_site_key
from identity.services import sites
from tests.api.problems import assert_problem
from tests.sites import site_key_for

SEED = 20261128
# Fuzzing-phase cases per operation (the examples and coverage phases add their own, the
# same in every run), and stateful scenarios: 10 and 10 in `make test`; 200 and 100 in
# `make test-deep` (IDENTITY_TEST_FUZZ_EXAMPLES=200).
MAX_EXAMPLES = int(os.environ.get("IDENTITY_TEST_FUZZ_EXAMPLES", "10"))
STATEFUL_SCENARIOS = max(10, MAX_EXAMPLES // 2)

# Made now, so the schema's auth can carry it; each test registers it for copernica.com in
# its own rolled-back transaction (`fuzz_site_key`), where it is valid until the rollback.
SITE_KEY = new_site_key()

IMPORT = "POST /v1/profiles/import"

# A 422 for schema-valid input breaks no contract when every field it names is one the
# service checks beyond what JSON Schema can say: an address (email-validator), a phone
# number (phonenumbers; a national one needs `country`), a CSV header (the columns it names),
# a password (the policy: guessability, the person's own words, the history), a token (only
# one the service made and mailed is valid), a second factor's code (the app's code of now,
# or an unused recovery code; one of the two is needed, which a schema of two optional
# fields cannot say). A 422 naming any other field fails the run.
CHECKED_BEYOND_THE_SCHEMA = {
    "email",
    "new_email",
    "phone",
    "mobile",
    "fax",
    "header",
    "password",
    "new_password",
    "current_password",
    "token",
    "code",
    "recovery_code",
}

# Nor does it break one when every message is a character past U+FFFF that Text refuses
# (the tag characters, invisible musical symbols, the planes' noncharacters): a JSON Schema
# pattern cannot name one that every engine reads alike (without ECMA-262's `u` flag it is
# two surrogates; the README says so), so the document's pattern leaves them out.
PAST_THE_PATTERN = re.compile(r"Contains U\+[0-9A-F]{5,6} ")

# The import's body is text: schemathesis sends it as it sends text/plain.
schemathesis.serializer.alias(NDJSON, "text/plain")


@schemathesis.deserializer(NDJSON)
def report_lines(ctx, response):
    """The import's report: one JSON document per line (a line that is not JSON fails)."""
    return [json.loads(line) for line in response.content.decode("utf-8").splitlines()]


@schemathesis.hook
def before_load_schema(context, raw_schema):
    """OpenAPI 3.0 cannot say "one JSON document per line" (3.2's itemSchema can): the
    document gives the schema of one report line. Here the report is read as the array of
    its lines, so `response_schema_conformance` checks every line against that schema."""
    for item in raw_schema["paths"].values():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for response in operation["responses"].values():
                content = response.get("content", {}).get(NDJSON)
                if content:
                    content["schema"] = {"type": "array", "items": content["schema"]}


# The document is read from an app without a database, when pytest collects this module, and
# every call goes to the test's app (`app=`). schemathesis.pytest.from_fixture would read it
# from the test's app itself, but schemathesis 4.32 uses pytest's Node._nodeid there, which
# pytest 9.2 no longer has.
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
        "auth": {"openapi": {"siteKey": {"bearer": SITE_KEY}}},
    }
)
schema = schemathesis.openapi.from_wsgi(
    "/openapi.json", create_app(database=NoDatabase()), config=CONFIG
)


@schema.hook
def filter_failure(context, failure, case, response):
    """Keep every failure but two kinds of false positive, each as narrow as it goes."""
    if isinstance(failure, RejectedPositiveData) and response.status_code == 422:
        errors = json.loads(response.content).get("errors") or {}
        if errors and set(errors) <= CHECKED_BEYOND_THE_SCHEMA:
            return False
        messages = list(_messages(errors))
        if messages and all(PAST_THE_PATTERN.match(message) for message in messages):
            return False
    # A "negative" import body that is not a string (a number, an object) still goes on the
    # wire as text, where it is a valid body; schemathesis knows this for text/plain only.
    return not (
        isinstance(failure, AcceptedNegativeData)
        and case.operation.label == IMPORT
        and _only_the_body_is_negative(case)
    )


def _messages(errors):
    """Every message of a problem's `errors`, however deep its fields are nested."""
    if isinstance(errors, dict):
        for value in errors.values():
            yield from _messages(value)
    elif isinstance(errors, list):
        for value in errors:
            yield from _messages(value)
    else:
        yield str(errors)


def _only_the_body_is_negative(case) -> bool:
    return case.meta.is_negative_at(ParameterLocation.BODY) and not any(
        case.meta.is_negative_at(location)
        for location in ParameterLocation
        if location != ParameterLocation.BODY
    )


@pytest.fixture
def fuzz_site_key(conn, monkeypatch):
    """SITE_KEY, as copernica.com's key with every scope, in this test's transaction."""
    monkeypatch.setattr(sites, "new_site_key", lambda: SITE_KEY)
    return site_key_for(conn, "copernica.com")


# The app and its transaction are made once per operation, not per case, on purpose: the
# cases of one operation see what the ones before them wrote (an address met again merges).
@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_operation_keeps_the_documented_contract(case, app, fuzz_site_key):
    case.call_and_validate(app=app)


def test_sequences_of_calls_along_the_documented_links_keep_the_contract(app, conn, fuzz_site_key):
    class Workflow(schema.as_state_machine()):
        # Each scenario in a savepoint of its own: which links it can follow depends on what
        # it finds (201 or 200), so a scenario replayed must find the database as it was.
        def setup(self):
            self.scenario = conn.transaction(force_rollback=True)
            self.scenario.__enter__()

        def teardown(self):
            self.scenario.__exit__(None, None, None)

        def get_call_kwargs(self, case):
            return {"app": app}

    Workflow.run(
        settings=settings(
            Workflow.TestCase.settings,
            max_examples=STATEFUL_SCENARIOS,
            derandomize=True,
            database=None,
        )
    )


# What the fuzzing found, each as a user meets it.


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


def test_an_answer_about_a_record_links_to_that_record_by_its_id(site):
    created = site.post("/v1/profiles", json={"email": "Anna@Example.com", "source": "webinar"})
    assert created.status_code == 201
    record = created.get_json()
    links = document(site)["paths"]["/v1/profiles"]["post"]["responses"]["201"]["links"]
    assert links["GetUserById"]["parameters"] == {"user_id": "$response.body#/id"}
    # Not by address: a key without users:read gets no address in the answer.
    assert "GetUserByEmail" not in links
    by_id = site.get(f"/v1/users/{record['id']}")
    assert by_id.get_json()["id"] == record["id"]
    assert created.headers["Location"] == f"/v1/users/{record['id']}"


class _Answer:
    def __init__(self, errors: dict):
        self.status_code = 422
        self.content = json.dumps({"status": 422, "errors": errors}).encode()


@pytest.mark.parametrize(
    ("errors", "kept"),
    [
        # Found by the fuzzing (a user agent of tag characters): not a broken contract.
        ({"user_agent": ["Contains U+E0041 (an invisible character); send plain text."]}, False),
        (
            {"consent": {"text": ["Contains U+1D173 (an invisible character); send plain text."]}},
            False,
        ),
        # A refusal the pattern does say: a broken contract, kept.
        ({"user_agent": ["Contains U+200B (an invisible character); send plain text."]}, True),
        (
            {
                "user_agent": ["Contains U+E0041 (an invisible character); send plain text."],
                "name": ["Longer than 100 characters."],
            },
            True,
        ),
    ],
)
def test_only_a_refusal_the_pattern_cannot_name_is_let_pass(errors, kept):
    failure = RejectedPositiveData(
        operation="POST /v1/newsletters/confirm",
        message="",
        status_code=422,
        allowed_statuses=["200"],
    )
    assert filter_failure(None, failure, None, _Answer(errors)) is kept
