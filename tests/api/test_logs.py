"""Logs are JSON lines with the request id, and hold no person's data, whatever goes wrong."""

import json
import logging

import pytest

from identity import create_app
from identity.db import PinnedDatabase, unit_of_work
from tests.api.problems import assert_problem

SECRET = "zebedee.quux-7731@example.org"


@pytest.fixture
def app(conn, database_url):
    app = create_app(
        {"DATABASE_URL": database_url, "MAX_BODY_BYTES": 4096}, database=PinnedDatabase(conn)
    )

    # Two failures the service has no route for yet, but that any code can meet: an
    # exception whose message is an address, and psycopg's "Failing row contains (...)".
    @app.get("/test/key-error")
    def key_error():
        raise KeyError(SECRET)

    @app.get("/test/failing-row")
    def failing_row():
        unit_of_work().conn.execute(
            "insert into users (email, email_key, phone) values (%s, %s, 'not a number')",
            (SECRET, SECRET),
        )

    return app


def test_no_error_puts_an_address_in_the_log(app, site, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    site.post("/v1/profiles", json={"email": SECRET, "source": "event"})
    anonymous = app.test_client()
    answers = [
        (site.post("/v1/profiles", data="{" + SECRET, content_type="application/json"), 400),
        (anonymous.get("/v1/users", query_string={"email": SECRET}), 401),
        (site.get("/v1/users", query_string={"email": "x" + SECRET}), 404),
        (site.put("/v1/users", query_string={"email": SECRET}), 405),
        (site.post("/v1/profiles", json={"email": SECRET, "source": "x" * 5000}), 413),
        (site.post("/v1/profiles", data=SECRET, content_type="text/plain"), 415),
        (site.post("/v1/profiles", json={"email": SECRET + "@", "source": "event"}), 422),
        (site.get("/test/key-error"), 500),
        (site.get("/test/failing-row"), 500),
    ]
    for response, status in answers:
        body = assert_problem(response, status)
        assert SECRET not in json.dumps(body) or status == 422
    logged = caplog.text + capsys.readouterr().err
    assert "unexpected error" in logged
    assert "KeyError" in logged and "23514" in logged  # type and SQLSTATE, not the values
    assert SECRET not in logged
    assert SECRET.split("@")[0] not in logged


@pytest.mark.parametrize(
    "given",
    [
        "req-42.abc",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "9B2D1C0E8A7F4E6DB3C2A1F0E9D8C7B6",
        "checkout:2026-11-29",
    ],
)
def test_an_ordinary_request_id_is_taken(client, given):
    assert (
        client.get("/health/live", headers={"X-Request-ID": given}).headers["X-Request-ID"] == given
    )


def test_log_lines_are_json_with_the_request_id(app, site, capsys):
    response = site.get("/test/key-error", headers={"X-Request-ID": "req-42.abc"})
    assert response.headers["X-Request-ID"] == "req-42.abc"
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    (line,) = [line for line in lines if line["message"] == "unexpected error"]
    assert line["request_id"] == "req-42.abc"
    assert line["level"] == "error" and line["error_type"] == "builtins.KeyError"
    assert line["where"] and line["time"].endswith("+00:00")


KEY_BODY = "fC-Oo4NrbURLh4O_YQ_i4JUazipfdW0FoO4u9vpYCag"


@pytest.mark.parametrize(
    "given",
    [
        "",
        "x" * 200,
        "anna example.com",
        "anna@example.com",
        "héllo",
        f"idsk_{KEY_BODY}",
        f"req/idsk_{KEY_BODY}",
        KEY_BODY,
        f"trace-{KEY_BODY}",
        "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln",
    ],
)
def test_an_odd_or_missing_request_id_is_replaced_by_a_new_one(client, given):
    response = client.get("/health/live", headers={"X-Request-ID": given} if given else {})
    made = response.headers["X-Request-ID"]
    assert made and made != given and len(made) == 32


def test_a_library_warning_is_a_json_line_too(app, capsys):
    logging.getLogger("psycopg.pool").warning("discarding closed connection: %s", "<conn>")
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "discarding" in line]
    logged = json.loads(line)
    assert logged["logger"] == "psycopg.pool" and logged["level"] == "warning"


def test_the_access_log_names_the_calling_site_and_the_person(app, site, conn, monkeypatch):
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config

    from identity.serving import JsonLogger
    from tests.api.test_accounts import as_user, login, sign_up

    config = Config()
    config.set("accesslog", "-")
    logger = JsonLogger(config)
    written, environs = [], []
    monkeypatch.setattr(logger.access_log, "info", written.append)
    served = app.wsgi_app

    def serve(environ, start_response):  # the environ as the app left it, as gunicorn has it
        environs.append(environ)
        return served(environ, start_response)

    monkeypatch.setattr(app, "wsgi_app", serve)

    def access_line(response) -> dict:
        """The line gunicorn writes for the request the test client made."""
        headers = list(response.headers.items())
        answer = SimpleNamespace(headers=headers, status_code=response.status_code, sent=0)
        request = SimpleNamespace(method=response.request.method)
        logger.access(answer, request, environs.pop(), timedelta(milliseconds=3))
        return json.loads(written.pop())

    user = sign_up(site, conn, SECRET)
    token = login(site, SECRET).get_json()["access_token"]
    by_site = access_line(site.get(f"/v1/users/{user['id']}"))
    assert (by_site["site"], by_site["user_id"], by_site["status"]) == ("copernica.com", None, 200)
    by_person = access_line(as_user(app, token).get("/v1/me"))
    assert (by_person["site"], by_person["user_id"]) == ("copernica.com", user["id"])
    assert by_person["path"] == "/v1/me"
    refused = access_line(app.test_client().get("/v1/me"))
    assert (refused["site"], refused["user_id"], refused["status"]) == (None, None, 401)
    assert SECRET not in json.dumps([by_site, by_person, refused])
