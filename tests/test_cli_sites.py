"""`identity sites ...`: a site is a record (brand, sender, pages, redirect URIs, language,
the lists it manages) and its keys have exactly the scopes named. Bad input is one line
and writes nothing."""

import json

import pytest
from click.testing import CliRunner

from identity.cli import main


def _count(conn, table: str) -> int:
    return conn.execute(f"select count(*) as n from {table}").fetchone()["n"]  # noqa: S608


def test_create_prints_a_key_with_exactly_the_scopes_named_on_its_last_line(cli, committing_db):
    result = cli("sites", "create", "copernica.com", "--scope", "users:read")
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("idsk_") and len(key) > 40
    row = committing_db.execute("select scopes, key_prefix from site_keys").fetchone()
    assert row["scopes"] == ["users:read"]
    assert key.startswith(row["key_prefix"])
    assert key not in cli("sites", "list").stdout
    assert key not in cli("sites", "list", "--json").stdout


def test_a_key_without_a_scope_is_refused(cli, committing_db):
    result = cli("sites", "create", "copernica.com", ok=False)
    assert "--scope" in result.output
    assert _count(committing_db, "sites") == 0


def test_a_site_is_a_record_shown_and_listed_as_text_and_json(cli):
    cli(
        "sites",
        "create",
        "smtpeter.com",
        "--scope",
        "auth",
        "--scope",
        "newsletters:smtpeter",
        "--brand",
        "SMTPeter",
        "--sender",
        "SMTPeter <no-reply@smtpeter.com>",
        "--pages",
        "https://www.smtpeter.com/account/",
        "--redirect-uri",
        "https://www.smtpeter.com/login/google",
        "--redirect-uri",
        "https://www.smtpeter.com/login/linkedin?x=1",
        "--language",
        "nl",
        "--list",
        "smtpeter",
    )
    shown = json.loads(cli("sites", "show", "smtpeter.com", "--json").stdout)
    assert {key: shown[key] for key in ("name", "brand", "sender", "pages", "language")} == {
        "name": "smtpeter.com",
        "brand": "SMTPeter",
        "sender": "SMTPeter <no-reply@smtpeter.com>",
        "pages": "https://www.smtpeter.com/account",
        "language": "nl",
    }
    assert shown["redirect_uris"] == [
        "https://www.smtpeter.com/login/google",
        "https://www.smtpeter.com/login/linkedin?x=1",
    ]
    assert shown["lists"] == ["smtpeter"]
    (key,) = shown["keys"]
    assert key["scopes"] == ["auth", "newsletters:smtpeter"] and key["revoked_at"] is None

    text = cli("sites", "show", "smtpeter.com").stdout
    assert "SMTPeter <no-reply@smtpeter.com>" in text and "newsletters:smtpeter" in text
    listed = json.loads(cli("sites", "list", "--json").stdout)
    assert [site["name"] for site in listed] == ["smtpeter.com"]
    assert "https://www.smtpeter.com/account" in cli("sites", "list").stdout


def test_update_sets_what_is_given_and_keeps_the_rest(cli):
    cli("sites", "create", "mailerq.com", "--scope", "auth", "--brand", "MailerQ")
    cli(
        "sites",
        "update",
        "mailerq.com",
        "--pages",
        "https://www.mailerq.com",
        "--list",
        "mailerq",
        "--redirect-uri",
        "https://www.mailerq.com/cb",
    )
    shown = json.loads(cli("sites", "show", "mailerq.com", "--json").stdout)
    assert (shown["brand"], shown["pages"], shown["lists"]) == (
        "MailerQ",
        "https://www.mailerq.com",
        ["mailerq"],
    )
    cli("sites", "update", "mailerq.com", "--no-lists", "--no-redirect-uris")
    shown = json.loads(cli("sites", "show", "mailerq.com", "--json").stdout)
    assert (shown["lists"], shown["redirect_uris"], shown["brand"]) == ([], [], "MailerQ")
    assert "no site" in cli("sites", "update", "nope.com", "--brand", "X", ok=False).output
    assert "no site" in cli("sites", "show", "nope.com", ok=False).output


def test_a_list_moves_to_the_site_that_takes_it_over(cli):
    cli("sites", "create", "copernica.com", "--scope", "auth", "--list", "copernica")
    cli("sites", "create", "smtpeter.com", "--scope", "auth", "--list", "copernica")
    listed = {
        site["name"]: site["lists"] for site in json.loads(cli("sites", "list", "--json").stdout)
    }
    assert listed == {"copernica.com": [], "smtpeter.com": ["copernica"]}


