"""`identity sessions revoke --email ADDRESS | --all`: the person's (or everyone's)
sign-ins end, their refresh tokens and access tokens refused at once by the service; a
mistyped address is one line saying so."""

import json

import pytest

from tests.api.test_accounts import as_user, login, sign_up
from tests.sites import site_key_for


@pytest.fixture
def site(pooled_app, committing_db):
    """copernica.com's client on the app whose writes are committed, as the CLI sees them."""
    client = pooled_app.test_client()
    key = site_key_for(committing_db, "copernica.com")
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def signed_in(site, conn, email: str, times: int = 1) -> list[dict]:
    sign_up(site, conn, email)
    return [login(site, email).get_json() for _ in range(times)]


def still_works(app, site, tokens: dict) -> tuple[int, int]:
    """What /v1/me says to the access token and a refresh to the refresh token."""
    me = as_user(app, tokens["access_token"]).get("/v1/me").status_code
    refresh = site.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    return me, refresh.status_code


def test_revoking_by_address_ends_that_persons_sign_ins_and_no_one_elses(
    cli, site, pooled_app, committing_db
):
    anna = signed_in(site, committing_db, "anna@example.com", times=2)
    (bob,) = signed_in(site, committing_db, "bob@example.com")

    result = cli("sessions", "revoke", "--email", "Anna@Example.com")
    assert result.stdout == "ended 2 sign-ins of Anna@Example.com\n"
    # The log's security event names the person by id, never by address.
    (revoked,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert (revoked["event"], revoked["count"]) == ("sessions.revoked", 2)
    assert revoked["user_id"] and "anna" not in result.stderr.lower()
    for tokens in anna:
        assert still_works(pooled_app, site, tokens) == (401, 401)
    assert still_works(pooled_app, site, bob) == (200, 200)
    # Nothing is left to end; saying so is not an error.
    assert cli("sessions", "revoke", "--email", "anna@example.com").stdout == (
        "ended 0 sign-ins of anna@example.com\n"
    )


def test_revoking_all_ends_everyones_sign_ins(cli, site, pooled_app, committing_db):
    anna = signed_in(site, committing_db, "anna@example.com")
    bob = signed_in(site, committing_db, "bob@example.com")
    assert cli("sessions", "revoke", "--all").stdout == "ended 2 sign-ins of everyone\n"
    for tokens in anna + bob:
        assert still_works(pooled_app, site, tokens) == (401, 401)
    # A new login is a new sign-in, unaffected.
    (again,) = signed_in(site, committing_db, "carla@example.com")
    assert still_works(pooled_app, site, again) == (200, 200)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--email", "nobody@example.com"], "Error: no record has this address"),
        (["--email", "not an address"], "Error: invalid email address; "),
        ([], "give either --email ADDRESS or --all"),
        (["--all", "--email", "anna@example.com"], "give either --email ADDRESS or --all"),
    ],
)
def test_a_revoke_that_cannot_be_done_says_why_in_one_line(cli, committing_db, args, said):
    result = cli("sessions", "revoke", *args, ok=False)
    assert said in result.output
    assert "Traceback" not in result.output
    if args and args[0] == "--email":
        assert result.output.count("\n") == 1


def test_the_help_says_what_a_site_checking_tokens_itself_still_accepts(cli):
    text = " ".join(cli("sessions", "revoke", "--help").stdout.split())
    assert "refresh tokens are refused" in text and "/v1/me" in text
