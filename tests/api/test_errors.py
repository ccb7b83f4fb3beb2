import json

import psycopg
import pytest
from werkzeug.exceptions import InternalServerError

from identity import create_app
from identity.api.problems import describe
from identity.db import PinnedDatabase
from identity.errors import ConfigurationError, IdentityError
from identity.security.access_tokens import ensure_signing_key
from tests.api.problems import assert_problem
from tests.api.test_accounts import PASSWORD, sign_up
from tests.settings import CHEAP

PROFILE = {"email": "anna@example.com", "source": "webinar"}


def count_users(conn) -> int:
    return conn.execute("select count(*) as n from users").fetchone()["n"]


def test_an_unknown_path_is_a_404_problem(client):
    assert_problem(client.get("/v1/nothing-here"), 404)


@pytest.mark.parametrize(
    "path",
    [
        "/v1//newsletters",
        "/health//live",
        "/v1/unsubscribe//x",
        "//v1/newsletters",
        "//health/live",
    ],
)
def test_a_path_with_a_double_slash_is_a_404_never_a_redirect(site, path):
    """werkzeug would answer 308 to the path with the slashes merged; the API redirects
    nowhere (a one-click unsubscribe must never be one)."""
    for answer in (site.get(path), site.post(path, data="List-Unsubscribe=One-Click")):
        assert_problem(answer, 404)
        assert "Location" not in answer.headers


def test_a_wrong_method_is_a_405_problem_that_names_the_allowed_ones(site):
    response = site.delete("/v1/profiles")
    assert_problem(response, 405)
    assert "POST" in response.headers["Allow"]


def test_malformed_json_is_a_400_problem_and_writes_nothing(site, conn):
    response = site.post("/v1/profiles", data='{"email": ', content_type="application/json")
    body = assert_problem(response, 400)
    assert "JSON" in body["detail"]
    assert count_users(conn) == 0


def test_a_json_body_after_a_byte_order_mark_is_a_400_that_says_so(site, conn):
    body = '\ufeff{"email": "anna@example.com", "source": "event"}'.encode()
    response = site.post("/v1/profiles", data=body, content_type="application/json")
    problem = assert_problem(response, 400)
    assert "byte order mark" in problem["detail"] and "utf-8-sig" not in problem["detail"]
    assert count_users(conn) == 0


@pytest.mark.parametrize("body", ["[]", '"anna@example.com"', "42", "null"])
def test_a_body_that_is_not_an_object_is_a_422_problem(site, body):
    assert_problem(site.post("/v1/profiles", data=body, content_type="application/json"), 422)


def test_wrong_types_and_unknown_fields_are_named_field_by_field(site, conn):
    response = site.post(
        "/v1/profiles",
        json={"email": 5, "source": "carrier-pigeon", "first_name": ["A"], "shoe_size": 44},
    )
    body = assert_problem(response, 422, "email", "source", "first_name", "shoe_size")
    assert body["errors"]["shoe_size"] == ["Unknown field."]
    assert all(body["errors"][field] for field in body["errors"])
    assert count_users(conn) == 0


def test_a_missing_required_field_is_named(site):
    assert_problem(site.post("/v1/profiles", json={"first_name": "Anna"}), 422, "email", "source")


def test_a_body_of_another_type_is_a_415_problem(site, conn):
    response = site.post("/v1/profiles", data="email=anna@example.com&source=event")
    body = assert_problem(response, 415)
    assert "application/json" in body["detail"]
    assert count_users(conn) == 0


def test_a_body_over_the_limit_is_a_413_problem(conn, database_url, site_key):
    app = create_app(
        {"DATABASE_URL": database_url, "MAX_BODY_BYTES": 1024}, database=PinnedDatabase(conn)
    )
    client = app.test_client()
    big = PROFILE | {"first_name": "A" * 2000}
    response = client.post(
        "/v1/profiles", json=big, headers={"Authorization": f"Bearer {site_key}"}
    )
    assert_problem(response, 413)
    assert count_users(conn) == 0


@pytest.fixture
def own_app(conn, database_url):
    """An app of the test's own, which it may add a route to (the shared one has served)."""
    return create_app({"DATABASE_URL": database_url, **CHEAP}, database=PinnedDatabase(conn))


