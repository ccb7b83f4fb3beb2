"""Minimal profiles called as the HTTP face calls them: a new address makes a record, a
known one is merged into by filling blanks only, every value remembers its source; and
the import writes checked lines a batch per commit, a bad line rejected alone."""

import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.rows import dict_row

from identity.errors import NotFound, TooManyRequests
from identity.services import profiles
from identity.services.principal import Principal, SiteCaller
from identity.services.submissions import Submission, check_line
from identity.services.suppression import Suppression
from identity.store.transactions import UnitOfWork

SUPPRESSION = Suppression("test secret, not for production")


def _site(name="copernica.com", scopes=("profiles:write",)) -> Principal:
    return Principal(site=SiteCaller(uuid.uuid4(), name, uuid.uuid4(), frozenset(scopes)))


def record(conn, data: dict, principal=None):
    uow = UnitOfWork.of(conn)
    return uow.run(lambda: profiles.record_profile(uow, principal or _site(), data, SUPPRESSION))


def test_a_new_address_makes_a_record_with_the_source_of_each_field(conn):
    user, outcome = record(
        conn,
        {
            "email": "Anna@Example.com",
            "source": "webinar",
            "first_name": "Anna",
            "gender": "unspecified",
            "phone": "020 123 4567",
            "country": "NL",
        },
    )
    assert outcome.status == "created" and outcome.user_id == user["id"]
    assert sorted(outcome.filled) == ["first_name", "phone"]  # unspecified says nothing
    assert (user["email"], user["first_name"], user["phone"]) == (
        "Anna@example.com",
        "Anna",
        "+31201234567",
    )
    assert user["gender"] == "unspecified" and user["status"] == "minimal"
    sources = user["field_sources"]
    assert set(sources) == {"email", "first_name", "phone"}
    assert sources["first_name"]["source"] == "webinar"
    assert sources["first_name"]["site"] == "copernica.com"
    assert datetime.strptime(sources["first_name"]["at"], "%Y-%m-%dT%H:%M:%SZ")


def test_a_known_address_fills_blanks_and_never_overwrites(conn):
    first, _ = record(
        conn, {"email": "anna@example.com", "source": "webinar", "first_name": "Anna"}
    )
    merged, outcome = record(
        conn,
        {
            "email": "ANNA@example.com",
            "source": "whitepaper",
            "first_name": "Annie",
            "last_name": "Jansen",
            "gender": "female",
        },
        _site("smtpeter.com"),
    )
    assert outcome.status == "merged" and outcome.user_id == first["id"] == merged["id"]
    assert sorted(outcome.filled) == ["gender", "last_name"]
    assert (merged["first_name"], merged["last_name"], merged["gender"]) == (
        "Anna",
        "Jansen",
        "female",
    )
    sources = merged["field_sources"]
    assert sources["first_name"]["source"] == "webinar"  # still the first one's
    assert (sources["last_name"]["source"], sources["last_name"]["site"]) == (
        "whitepaper",
        "smtpeter.com",
    )
    assert sources["email"] == first["field_sources"]["email"]
    _, again = record(conn, {"email": "anna@example.com", "source": "webinar", "first_name": "A"})
    assert again.status == "merged" and again.filled == ()
    assert conn.execute("select count(*) as n from users").fetchone()["n"] == 1


def test_a_record_is_found_by_id_or_address_or_not_at_all(conn):
    user, _ = record(conn, {"email": "anna@example.com", "source": "webinar"})
    uow = UnitOfWork.of(conn)
    assert profiles.get_user(uow, user["id"])["email"] == "anna@example.com"
    assert profiles.find_user_by_email(uow, "ANNA@example.com")["id"] == user["id"]
    with pytest.raises(NotFound):
        profiles.get_user(uow, uuid.uuid4())
    with pytest.raises(NotFound):
        profiles.find_user_by_email(uow, "bob@example.com")


def _line(n: int, email: str, **fields):
    return check_line(n, {"email": email, "source": "webinar", **fields})


def _emails(conn) -> set[str]:
    return {row["email"] for row in conn.execute("select email from users").fetchall()}


@pytest.mark.committing
def test_an_import_commits_a_batch_at_a_time_and_rejects_a_bad_line_alone(
    committing_db, database_url
):
    principal = _site()
    uow = UnitOfWork.of(committing_db)
    # A value every check let through but the database refuses: that line alone fails.
    unstorable = (3, Submission("carl@example.com", "webinar", {"gender": "robot"}), None)
    batches = [
        [_line(1, "anna@example.com"), _line(2, "not an address")],
        [unstorable, _line(4, "dave@example.com", first_name="Dave")],
    ]
    with (
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as observer,
        profiles.exclusive_import(uow, principal),
    ):
        written = profiles.import_profiles(uow, principal, iter(batches), SUPPRESSION)
        assert [next(written).status, next(written).status] == ["created", "rejected"]
        assert _emails(observer) == {"anna@example.com"}  # the first batch, committed
        rest = list(written)
    assert [(o.ref, o.status) for o in rest] == [(3, "rejected"), (4, "created")]
    assert rest[0].errors == {"line": ["not storable (23514)"]}
    assert _emails(committing_db) == {"anna@example.com", "dave@example.com"}


def test_a_rejected_line_says_why(conn):
    uow = UnitOfWork.of(conn)
    (outcome,) = profiles.import_profiles(uow, _site(), [[_line(7, "not an address")]], SUPPRESSION)
    assert (outcome.ref, outcome.status, outcome.user_id) == (7, "rejected", None)
    assert list(outcome.errors) == ["email"]


def test_consent_lines_need_the_newsletters_scope_and_a_list_still_sent(conn):
    at = datetime(2022, 5, 6, tzinfo=UTC)
    consent = {"consented_at": at, "consent_text": "old form"}
    lines = [
        _line(1, "anna@example.com", newsletters={"smtpeter": consent}),
        _line(2, "bob@example.com", newsletters={"retired-list": consent}),
        _line(3, "carl@example.com"),
    ]
    uow = UnitOfWork.of(conn)
    refused = list(profiles.import_profiles(uow, _site(), [lines[:1]], SUPPRESSION))
    assert refused[0].status == "rejected" and list(refused[0].errors) == ["newsletters"]
    allowed = _site(scopes=("profiles:write", "newsletters"))
    outcomes = list(profiles.import_profiles(uow, allowed, [lines], SUPPRESSION))
    assert [o.status for o in outcomes] == ["created", "rejected", "created"]
    events = conn.execute("select channel, at, site from consent_events").fetchall()
    assert [(e["channel"], e["at"], e["site"]) for e in events] == [
        ("import", at, "copernica.com"),
    ]


def test_a_second_import_of_the_same_site_is_refused_while_one_runs(conn, database_url):
    principal = _site()
    with (
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as other,
        profiles.exclusive_import(UnitOfWork.of(conn), principal),
    ):
        with (
            pytest.raises(TooManyRequests),
            profiles.exclusive_import(UnitOfWork.of(other), principal),
        ):
            pass  # pragma: no cover - refused before
        with profiles.exclusive_import(UnitOfWork.of(other), _site("smtpeter.com")):
            pass
    with profiles.exclusive_import(UnitOfWork.of(conn), principal):
        pass  # let go when the first ended
