import json
import threading
import urllib.request
from datetime import UTC, datetime
from uuid import UUID

import pytest

from tests.api.liveserver import serving
from tests.api.problems import assert_problem
from tests.sites import site_key_for


def submit(client, **fields):
    return client.post("/v1/profiles", json={"source": "webinar", **fields})


def users(conn) -> list[dict]:
    return conn.execute("select * from users").fetchall()


def test_a_new_address_makes_a_minimal_record(site, conn):
    response = submit(site, email="Anna.Berg@Example.COM", first_name="Anna", last_name="Berg")
    assert response.status_code == 201
    record = response.get_json()
    assert record["email"] == "Anna.Berg@example.com"
    assert record["status"] == "minimal"
    assert record["first_name"] == "Anna" and record["last_name"] == "Berg"
    assert record["gender"] == "unspecified"
    assert record["registered_at"] is None
    assert UUID(record["id"]).version == 4
    assert response.headers["Location"] == f"/v1/users/{record['id']}"
    assert record.pop("outcome") == "created" and record.pop("filled") == [
        "first_name",
        "last_name",
    ]
    assert site.get(response.headers["Location"]).get_json() == record
    assert len(users(conn)) == 1


def test_timestamps_are_rfc3339_utc(site):
    record = submit(site, email="anna@example.com").get_json()
    for name in ("created_at", "updated_at"):
        assert record[name].endswith("Z")
        parsed = datetime.fromisoformat(record[name])
        assert parsed.utcoffset().total_seconds() == 0
        assert abs((datetime.now(UTC) - parsed).total_seconds()) < 60


def test_a_known_address_in_any_case_is_merged_filling_only_blanks(site, conn):
    first = submit(site, email="anna@example.com", first_name="Anna", gender="female").get_json()
    response = submit(
        site,
        email="ANNA@EXAMPLE.COM",
        source="event",
        first_name="Annie",
        last_name="Berg",
        gender="male",
        mobile="+31 6 12345678",
    )
    assert response.status_code == 200
    merged = response.get_json()
    assert merged["id"] == first["id"]
    assert merged["first_name"] == "Anna"
    assert merged["gender"] == "female"
    assert merged["last_name"] == "Berg"
    assert merged["mobile"] == "+31612345678"
    assert sorted(merged["filled"]) == ["last_name", "mobile"]
    assert len(users(conn)) == 1


def test_each_field_remembers_which_source_site_and_time_gave_it(site, conn):
    other = site_key_for(conn, "smtpeter.com")
    submit(site, email="anna@example.com", first_name="Anna")
    response = site.application.test_client().post(
        "/v1/profiles",
        json={"email": "anna@example.com", "source": "whitepaper", "last_name": "Berg"},
        headers={"Authorization": f"Bearer {other}"},
    )
    sources = response.get_json()["field_sources"]
    assert sources["email"]["source"] == "webinar" and sources["email"]["site"] == "copernica.com"
    assert sources["first_name"] == sources["email"]
    assert sources["last_name"]["source"] == "whitepaper"
    assert sources["last_name"]["site"] == "smtpeter.com"
    at = datetime.fromisoformat(sources["last_name"]["at"])
    assert abs((datetime.now(UTC) - at).total_seconds()) < 60


def test_a_value_the_person_entered_is_never_overwritten(site, conn):
    record = submit(site, email="anna@example.com").get_json()
    conn.execute(
        "update users set first_name = 'Anna', status = 'registered', registered_at = now()"
        " where id = %s",
        (record["id"],),
    )
    merged = submit(site, email="anna@example.com", first_name="Hacker").get_json()
    assert merged["first_name"] == "Anna"
    assert merged["status"] == "registered"
    assert merged["filled"] == []


def test_an_idn_address_is_one_record_in_unicode_or_punycode(site):
    first = submit(site, email="jan@bücher.example")
    second = submit(site, email="JAN@xn--bcher-kva.example")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.get_json()["email"] == "jan@bücher.example"
    assert second.get_json()["id"] == first.get_json()["id"]


def test_names_are_trimmed_and_blank_ones_fill_nothing(site):
    submit(site, email="anna@example.com", first_name="   ", last_name=" Berg ")
    record = submit(site, email="anna@example.com", first_name=" Anna").get_json()
    assert record["first_name"] == "Anna" and record["last_name"] == "Berg"
    assert record["filled"] == ["first_name"]