def test_an_unexpected_failure_is_a_500_problem_without_a_trace(own_app, caplog):
    app = own_app

    @app.get("/v1/explode")
    def explode():
        raise RuntimeError("secret internals: password=hunter2")

    response = app.test_client().get("/v1/explode")
    body = assert_problem(response, 500)
    assert "hunter2" not in response.get_data(as_text=True)
    assert body["detail"] == "something went wrong on our side"


def test_a_signing_key_this_server_cannot_open_is_a_500_told_only_to_the_log(site, conn, capsys):
    """The signing key was sealed under another IDENTITY_SECRET_KEY (the secret changed
    without `identity keys rotate`): the server's configuration is wrong, not the request.
    The caller hears that something went wrong, and the request id; the log says what."""
    ensure_signing_key(conn, "an earlier secret key, not the one this server has")
    sign_up(site, conn)
    capsys.readouterr()

    response = site.post(
        "/v1/auth/login",
        json={"email": "anna@example.com", "password": PASSWORD, "client_ip": "203.0.113.7"},
        headers={"X-Request-ID": "req-key-7"},
    )

    body = assert_problem(response, 500)
    assert body["detail"] == "something went wrong on our side"
    assert body["request_id"] == response.headers["X-Request-ID"] == "req-key-7"
    assert set(body) == {"type", "title", "status", "detail", "request_id"}
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    (line,) = [line for line in lines if line["level"] == "error"]
    assert line["message"] == "configuration error" and line["request_id"] == "req-key-7"
    assert line["error_type"] == "identity.errors.ConfigurationError"
    assert "cannot be opened with this IDENTITY_SECRET_KEY" in line["error_detail"]
    assert any("open_private_key" in frame for frame in line["where"])
    assert "anna@example.com" not in json.dumps(lines)


@pytest.mark.parametrize(
    "error",
    [
        ConfigurationError("IDENTITY_SMTP_URL must look like smtp://host:port"),
        IdentityError("an error raised on purpose that no answer was chosen for"),
        InternalServerError(original_exception=KeyError("anna@example.com")),
        InternalServerError("an after_request function failed"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_every_fault_of_the_servers_own_is_a_500_that_tells_nothing_of_it(app, error, capsys):
    with app.test_request_context(headers={"X-Request-ID": "req-fault-1"}):
        app.preprocess_request()
        response = describe(error).response()
    body = assert_problem(response, 500)
    assert body["detail"] == "something went wrong on our side"
    assert body["request_id"] == "req-fault-1"
    assert body["type"] == "about:blank" and "errors" not in body
    logged = capsys.readouterr().err
    assert "req-fault-1" in logged and "anna@example.com" not in logged


def test_a_failure_past_the_handlers_is_a_500_whose_path_is_not_logged(own_app, capsys):
    app = own_app

    @app.after_request
    def fail(response):
        raise RuntimeError("an after_request function failed")

    answer = app.test_client().get("/v1/unsubscribe/a-token", headers={"X-Request-ID": "req-9"})
    body = assert_problem(answer, 500)
    assert body["detail"] == "something went wrong on our side" and body["request_id"] == "req-9"
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    (fault,) = [line for line in lines if line["message"] == "unexpected error"]
    assert fault["error_type"] == "builtins.RuntimeError" and fault["request_id"] == "req-9"
    assert "a-token" not in json.dumps(lines)


def test_a_unique_violation_becomes_a_409_problem(own_app, conn):
    app = own_app

    @app.post("/v1/duplicate")
    def duplicate():
        conn.execute("insert into sites (name) values ('dup.example'), ('dup.example')")

    with conn.transaction(force_rollback=True):
        body = assert_problem(app.test_client().post("/v1/duplicate"), 409)
    assert "dup.example" not in body["detail"]


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.SerializationFailure("could not serialize access"),
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
    ],
)
def test_a_busy_database_is_not_reported_as_unreachable(app, error):
    with app.test_request_context():
        problem = describe(error)
    assert problem.status == 503 and problem.kind == "busy"
    assert "cannot be reached" not in problem.detail
    assert problem.headers["Retry-After"]
