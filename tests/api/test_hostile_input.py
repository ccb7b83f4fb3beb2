"""What a hostile client sends: every one of these is a 4xx problem+json and writes nothing
(single requests), or a rejected line of its own (imports)."""

import io
import json
import unicodedata

import pytest

from tests.api.problems import assert_problem
from tests.api.test_import import NDJSON, ndjson, run_import

PROFILE = {"email": "anna@example.com", "source": "webinar"}


def count_users(conn) -> int:
    return conn.execute("select count(*) as n from users").fetchone()["n"]


BAD_TEXT = {
    "a NUL byte": "An\x00na",
    "a lone surrogate": "An\ud800na",
    "a control character": "An\x07na",
    "a bidi override": "Anna\u202egreB",
    "a line break": "Anna\nBerg",
    "too long": "A" * 101,
    "a right-to-left mark": "Anna\u200f",
    "an Arabic letter mark": "Anna\u061c",
    "a line separator": "Anna\u2028Berg",
    "a zero-width space": "An\u200bna",
    "a byte order mark": "\ufeffAnna",
    "a tag character": "Anna\U000e0041",
    "a noncharacter": "Anna\ufdd0",
    "a noncharacter past U+FFFF": "Anna\U0001fffe",
    "a Hangul filler": "\u3164",
    "a word joiner": "An\u2060na",
    "a soft hyphen": "An\u00adna",
    "a private-use character": "Anna\ue000",
    "longer than the limit once in NFC": "\u0958" * 100,
}


@pytest.mark.parametrize("value", BAD_TEXT.values(), ids=BAD_TEXT.keys())
def test_hostile_text_in_a_name_is_a_422_that_names_the_field(site, conn, value):
    body = json.dumps(PROFILE | {"first_name": value})
    response = site.post("/v1/profiles", data=body, content_type="application/json")
    assert_problem(response, 422, "first_name")
    assert count_users(conn) == 0


GOOD_TEXT = {
    "a Persian name with a zero-width non-joiner": "\u0645\u06cc\u200c\u0631\u0648\u062f",
    "an emoji sequence with a zero-width joiner": "Anna \U0001f469\u200d\U0001f4bb",
    "combining marks": "Ame\u0301lie",
}


@pytest.mark.parametrize("value", GOOD_TEXT.values(), ids=GOOD_TEXT.keys())
def test_text_that_needs_joiners_or_marks_is_kept(site, value):
    response = site.post("/v1/profiles", json=PROFILE | {"first_name": value})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["first_name"] == unicodedata.normalize("NFC", value)


@pytest.mark.parametrize("value", BAD_TEXT.values(), ids=BAD_TEXT.keys())
def test_hostile_text_in_an_import_line_rejects_that_line_only(site, value):
    body = ndjson(
        {"email": "anna@example.com"},
        json.dumps({"email": "bob@example.com", "last_name": value}),
        {"email": "carl@example.com"},
    )
    report, _summary = run_import(site, body)
    assert [line["status"] for line in report] == ["created", "rejected", "created"]
    assert list(report[1]["errors"]) == ["last_name"]


def test_text_is_stored_in_nfc_and_trimmed(site):
    decomposed = "  Zoe\u0308  "  # Zoë with a combining diaeresis, and spaces around
    response = site.post("/v1/profiles", json=PROFILE | {"first_name": decomposed})
    assert response.status_code == 201
    assert response.get_json()["first_name"] == "Zo\u00eb"


def test_json_nested_100000_deep_is_a_400(site, conn):
    body = "[" * 100_000 + "]" * 100_000
    response = site.post("/v1/profiles", data=body, content_type="application/json")
    assert_problem(response, 400)
    deep = '{"email": "anna@example.com", "source": "event", "x": ' + body + "}"
    assert_problem(site.post("/v1/profiles", data=deep, content_type="application/json"), 400)
    assert count_users(conn) == 0