def test_revoke_revokes_one_key_or_all(cli, committing_db):
    first = cli("sites", "create", "mailerq.com", "--scope", "auth").stdout.splitlines()[-1]
    cli("sites", "create", "mailerq.com", "--scope", "auth")
    cli("sites", "revoke", "mailerq.com", "--key", first[:11])
    assert (
        committing_db.execute(
            "select count(*) as n from site_keys where revoked_at is null"
        ).fetchone()["n"]
        == 1
    )
    shown = json.loads(cli("sites", "show", "mailerq.com", "--json").stdout)
    assert [key["revoked_at"] is None for key in shown["keys"]] == [False, True]
    assert "revoked 1 key" in cli("sites", "revoke", "mailerq.com").stdout
    assert "no active key" in cli("sites", "revoke", "mailerq.com", ok=False).output


def test_create_names_every_scope_in_its_help():
    from identity.services.sites import SCOPES

    help_text = " ".join(CliRunner().invoke(main, ["sites", "create", "--help"]).output.split())
    assert all(scope in help_text for scope in SCOPES), help_text
    assert "newsletters:<list>" in help_text


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--scope", "all"], "unknown scope 'all'"),
        (["--scope", "newsletters:nope"], "unknown list 'nope'"),
        (["--scope", "newsletters:"], "unknown scope"),
        (["--scope", "auth", "--pages", "www.copernica.com"], "absolute http(s) URL"),
        (["--scope", "auth", "--pages", "ftp://copernica.com"], "absolute http(s) URL"),
        (["--scope", "auth", "--pages", "https://copernica.com/#x"], "fragment"),
        (["--scope", "auth", "--pages", "https://u:p@copernica.com"], "user name"),
        (["--scope", "auth", "--pages", "https://copernica.com/?a=1"], "query"),
        (["--scope", "auth", "--pages", "https://*.copernica.com"], "wildcard"),
        (["--scope", "auth", "--pages", "https://copernica.com/a b"], "spaces"),
        (["--scope", "auth", "--redirect-uri", "https://copernica.com/cb#frag"], "fragment"),
        (["--scope", "auth", "--redirect-uri", "https://*.copernica.com/cb"], "wildcard"),
        (["--scope", "auth", "--redirect-uri", "/relative/cb"], "absolute"),
        (["--scope", "auth", "--sender", "a@x.com, b@x.com"], "one address"),
        (["--scope", "auth", "--sender", "Copernica <not an address>"], "invalid email"),
        (["--scope", "auth", "--sender", "Evil\nBcc: x@y.z <a@x.com>"], "one line"),
        (["--scope", "auth", "--sender", "a@b.com (Copernica <ceo@copernica.com>)"], "no <, >"),
        (["--scope", "auth", "--sender", "jöhn@example.com"], "ASCII"),
        (["--scope", "auth", "--brand", ""], "1 to 100"),
        (["--scope", "auth", "--brand", "Copernica\u202e"], "one line"),
        (["--scope", "auth", "--list", "nope"], "unknown list nope"),
        (["--scope", "auth", "--language", "de"], "Invalid value"),
        (["--scope", "auth", "--list", "x", "--no-lists"], "exclude each other"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(cli, committing_db, args, said):
    result = cli("sites", "create", "copernica.com", *args, ok=False)
    assert said in result.output
    assert "Traceback" not in result.output
    assert _count(committing_db, "sites") == 0 and _count(committing_db, "site_keys") == 0
    assert "Not A Name" not in result.output


def test_a_bad_site_name_is_refused(cli):
    assert "site name" in cli("sites", "create", "Not A Name", "--scope", "auth", ok=False).output


def test_production_asks_for_https_pages_and_redirect_uris(committing_db):
    """What `sites create|update` check with IDENTITY_ENV=production (the command passes
    it on; a production database URL needs TLS, which the test database has not)."""
    from identity.errors import InvalidInput
    from identity.services.sites import SiteSettings, create_site
    from identity.store.transactions import UnitOfWork

    uow = UnitOfWork.of(committing_db)
    for settings in (
        SiteSettings(pages="http://www.copernica.com"),
        SiteSettings(redirect_uris=["http://www.copernica.com/cb"]),
    ):
        with pytest.raises(InvalidInput, match="https in production"):
            uow.run(
                lambda s=settings: create_site(uow, "copernica.com", ["auth"], s, production=True)
            )
    assert _count(committing_db, "sites") == 0
    key = uow.run(
        lambda: create_site(
            uow, "copernica.com", ["auth"], SiteSettings(pages="https://x.test"), production=True
        )
    )
    assert key.startswith("idsk_")
