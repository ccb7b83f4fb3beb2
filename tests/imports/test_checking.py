"""Checking an import's lines as the helpers do: parsed, loaded by the line schema, then
checked as one profile submission is; a line's fault rejects that line alone."""

import json
from datetime import UTC, datetime

from identity.imports import checking
from identity.imports.checking import LINE_FIELDS, check_batch
from identity.services.submissions import PROFILE_FIELDS, Submission
from identity.services.submissions import check_line as service_check_line
from identity.store.users import PROFILE_COLUMNS


def check(*lines, source: str = "import") -> list:
    batch = [
        (line_no, json.dumps(line).encode() if isinstance(line, dict) else line, None)
        for line_no, line in enumerate(lines, start=1)
    ]
    return check_batch(batch, source)


def errors(checked) -> list:
    return [line_errors for _, _, line_errors in checked]


def test_a_good_line_becomes_a_normalised_submission_with_its_line_number():
    (checked,) = check(
        {
            "email": "Anna@Example.COM",
            "first_name": " Anna ",
            "phone": "020 123 4567",
            "country": "NL",
            "gender": "unspecified",
        }
    )
    assert checked == (
        1,
        Submission(
            email="Anna@example.com",
            source="import",
            fields={"first_name": "Anna", "phone": "+31201234567"},
        ),
        None,
    )


def test_a_line_takes_the_import_source_unless_it_names_its_own():
    checked = check(
        {"email": "a@example.com"}, {"email": "b@example.com", "source": "webinar"}, source="event"
    )
    assert [submission.source for _, submission, _ in checked] == ["event", "webinar"]


def test_a_line_that_is_not_a_json_object_is_rejected_saying_why():
    checked = check(
        b"{not json",
        b'"just a string"',
        b'{"email": "a@example.com", "email": "b"}',
        "\ufeff{}".encode(),
        b"[NaN]",
    )
    assert [line_no for line_no, _, _ in checked] == [1, 2, 3, 4, 5]
    assert all(submission is None for _, submission, _ in checked)
    reasons = [line_errors["line"][0] for line_errors in errors(checked)]
    assert reasons[0].startswith("not valid JSON: Expecting property name")
    assert reasons[1:] == [
        "not a JSON object",
        "not valid JSON: a key is given twice in one object",
        "not valid JSON: a byte order mark (U+FEFF) before the JSON: leave it out",
        "not valid JSON: NaN is not a JSON number",
    ]


def test_a_line_the_schema_or_the_service_refuses_names_each_field_by_its_path():
    checked = check(
        {"email": "dirk@example.com", "shoe_size": 44},
        {"email": "bob@"},
        {
            "email": "eve@example.com",
            "newsletters": {"copernica": {"consented_at": "soon", "consent_text": "v1"}},
        },
        {"email": "fay@example.com", "phone": "020 123 4567"},
    )
    found = errors(checked)
    assert found[0] == {"shoe_size": ["Unknown field."]}
    assert list(found[1]) == ["email"]
    assert list(found[2]) == ["newsletters.copernica.consented_at"]
    assert list(found[3]) == ["phone"]  # a national number needs a country


def test_a_line_brings_its_newsletter_consents_over_in_key_order():
    consent = {"consented_at": "2024-03-01T10:00:00Z", "consent_text": "form v1"}
    (checked,) = check(
        {"email": "a@example.com", "newsletters": {"smtpeter": consent, "copernica": consent}}
    )
    at = datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert checked[1].newsletters == (("copernica", at, "form v1"), ("smtpeter", at, "form v1"))


def test_a_csv_line_is_checked_as_its_cells_and_a_line_read_with_errors_keeps_them():
    checked = check_batch(
        [
            (2, {"email": "anna@example.com", "first_name": "Anna"}, None),
            (3, None, {"line": ["not UTF-8"]}),
        ],
        "import",
    )
    assert checked[0][1].fields == {"first_name": "Anna"}
    assert checked[1] == (3, None, {"line": ["not UTF-8"]})


def test_a_line_that_breaks_a_check_is_rejected_alone_and_the_batch_goes_on(monkeypatch):
    def check_line(line_no, data):
        if line_no == 1:
            raise RuntimeError("a bug in a check")
        return service_check_line(line_no, data)

    monkeypatch.setattr(checking, "check_line", check_line)
    checked = check({"email": "a@example.com"}, {"email": "b@example.com"})
    assert checked[0] == (1, None, {"line": ["could not be read (RuntimeError)"]})
    assert checked[1][1].email == "b@example.com"


def test_the_fields_a_submission_may_carry_are_the_records_profile_columns():
    assert PROFILE_FIELDS == PROFILE_COLUMNS
    assert set(PROFILE_FIELDS) < LINE_FIELDS