def test_a_5000_digit_number_is_a_4xx(site, conn):
    digits = "9" * 5000
    body = '{"email": "anna@example.com", "source": "event", "first_name": ' + digits + "}"
    response = site.post("/v1/profiles", data=body, content_type="application/json")
    assert response.status_code in (400, 422)
    assert_problem(response, response.status_code)
    assert count_users(conn) == 0


def test_invalid_utf8_in_a_json_body_is_a_400(site, conn):
    body = b'{"email": "anna@example.com", "source": "event", "first_name": "\xff\xfe"}'
    assert_problem(site.post("/v1/profiles", data=body, content_type="application/json"), 400)
    assert count_users(conn) == 0


def test_hostile_import_lines_are_rejected_each_and_the_good_ones_around_them_written(site):
    body = (
        "\n".join(
            [
                json.dumps({"email": "anna@example.com"}),
                "[" * 100_000 + "]" * 100_000,
                '{"email": "bob@example.com", "first_name": ' + "9" * 5000 + "}",
                '{"email": "carl@example.com", "first_name": "\\u0000"}',
                '{"email": "dirk@example.com", "first_name": "\\ud800"}',
                json.dumps({"email": "eva@example.com"}),
            ]
        ).encode()
        + b'\n{"email": "f\xffe@example.com"}\n'
        + json.dumps({"email": "gert@example.com"}).encode()
    )
    report, summary = run_import(site, body)
    assert [line["status"] for line in report] == [
        "created",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "created",
        "rejected",
        "created",
    ]
    assert summary["created"] == 3


CSV_BODIES = {
    "CR-only line endings": "email,first_name\ranna@example.com,Anna\rbob@example.com,Bob\r",
    "an unclosed quote in the header": 'email,"first_name\nanna@example.com,Anna\n',
}


@pytest.mark.parametrize("body", CSV_BODIES.values(), ids=CSV_BODIES.keys())
def test_a_malformed_csv_header_is_a_4xx_problem(site, conn, body):
    response = site.post("/v1/profiles/import", data=body, content_type="text/csv")
    assert 400 <= response.status_code < 500
    assert_problem(response, response.status_code)
    assert count_users(conn) == 0


def test_a_repeated_csv_column_is_refused(site, conn):
    body = "email,first_name,first_name\nanna@example.com,Anna,Bob\n"
    response = site.post("/v1/profiles/import", data=body, content_type="text/csv")
    body = assert_problem(response, 422, "header")
    assert "first_name" in body["errors"]["header"][0]
    assert count_users(conn) == 0


def test_an_unclosed_quote_in_a_csv_row_rejects_that_row_only(site):
    body = 'email,first_name\nanna@example.com,Anna\nbob@example.com,"Bob\ncarl@example.com,Carl\n'
    report, summary = run_import(site, body, content_type="text/csv")
    assert report[0]["status"] == "created"
    assert report[-1]["status"] == "rejected"
    assert summary["created"] == 1


def test_a_csv_cell_over_the_field_limit_rejects_its_row_and_keeps_the_rest(site):
    body = (
        "email,first_name\n"
        "anna@example.com,Anna\n"
        f'bob@example.com,"{"B" * 200_000}"\n'
        "carl@example.com,Carl\n"
        "dirk@example.com,Dirk\n"
    )
    report, _summary = run_import(site, body, content_type="text/csv")
    assert [line["status"] for line in report] == ["created", "rejected", "created", "created"]


def test_an_import_without_a_body_is_a_400(site):
    response = site.post("/v1/profiles/import", data=b"", content_type=NDJSON)
    assert_problem(response, 400)


def test_an_empty_chunked_import_is_a_400(site):
    response = site.post(
        "/v1/profiles/import",
        input_stream=io.BytesIO(b""),
        content_type=NDJSON,
        headers={"Transfer-Encoding": "chunked"},
    )
    assert_problem(response, 400)


def test_a_phone_extension_is_refused_not_dropped(site, conn):
    response = site.post("/v1/profiles", json=PROFILE | {"phone": "+31 20 123 4567 ext. 12"})
    body = assert_problem(response, 422, "phone")
    assert "extension" in body["errors"]["phone"][0]
    assert count_users(conn) == 0


