"""One address, one record, whatever the case and whatever the database's locale."""

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from identity import create_app
from identity.db import PinnedDatabase
from identity.embedded import with_database
from identity.store import migrations
from tests.sites import site_key_for


@pytest.fixture(scope="module")
def c_locale_database(server_url, worker_id):
    """A database whose collation and character classes are those of the C locale, where
    PostgreSQL's lower() leaves every non-ASCII letter as it is."""
    name = f"identity_c_locale_{worker_id}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        conn.execute(
            sql.SQL(
                "create database {} template template0 encoding 'UTF8' lc_collate 'C' lc_ctype 'C'"
            ).format(sql.Identifier(name))
        )
    url = with_database(server_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        migrations.upgrade(conn)
    return url


@pytest.fixture(params=["server default", "C locale"])
def site(request, database_url, c_locale_database):
    url = database_url if request.param == "server default" else c_locale_database
    with (
        psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn,
        conn.transaction(force_rollback=True),
    ):
        if request.param == "C locale":
            ctype = conn.execute(
                "select datctype from pg_database where datname = current_database()"
            )
            assert ctype.fetchone()["datctype"] == "C"
        app = create_app({"DATABASE_URL": url}, database=PinnedDatabase(conn))
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {site_key_for(conn, 'x.example')}"
        yield client


SAME_PERSON = [
    ("İstanbul@example.com", "i\u0307stanbul@example.com"),
    ("ΣΑΣ@example.com", "σας@example.com"),
    ("ΣΑΣ@example.com", "σασ@example.com"),
    ("Anna@Example.COM", "anna@example.com"),
    ("anna@ΣΑΣ.gr", "anna@σασ.gr"),
    ("anna@xn--strae-oqa.de", "ANNA@STRAßE.DE"),
]

OTHER_PEOPLE = [
    # Different domains, with different owners, that case-folding would merge.
    ("anna@straße.de", "anna@strasse.de"),
    ("anna@σας.gr", "anna@σασ.gr"),
    ("İstanbul@example.com", "ISTANBUL@example.com"),
]


@pytest.mark.parametrize(("first", "second"), SAME_PERSON)
def test_two_spellings_of_one_address_are_one_record(site, first, second):
    made = site.post("/v1/profiles", json={"email": first, "source": "event"})
    assert made.status_code == 201, made.get_data(as_text=True)
    merged = site.post("/v1/profiles", json={"email": second, "source": "event"})
    assert merged.status_code == 200
    assert merged.get_json()["id"] == made.get_json()["id"]
    found = site.get("/v1/users", query_string={"email": second})
    assert found.get_json()["id"] == made.get_json()["id"]
    assert found.get_json()["email"].split("@")[0] == first.split("@")[0]  # as first given


@pytest.mark.parametrize(("first", "second"), OTHER_PEOPLE)
def test_addresses_that_only_fold_alike_are_two_records(site, first, second):
    made = site.post("/v1/profiles", json={"email": first, "source": "event"})
    other = site.post("/v1/profiles", json={"email": second, "source": "event"})
    assert (made.status_code, other.status_code) == (201, 201)
    assert made.get_json()["id"] != other.get_json()["id"]
    found = site.get("/v1/users", query_string={"email": second})
    assert found.get_json()["id"] == other.get_json()["id"]