def test_phone_numbers_are_stored_in_e164(site):
    record = submit(
        site, email="anna@example.com", phone="020-123 4567", fax="+32 2 555 12 12", country="NL"
    ).get_json()
    assert record["phone"] == "+31201234567"
    assert record["fax"] == "+3225551212"


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"email": "not-an-address"}, ["email"]),
        ({"email": "anna@example.com", "phone": "12"}, ["phone"]),
        ({"email": "anna@example.com", "mobile": "06 12345678"}, ["mobile"]),
        ({"email": "anna@example.com", "gender": "robot"}, ["gender"]),
        ({"email": "anna@example.com", "country": "Netherlands"}, ["country"]),
        ({"email": "anna@example.com", "first_name": "A" * 101}, ["first_name"]),
        ({"email": "x", "phone": "12"}, ["email", "phone"]),
    ],
)
def test_bad_fields_are_named_and_nothing_is_written(site, conn, fields, bad):
    assert_problem(submit(site, **fields), 422, *bad)
    assert users(conn) == []


def test_a_bad_field_on_a_known_address_changes_nothing(site, conn):
    submit(site, email="anna@example.com")
    before = users(conn)
    assert_problem(submit(site, email="anna@example.com", first_name="A", phone="x"), 422)
    assert users(conn) == before


@pytest.mark.parametrize(
    "source",
    ["newsletter", "webinar", "whitepaper", "event", "invitation", "staff", "social", "import"],
)
def test_every_source_of_the_contract_is_taken(site, source):
    assert submit(site, email="anna@example.com", source=source).status_code in (200, 201)


def test_twenty_parallel_submissions_of_a_new_address_make_one_record(pooled_app, committing_db):
    key = site_key_for(committing_db, "copernica.com")
    barrier = threading.Barrier(20)
    statuses = []

    def post(base_url, n):
        request = urllib.request.Request(
            f"{base_url}/v1/profiles",
            data=json.dumps(
                {"email": "Race@Example.com", "source": "event", "first_name": f"N{n}"}
            ).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        barrier.wait()
        with urllib.request.urlopen(request, timeout=30) as response:
            statuses.append((response.status, json.load(response)["id"]))

    with serving(pooled_app) as base_url:
        threads = [threading.Thread(target=post, args=(base_url, n)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sorted(status for status, _ in statuses) == [200] * 19 + [201]
    assert len({user_id for _, user_id in statuses}) == 1
    rows = committing_db.execute("select first_name from users").fetchall()
    assert len(rows) == 1 and rows[0]["first_name"].startswith("N")


def test_the_language_of_mails_is_set_by_a_site_and_is_english_until_then(site):
    made = site.post("/v1/profiles", json={"email": "anna@example.com", "source": "event"})
    assert made.get_json()["language"] == "en"
    merged = site.post(
        "/v1/profiles", json={"email": "anna@example.com", "source": "event", "language": "nl"}
    )
    assert merged.get_json()["language"] == "nl" and merged.get_json()["filled"] == ["language"]
    refused = site.post(
        "/v1/profiles", json={"email": "bob@example.com", "source": "event", "language": "de"}
    )
    assert refused.status_code == 422 and "language" in refused.get_json()["errors"]


def test_a_key_that_may_only_write_learns_the_id_and_what_it_filled_not_the_record(app, conn):
    """The person registered on another site with their own names and phone: a key with
    only `profiles:write` submitting that address learns no more than it sent."""
    full = app.test_client()
    full.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {site_key_for(conn, 'smtpeter.com')}"
    full.post(
        "/v1/profiles",
        json={
            "email": "anna@example.com",
            "source": "event",
            "first_name": "Anna",
            "last_name": "Berg",
            "phone": "+31201234567",
            "gender": "female",
        },
    )
    writer = app.test_client()
    key = site_key_for(conn, "copernica.com", ["profiles:write"])
    writer.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    merged = writer.post(
        "/v1/profiles", json={"email": "Anna@Example.com", "source": "webinar", "infix": "van"}
    )
    assert merged.status_code == 200
    assert set(merged.get_json()) == {"id", "outcome", "filled"}
    assert merged.get_json()["outcome"] == "merged" and merged.get_json()["filled"] == ["infix"]
    assert "Anna" not in merged.get_data(as_text=True)
    assert "+31201234567" not in merged.get_data(as_text=True)
    created = writer.post("/v1/profiles", json={"email": "bob@example.com", "source": "event"})
    assert created.status_code == 201
    assert set(created.get_json()) == {"id", "outcome", "filled"}
    assert created.get_json()["outcome"] == "created"
    # With users:read, the whole record comes with it.
    reader = full.post("/v1/profiles", json={"email": "anna@example.com", "source": "event"})
    assert reader.get_json()["first_name"] == "Anna" and reader.get_json()["outcome"] == "merged"