def test_a_quoted_csv_cell_over_the_limit_across_lines_does_not_swallow_the_rows_after(site):
    spread = ("B" * 50_000 + "\n") * 3
    body = (
        "email,first_name\n"
        "anna@example.com,Anna\n"
        f'bob@example.com,"{spread}"\n'
        "carl@example.com,Carl\n"
        "dirk@example.com,Dirk\n"
    )
    report, _ = run_import(site, body, content_type="text/csv")
    statuses = [line["status"] for line in report]
    assert statuses[0] == "created" and statuses[-2:] == ["created", "created"]
    assert "rejected" in statuses
    assert record_of(site, "carl@example.com")["first_name"] == "Carl"


def record_of(site, email):
    return site.get("/v1/users", query_string={"email": email}).get_json()


def test_a_key_given_twice_is_refused_not_guessed(site, conn):
    body = '{"email": "anna@example.com", "source": "event", "email": "eve@example.com"}'
    problem = assert_problem(
        site.post("/v1/profiles", data=body, content_type="application/json"), 400
    )
    assert "twice" in problem["detail"]
    report, _ = run_import(site, body + "\n" + json.dumps({"email": "bob@example.com"}) + "\n")
    assert [line["status"] for line in report] == ["rejected", "created"]
    assert count_users(conn) == 1


def test_a_query_parameter_given_twice_is_refused_not_guessed(site):
    response = site.get("/v1/users?email=anna@example.com&email=eve@example.com")
    assert_problem(response, 422, "email")


def test_the_length_limit_holds_for_what_is_stored_too(site):
    # NFC makes each U+0958 two characters: what is stored must fit the limit the
    # document gives for what is returned, so it can be sent back as it came.
    response = site.post("/v1/profiles", json=PROFILE | {"first_name": "\u0958" * 50})
    assert response.status_code == 201 and len(response.get_json()["first_name"]) == 100
    body = assert_problem(
        site.post("/v1/profiles", json=PROFILE | {"last_name": "\u0958" * 51}), 422, "last_name"
    )
    assert "100" in body["errors"]["last_name"][0]


STRAY_QUOTES = {
    "a quote inside a cell": 'bob@example.com,Robert "Bob\n',
    "a quote between letters": 'bob@example.com,A"B\n',
    "a quote after a space": 'bob@example.com, "Bob\n',
}


@pytest.mark.parametrize("line", STRAY_QUOTES.values(), ids=STRAY_QUOTES.keys())
def test_a_stray_quote_in_a_csv_cell_is_a_character_and_swallows_no_rows(site, line):
    body = "email,first_name\nanna@example.com,Anna\n" + line + "carl@example.com,Carl\n"
    report, _ = run_import(site, body, content_type="text/csv")
    assert [entry["status"] for entry in report] == ["created", "created", "created"]
    assert record_of(site, "bob@example.com")["first_name"] == line.split(",", 1)[1].strip()
    assert record_of(site, "carl@example.com")["first_name"] == "Carl"


def test_text_after_a_closing_quote_rejects_that_row_only_and_says_why(site):
    body = 'email,first_name\nanna@example.com,"An"na\nbob@example.com,Bob\n'
    report, _ = run_import(site, body, content_type="text/csv")
    assert [entry["status"] for entry in report] == ["rejected", "created"]
    assert "closing quote" in report[0]["errors"]["line"][0]


def test_a_long_line_with_a_stray_quote_is_rejected_alone(site):
    body = f'email,first_name\nbob@example.com,{"B" * 200_000}"Bob\ncarl@example.com,Carl\n'
    report, _ = run_import(site, body, content_type="text/csv")
    assert [entry["status"] for entry in report] == ["rejected", "created"]


def test_cr_only_line_endings_are_named_in_the_problem(site):
    response = site.post(
        "/v1/profiles/import",
        data="email,first_name\ranna@example.com,Anna\r",
        content_type="text/csv",
    )
    body = assert_problem(response, 422, "header")
    assert "LF or CRLF" in body["errors"]["header"][0]
    assert "universal-newline" not in json.dumps(body)


