import io
import json
import os
import signal

import pytest

from identity import bulk, create_app
from identity.api.guards import SERVICES
from identity.db import PinnedDatabase
from identity.imports.reading import MAX_LINE_BYTES
from tests.api.problems import assert_problem

NDJSON = "application/x-ndjson"


def run_import(client, body: str | bytes, content_type=NDJSON, **query):
    response = client.post(
        "/v1/profiles/import", data=body, content_type=content_type, query_string=query
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == NDJSON
    lines = [json.loads(line) for line in response.get_data().splitlines()]
    return lines[:-1], lines[-1]["summary"]


def ndjson(*rows) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def record(site, email):
    return site.get("/v1/users", query_string={"email": email}).get_json()


def test_good_lines_are_written_and_bad_ones_reported_with_their_reason(site):
    body = ndjson(
        {"email": "anna@example.com", "first_name": "Anna"},
        "{not json",
        {"email": "bob@", "first_name": "Bob"},
        '"just a string"',
        {"email": "carl@example.com", "phone": "020 123 4567", "country": "NL"},
        {"email": "dirk@example.com", "shoe_size": 44},
        {"email": "ANNA@example.com", "last_name": "Berg"},
    )
    report, summary = run_import(site, body)
    assert [(line["line"], line["status"]) for line in report] == [
        (1, "created"),
        (2, "rejected"),
        (3, "rejected"),
        (4, "rejected"),
        (5, "created"),
        (6, "rejected"),
        (7, "merged"),
    ]
    assert summary == {"lines": 7, "created": 2, "merged": 1, "rejected": 4}
    assert list(report[2]["errors"]) == ["email"]
    assert report[5]["errors"] == {"shoe_size": ["Unknown field."]}
    assert report[0]["id"] == report[6]["id"] == record(site, "anna@example.com")["id"]
    assert record(site, "anna@example.com")["last_name"] == "Berg"
    assert record(site, "carl@example.com")["phone"] == "+31201234567"
    assert "id" not in report[1]


def test_lines_take_the_source_of_the_query_unless_they_name_their_own(site):
    body = ndjson({"email": "a@example.com"}, {"email": "b@example.com", "source": "webinar"})
    run_import(site, body, source="event")
    assert record(site, "a@example.com")["field_sources"]["email"]["source"] == "event"
    assert record(site, "b@example.com")["field_sources"]["email"]["source"] == "webinar"
    run_import(site, ndjson({"email": "c@example.com"}))
    assert record(site, "c@example.com")["field_sources"]["email"]["source"] == "import"


def test_an_address_twice_in_one_import_is_one_record_filled_in_order(site):
    body = ndjson(
        {"email": "anna@example.com", "first_name": "Anna"},
        {"email": "Anna@Example.com", "first_name": "Other", "last_name": "Berg"},
    )
    report, _ = run_import(site, body)
    assert [line["status"] for line in report] == ["created", "merged"]
    assert record(site, "anna@example.com")["first_name"] == "Anna"
    assert record(site, "anna@example.com")["last_name"] == "Berg"


def test_importing_the_same_file_twice_only_merges(site, conn):
    body = ndjson(*({"email": f"p{n}@example.com", "first_name": f"P{n}"} for n in range(30)))
    _, first = run_import(site, body)
    _, second = run_import(site, body)
    assert first == {"lines": 30, "created": 30, "merged": 0, "rejected": 0}
    assert second == {"lines": 30, "created": 0, "merged": 30, "rejected": 0}
    assert conn.execute("select count(*) as n from users").fetchone()["n"] == 30


@pytest.mark.parametrize("processes", [0, 2], ids=["in-process", "helper-processes"])
def test_many_batches_keep_the_line_order(conn, database_url, site_key, processes):
    settings = {"DATABASE_URL": database_url, "IMPORT_BATCH_SIZE": 7, "IMPORT_PROCESSES": processes}
    app = create_app(settings, database=PinnedDatabase(conn))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {site_key}"
    rows = [{"email": f"p{n % 40}@example.com"} if n % 9 else {"email": "bad"} for n in range(100)]
    report, summary = run_import(client, ndjson(*rows))
    assert [line["line"] for line in report] == list(range(1, 101))
    assert summary["rejected"] == 12 and summary["created"] == 40
    assert summary["merged"] == 100 - 12 - 40


def test_an_ndjson_file_that_starts_with_a_byte_order_mark_is_read_without_it(site):
    body = "\ufeff" + ndjson({"email": "bom@example.com"}, {"email": "next@example.com"})
    report, summary = run_import(site, body.encode(), source="import")
    assert summary == {"lines": 2, "created": 2, "merged": 0, "rejected": 0}, report
    assert record(site, "bom@example.com")["email"] == "bom@example.com"
    # Only before the first line: elsewhere it is a character the line does not allow.
    report, summary = run_import(site, ndjson({"email": "x@example.com"}) + "\ufeff{}\n")
    assert summary["rejected"] == 1 and report[1]["line"] == 2
    assert report[1]["errors"] == {
        "line": ["not valid JSON: a byte order mark (U+FEFF) before the JSON: leave it out"]
    }


def test_a_csv_file_is_imported_by_its_header(site):
    body = (
        "\ufeffEmail,first_name,last_name,phone,country\r\n"
        "anna@example.com,Anna,,020 123 4567,NL\r\n"
        "bob@,Bob,,,\r\n"
        '"carl@example.com","Carl ""CJ""","Jansen, Sr.",,\r\n'
        "dirk@example.com,Dirk\r\n"
        "\r\n"
        'eve@example.com,"Eve\nMarie",Smit,,\r\n'
        "frank@example.com,Frank,,,\r\n"
    )
    report, summary = run_import(site, body, content_type="text/csv")
    assert [(line["line"], line["status"]) for line in report] == [
        (2, "created"),
        (3, "rejected"),
        (4, "created"),
        (5, "rejected"),
        (7, "rejected"),
        (9, "created"),
    ]
    assert summary["created"] == 3
    anna = record(site, "anna@example.com")
    assert anna["phone"] == "+31201234567" and anna["last_name"] is None
    assert record(site, "carl@example.com")["first_name"] == 'Carl "CJ"'
    assert record(site, "carl@example.com")["last_name"] == "Jansen, Sr."
    # A quoted line break keeps the record whole (frank is line 9), but no name holds one.
    assert list(report[4]["errors"]) == ["first_name"]
    assert "header names 5" in report[3]["errors"]["line"][0]


@pytest.mark.parametrize(
    "header", ["first_name,last_name\nAnna,Berg\n", "email,shoe_size\na@example.com,44\n", "\n"]
)
def test_a_csv_header_without_email_or_with_unknown_columns_refuses_the_import(site, conn, header):
    assert_problem(site.post("/v1/profiles/import", data=header, content_type="text/csv"), 422)
    assert conn.execute("select count(*) as n from users").fetchone()["n"] == 0


def test_a_line_that_is_too_long_or_not_utf8_is_rejected_alone(site):
    body = (
        json.dumps({"email": "a@example.com", "first_name": "x" * (MAX_LINE_BYTES + 10)}).encode()
        + b"\n"
        + b'{"email": "b@example.com", "first_name": "\xff\xfe"}\n'
        + b'{"email": "c@example.com"}\n'
    )
    report, _ = run_import(site, body)
    assert [line["status"] for line in report] == ["rejected", "rejected", "created"]
    assert "longer than" in report[0]["errors"]["line"][0]
    csv_body = b"email,first_name\nd@example.com,\xff\ne@example.com,E\n"
    report, _ = run_import(site, csv_body, content_type="text/csv")
    assert [line["status"] for line in report] == ["rejected", "created"]


def test_an_import_of_blank_lines_reports_nothing_done(site):
    report, summary = run_import(site, "\n\n  \n")
    assert report == [] and summary == {"lines": 0, "created": 0, "merged": 0, "rejected": 0}


def test_an_import_in_another_format_is_a_415_problem(site):
    response = site.post("/v1/profiles/import", json=[{"email": "a@example.com"}])
    body = assert_problem(response, 415)
    assert "application/x-ndjson" in body["detail"] and "text/csv" in body["detail"]


def test_an_import_over_its_limit_is_a_413_problem(conn, database_url, site_key):
    app = create_app(
        {"DATABASE_URL": database_url, "MAX_IMPORT_BYTES": 10_000}, database=PinnedDatabase(conn)
    )
    body = ndjson(*({"email": f"p{n}@example.com"} for n in range(1000)))
    response = app.test_client().post(
        "/v1/profiles/import",
        data=body,
        content_type=NDJSON,
        headers={"Authorization": f"Bearer {site_key}"},
    )
    assert_problem(response, 413)
    assert conn.execute("select count(*) as n from users").fetchone()["n"] == 0


def test_an_unknown_query_parameter_or_source_is_a_422_problem(site):
    response = site.post(
        "/v1/profiles/import", data="", content_type=NDJSON, query_string={"source": "spam"}
    )
    assert_problem(response, 422, "source")
    response = site.post(
        "/v1/profiles/import", data="", content_type=NDJSON, query_string={"dry_run": "1"}
    )
    assert_problem(response, 422, "dry_run")


def test_an_import_whose_helper_process_dies_fails_and_the_next_one_works(site):
    run_import(site, ndjson({"email": "a@example.com"}))
    (pool,) = bulk._pools.values()
    for pid in list(pool._processes):
        os.kill(pid, signal.SIGKILL)
    body = ndjson(*({"email": f"p{n}@example.com"} for n in range(10)))
    response = site.post("/v1/profiles/import", data=body, content_type=NDJSON)
    assert_problem(response, 500)
    _, summary = run_import(site, body)
    assert summary["created"] == 10


def test_an_import_over_its_line_limit_stops_with_a_413_that_says_how_far_it_got(
    conn, database_url, site_key
):
    settings = {"MAX_IMPORT_LINES": 5, "IMPORT_BATCH_SIZE": 2, "IMPORT_PROCESSES": 0}
    app = create_app({"DATABASE_URL": database_url, **settings}, database=PinnedDatabase(conn))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {site_key}"
    body = ndjson(*({"email": f"p{n}@example.com"} for n in range(8)))
    response = client.post("/v1/profiles/import", data=body, content_type=NDJSON)
    problem = assert_problem(response, 413)
    assert problem["lines_done"] == 4 and "line 4" in problem["detail"]
    assert "at most 5 lines" in problem["detail"]
    assert conn.execute("select count(*) as n from users").fetchone()["n"] == 4


def test_an_import_over_its_time_limit_stops_with_a_408(conn, database_url, site_key):
    settings = {"MAX_IMPORT_SECONDS": 60, "IMPORT_PROCESSES": 0}
    app = create_app({"DATABASE_URL": database_url, **settings}, database=PinnedDatabase(conn))
    ticks = iter(range(0, 10_000, 45))  # every read of the body takes 45 s
    app.extensions[SERVICES].clock = lambda: next(ticks)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {site_key}"
    body = ndjson(*({"email": f"p{n}@example.com", "first_name": "x" * 90} for n in range(5000)))
    response = client.post("/v1/profiles/import", data=body, content_type=NDJSON)
    problem = assert_problem(response, 408)
    written = conn.execute("select count(*) as n from users").fetchone()["n"]
    assert problem["lines_done"] == written < 5000


def test_an_empty_chunked_body_and_too_many_lines_answer_as_the_endpoint_always_has(
    conn, database_url, site_key
):
    settings = {"MAX_IMPORT_LINES": 2, "IMPORT_PROCESSES": 0}
    app = create_app({"DATABASE_URL": database_url, **settings}, database=PinnedDatabase(conn))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {site_key}"
    empty = client.post(
        "/v1/profiles/import",
        input_stream=io.BytesIO(b""),
        content_type=NDJSON,
        headers={"Transfer-Encoding": "chunked"},
    )
    assert assert_problem(empty, 400) == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": "send the lines in the body: NDJSON or CSV with a header row",
    }
    body = ndjson(*({"email": f"p{n}@example.com"} for n in range(3)))
    too_many = client.post("/v1/profiles/import", data=body, content_type=NDJSON)
    problem = assert_problem(too_many, 413)
    assert problem["type"] == "about:blank" and problem["lines_done"] == 0
    assert problem["detail"] == (
        "an import takes at most 2 lines; no line was written, and running the whole file"
        " again is safe"
    )