@pytest.mark.parametrize("field", ["phone", "mobile", "fax"])
def test_a_valid_number_longer_than_e164_is_a_422_not_a_500(site, conn, field):
    # phonenumbers takes German fixed lines up to 15 national digits; E.164 takes 15 in all.
    response = site.post("/v1/profiles", json=PROFILE | {field: "+49 30 1234567890123"})
    body = assert_problem(response, 422, field)
    assert "15 digits" in body["errors"][field][0]
    assert count_users(conn) == 0


def test_a_number_longer_than_e164_rejects_its_import_line_only(site):
    body = ndjson(
        {"email": "anna@example.com", "phone": "+49 30 1234567890123"},
        {"email": "bob@example.com", "phone": "+49 30 12345678"},
    )
    report, _ = run_import(site, body)
    assert [entry["status"] for entry in report] == ["rejected", "created"]


NDJSON_LINES = {
    "nested too deep": b"[" * 30_000 + b"]" * 30_000,
    "a number is too long": b'{"email": "anna@example.com", "first_name": ' + b"9" * 5000 + b"}",
    "not UTF-8": b'{"email": "anna@example.com", "first_name": "\xff"}',
    "a key is given twice": b'{"email": "anna@example.com", "email": "bob@example.com"}',
    "Expecting": b'{"email": "anna@example.com",',
}


@pytest.mark.parametrize(("why", "line"), NDJSON_LINES.items(), ids=NDJSON_LINES.keys())
def test_a_bad_ndjson_line_is_rejected_with_the_reason_a_single_request_gets(site, why, line):
    body = line + b"\n" + json.dumps({"email": "carl@example.com"}).encode() + b"\n"
    report, _ = run_import(site, body)
    assert [entry["status"] for entry in report] == ["rejected", "created"]
    assert why in report[0]["errors"]["line"][0]
    single = site.post("/v1/profiles", data=line, content_type="application/json")
    assert why in assert_problem(single, 400)["detail"]


def test_a_compressed_body_is_a_415_not_garbage(site, conn):
    import gzip

    body = gzip.compress(json.dumps(PROFILE).encode())
    response = site.post(
        "/v1/profiles",
        data=body,
        content_type="application/json",
        headers={"Content-Encoding": "gzip"},
    )
    assert "Content-Encoding" in assert_problem(response, 415)["detail"]
    assert count_users(conn) == 0


def test_a_json_error_message_reads_as_english(site):
    body = b'{"email": "a\x01"}'
    response = site.post("/v1/profiles", data=body, content_type="application/json")
    detail = assert_problem(response, 400)["detail"]
    assert "control character at line 1" in detail and "at at" not in detail


@pytest.mark.parametrize("query", ["email=%ff%fe", "email=anna%00@example.com", "email=%"])
def test_a_query_that_is_not_text_is_a_4xx(site, query):
    response = site.get(f"/v1/users?{query}")
    assert 400 <= response.status_code < 500
    assert response.headers["Content-Type"] == "application/problem+json"


def test_a_stray_quote_where_a_long_line_is_cut_into_pieces_swallows_no_rows(site):
    from identity.imports.reading import MAX_LINE_BYTES

    prefix = b"bob@example.com,"
    line = prefix + b"a" * (MAX_LINE_BYTES + 1 - len(prefix)) + b'"Bob\n'  # quote on the edge
    body = b"email,first_name\n" + line + b"carl@example.com,Carl\ndirk@example.com,Dirk\n"
    report, summary = run_import(site, body, content_type="text/csv")
    assert [entry["status"] for entry in report] == ["rejected", "created", "created"]
    assert summary["lines"] == 3


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"email": NaN}', "NaN"),
        (b'{"email": -Infinity}', "Infinity"),
        (b'{"email": 1e999}', "too large"),
    ],
)
def test_numbers_json_does_not_have_are_a_400(site, body, why):
    response = site.post("/v1/profiles", data=body, content_type="application/json")
    assert why in assert_problem(response, 400)["detail"]
