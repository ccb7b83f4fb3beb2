"""Newsletters through the HTTP API: the catalog, subscribing with consent, double
opt-in, the export of unsubscribe links, links in bulk, the import's consents, the
signed-in person's flags and notification settings, and bad input."""

import json
import uuid

import psycopg
import pytest

from identity import create_app
from identity.api.guards import SERVICES
from identity.db import Database, PinnedDatabase
from identity.services import newsletters, subscriber_rows
from identity.services.sites import SiteSettings, update_site
from identity.store import newsletters as store
from identity.store.transactions import UnitOfWork
from schemas.newsletters import NEWSLETTER_KEYS
from tests.api.problems import assert_problem
from tests.api.test_accounts import as_user, login, mailed, sign_up
from tests.exports import csv_rows, ndjson_rows
from tests.sites import EVERY_LIST, site_key_for

KEYS = ["copernica", "copernica-updates", "copernica-partners", "smtpeter", "mailerq"]
CONSENT = {
    "text": "Yes, send me news (form v3)",
    "client_ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0 (Test)",
}
NDJSON = "application/x-ndjson"
# copernica.com (the `site` fixture's) manages every list, on its pages https://copernica.com.
PREFERENCES = "https://copernica.com/newsletters/preferences?token="


def subscribe(site, key="copernica-updates", email="anna@example.com", **extra):
    return site.post(
        f"/v1/newsletters/{key}/subscriptions",
        json={"email": email, "consent": extra.pop("consent", CONSENT), **extra},
    )


def events(conn, email="anna@example.com") -> list[dict]:
    return conn.execute(
        """
        select n.key, e.action, e.state, e.site, host(e.client_ip) as client_ip,
               e.user_agent, e.consent_text, e.channel, e.at
        from consent_events e join newsletters n on n.id = e.newsletter
        join users u on u.id = e.user_id where u.email = %s order by e.id
        """,
        (email,),
    ).fetchall()


def flags(conn, email="anna@example.com") -> dict:
    rows = conn.execute(
        "select n.key, s.state from subscriptions s join newsletters n on n.id = s.newsletter"
        " join users u on u.id = s.user_id where u.email = %s",
        (email,),
    ).fetchall()
    return {row["key"]: row["state"] for row in rows}


def test_the_catalog_has_the_five_lists(site):
    answer = site.get("/v1/newsletters")
    assert answer.status_code == 200
    lists = answer.get_json()
    assert [n["key"] for n in lists] == KEYS
    assert {n["key"]: n["double_opt_in"] for n in lists}["copernica-updates"] is False
    assert all(n["name"] and n["description"] and n["product"] for n in lists)


@pytest.mark.committing
def test_a_retired_list_is_refused_by_every_process_once_the_catalog_time_is_up(
    database_url, committing_db
):
    """Two processes (two apps, each with its own pool) on one database. Retiring a list
    deletes its catalog row (as its migration would, run by one of them): within
    IDENTITY_NEWSLETTER_CATALOG_SECONDS both refuse it, not only after a restart."""
    retired = committing_db.execute(
        "select * from newsletters where key = 'copernica-partners'"
    ).fetchone()
    key = site_key_for(committing_db, "copernica.com", lists=EVERY_LIST)
    now = [1000.0]
    databases, clients = [], []
    try:
        for _ in range(2):
            database = Database(database_url, min_size=1, max_size=2, timeout=5.0)
            databases.append(database)
            database.open()
            app = create_app(
                {"DATABASE_URL": database_url, "NEWSLETTER_CATALOG_SECONDS": 5}, database=database
            )
            app.extensions[SERVICES].clock = lambda: now[0]
            client = app.test_client()
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
            clients.append(client)

        def listed() -> list[bool]:
            keys = [[n["key"] for n in c.get("/v1/newsletters").get_json()] for c in clients]
            return ["copernica-partners" in each for each in keys]

        assert listed() == [True, True]
        committing_db.execute("delete from newsletters where id = %(id)s", retired)
        now[0] += 4.9
        assert listed() == [True, True]  # each still keeps the catalog it read
        now[0] += 0.2
        assert listed() == [False, False]
        for client in clients:
            body = assert_problem(subscribe(client, "copernica-partners"), 404)
            assert "copernica-partners" not in body["detail"]  # the lists it names are sent
    finally:
        for database in databases:
            database.close()
        committing_db.execute(
            "insert into newsletters (id, key, name, product, description, double_opt_in)"
            " values (%(id)s, %(key)s, %(name)s, %(product)s, %(description)s,"
            " %(double_opt_in)s) on conflict (id) do nothing",
            retired,
        )


def test_a_key_without_the_newsletters_scope_is_refused(app, conn):
    from tests.sites import site_key_for

    key = site_key_for(conn, "mailerq.com", ["users:read"])
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    assert_problem(client.get("/v1/newsletters"), 403)
    assert_problem(subscribe(client), 403)
    assert_problem(client.get("/v1/newsletters"), 403)


def test_subscribing_a_new_address_makes_a_minimal_record_and_a_consent_event(site, conn):
    answer = subscribe(site, email="Anna@Example.com")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["state"] == "subscribed" and body["newsletter"] == "copernica-updates"
    record = site.get(f"/v1/users/{body['user_id']}").get_json()
    assert record["status"] == "minimal"
    assert record["field_sources"]["email"]["source"] == "newsletter"
    (event,) = events(conn, record["email"])
    assert event | {"at": None} == {
        "key": "copernica-updates",
        "action": "subscribe",
        "state": "subscribed",
        "site": "copernica.com",
        "client_ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0 (Test)",
        "consent_text": "Yes, send me news (form v3)",
        "channel": "form",
        "at": None,
    }
    # Again: nothing changes, nothing is recorded.
    assert subscribe(site, email="anna@example.com").get_json()["state"] == "subscribed"
    assert len(events(conn, record["email"])) == 1


def test_double_opt_in_is_pending_until_the_mailed_token_confirms(site, conn):
    answer = subscribe(site, key="copernica")
    assert answer.get_json()["state"] == "pending"
    assert flags(conn) == {"copernica": "pending"}
    mail = mailed(conn, "anna@example.com", "newsletter_confirm")
    assert mail["newsletter"] == "Copernica newsletter"
    confirmed = site.post(
        "/v1/newsletters/confirm",
        json={"token": mail["token"], "client_ip": "198.51.100.9", "user_agent": "Phone"},
    )
    assert confirmed.status_code == 200
    assert confirmed.get_json()["state"] == "subscribed"
    assert [(e["action"], e["state"], e["client_ip"], e["consent_text"]) for e in events(conn)] == [
        ("request", "pending", "203.0.113.7", CONSENT["text"]),
        ("confirm", "subscribed", "198.51.100.9", CONSENT["text"]),
    ]
    # The token works once.
    again = site.post("/v1/newsletters/confirm", json={"token": mail["token"]})
    assert_problem(again, 422, "token")


@pytest.mark.parametrize("token", ["", "x" * 43, "nope", "\u0000", "a" * 101])
def test_a_bad_confirmation_token_is_refused(site, token):
    assert_problem(site.post("/v1/newsletters/confirm", json={"token": token}), 422, "token")


def test_an_unsubscribed_flag_comes_back_only_through_a_fresh_confirmation(site, conn, app):
    user_id = subscribe(site).get_json()["user_id"]
    tokens = app.extensions[SERVICES].newsletters.tokens
    assert site.post(f"/v1/unsubscribe/{tokens.sign(uuid.UUID(user_id), 2)}").status_code == 200
    assert flags(conn) == {"copernica-updates": "unsubscribed"}
    # A single opt-in list, but the flag was unsubscribed: pending and a mail.
    again = subscribe(site)
    assert again.get_json()["state"] == "pending"
    assert flags(conn) == {"copernica-updates": "pending"}
    # Asking again while pending does not subscribe either.
    assert subscribe(site).get_json()["state"] == "pending"
    token = mailed(conn, "anna@example.com", "newsletter_confirm")["token"]
    assert site.post("/v1/newsletters/confirm", json={"token": token}).status_code == 200
    assert flags(conn) == {"copernica-updates": "subscribed"}


def _requested_then_left(site, conn, app) -> str:
    """Anna asks for smtpeter (double opt-in), then leaves it by one-click; the token
    of the confirmation mailed before she left."""
    user_id = subscribe(site, key="smtpeter").get_json()["user_id"]
    token = mailed(conn, "anna@example.com", "newsletter_confirm")["token"]
    # The transaction's now() stands still: the request is dated a moment earlier.
    conn.execute("update newsletter_confirmations set created_at = created_at - interval '1 s'")
    link = app.extensions[SERVICES].newsletters.tokens.sign(uuid.UUID(user_id), 4)
    assert site.post(f"/v1/unsubscribe/{link}").status_code == 200
    return token


def test_leaving_the_list_voids_the_confirmation_links_mailed_before(site, conn, app):
    token = _requested_then_left(site, conn, app)
    assert_problem(site.post("/v1/newsletters/confirm", json={"token": token}), 422, "token")
    assert flags(conn) == {"smtpeter": "unsubscribed"}


def test_confirming_twice_over_two_links_changes_the_flag_once(site, conn):
    subscribe(site, key="smtpeter")
    subscribe(site, key="smtpeter")
    tokens = [
        row["mail_values"]["token"]
        for row in conn.execute("select mail_values from outbox order by id").fetchall()
    ]
    for token in tokens:
        answer = site.post("/v1/newsletters/confirm", json={"token": token})
        assert answer.status_code == 200 and answer.get_json()["state"] == "subscribed"
    assert [e["action"] for e in events(conn)] == ["request", "confirm"]


def test_confirmation_mails_are_limited_per_address_and_list(site, conn):
    for _ in range(3):
        assert subscribe(site, key="mailerq").status_code == 200
    assert_problem(subscribe(site, key="mailerq"), 429)
    assert subscribe(site, key="smtpeter").status_code == 200


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"email": "anna@example.com"}, ["consent"]),
        ({"email": "anna@example.com", "consent": {}}, ["consent.text"]),
        ({"email": "anna@example.com", "consent": {"text": ""}}, ["consent.text"]),
        ({"email": "anna@example.com", "consent": {"text": "ok\u0000"}}, ["consent.text"]),
        (
            {"email": "anna@example.com", "consent": {"text": "ok", "client_ip": "1.2.3"}},
            ["consent.client_ip"],
        ),
        (
            {"email": "anna@example.com", "consent": {"text": "ok", "\ud800": 1}},
            ["consent.\ufffd"],
        ),
        ({"email": "anna@example.com", "consent": "yes"}, ["consent"]),
        ({"email": "not an address", "consent": CONSENT}, ["email"]),
        ({"email": "a\ud800@example.com", "consent": CONSENT}, ["email"]),
        ({"email": ["anna@example.com"], "consent": CONSENT}, ["email"]),
        ({"email": "anna@example.com", "consent": CONSENT, "extra": 1}, ["extra"]),
    ],
)
def test_bad_subscriptions_are_refused_and_change_nothing(site, conn, body, fields):
    assert_problem(site.post("/v1/newsletters/copernica/subscriptions", json=body), 422, *fields)
    assert conn.execute("select count(*) as n from consent_events").fetchone()["n"] == 0
    assert conn.execute("select count(*) as n from users").fetchone()["n"] == 0


def test_the_browser_beside_the_consent_is_kept_with_it(site, conn):
    consent = {"text": CONSENT["text"]}
    answer = subscribe(site, consent=consent, client_ip="::ffff:192.0.2.8", user_agent="Beside")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    (event,) = events(conn)
    assert (event["client_ip"], event["user_agent"]) == ("192.0.2.8", "Beside")


def test_the_consents_own_browser_comes_before_the_one_beside_it(site, conn):
    answer = subscribe(site, client_ip="198.51.100.1", user_agent="Beside")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    (event,) = events(conn)
    assert (event["client_ip"], event["user_agent"]) == ("203.0.113.7", "Mozilla/5.0 (Test)")


def test_an_unknown_list_is_a_404_and_changes_nothing(site, conn):
    assert_problem(subscribe(site, key="nope"), 404)
    assert_problem(site.get("/v1/newsletters/nope/subscribers"), 404)
    assert_problem(
        site.post("/v1/newsletters/nope/unsubscribe-links", json={"emails": ["a@example.com"]}),
        404,
    )
    assert conn.execute("select count(*) as n from users").fetchone()["n"] == 0


# --- the export --------------------------------------------------------------------------


def _subscribers(site, conn, n: int) -> list[str]:
    for i in range(n):
        assert subscribe(site, email=f"p{i}@example.com").status_code == 200
    return sorted(str(row["id"]) for row in conn.execute("select id from users").fetchall())


def test_the_export_streams_every_subscriber_with_a_working_one_click_link(site, conn, app):
    ids = _subscribers(site, conn, 7)
    subscribe(site, key="copernica", email="pending@example.com")  # pending: not exported
    answer = site.get("/v1/newsletters/copernica-updates/subscribers")
    assert answer.status_code == 200 and answer.mimetype == NDJSON
    rows = ndjson_rows(answer.get_data(as_text=True))
    assert [row["user_id"] for row in rows] == ids
    tokens = app.extensions[SERVICES].newsletters.tokens
    for row in rows:
        url = row["unsubscribe_url"]
        assert url.startswith("http://127.0.0.1:8000/v1/unsubscribe/")
        token = url.rsplit("/", 1)[1]
        # PostgreSQL signs exactly as the service does.
        assert token == tokens.sign(uuid.UUID(row["user_id"]), 2)
        assert row["list_unsubscribe"] == f"<{url}>"
        assert row["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
        assert len(f"List-Unsubscribe: {row['list_unsubscribe']}") <= 998
        # The page of every flag, on the pages of the site that manages the list.
        assert row["preferences_url"] == f"{PREFERENCES}{token}"
    path = rows[0]["unsubscribe_url"].removeprefix("http://127.0.0.1:8000")
    assert site.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    after = site.get("/v1/newsletters/copernica-updates/subscribers").get_data(as_text=True)
    assert [row["user_id"] for row in ndjson_rows(after)] == ids[1:]


def test_the_export_resumes_after_a_user_id_and_takes_a_limit(site, conn, app, monkeypatch):
    ids = _subscribers(site, conn, 5)
    service = app.extensions[SERVICES].newsletters
    export = service.export
    # Batches of 2, so the keyset walks over several.
    monkeypatch.setattr(service, "export", lambda *a, **k: export(*a, **k, batch_size=2))
    whole = site.get("/v1/newsletters/copernica-updates/subscribers").get_data(as_text=True)
    assert [row["user_id"] for row in ndjson_rows(whole)] == ids
    rest = site.get(f"/v1/newsletters/copernica-updates/subscribers?after={ids[1]}&limit=2")
    assert [row["user_id"] for row in ndjson_rows(rest.get_data(as_text=True))] == ids[2:4]
    assert_problem(site.get("/v1/newsletters/copernica-updates/subscribers?after=nope"), 422)
    assert_problem(site.get("/v1/newsletters/copernica-updates/subscribers?limit=0"), 422)
    for odd in ("%2B2", "%202", "1_0", "%D9%A2", "2.0"):  # only ASCII digits are a number
        answer = site.get(f"/v1/newsletters/copernica-updates/subscribers?limit={odd}")
        assert_problem(answer, 422, "limit")


@pytest.mark.parametrize("accept", [NDJSON, "text/csv"])
def test_the_export_in_pages_links_each_to_the_next(site, conn, app, monkeypatch, accept):
    ids = _subscribers(site, conn, 5)
    service = app.extensions[SERVICES].newsletters
    export = service.export
    monkeypatch.setattr(service, "export", lambda *a, **k: export(*a, **k, batch_size=1))
    pages, url = [], "/v1/newsletters/copernica-updates/subscribers?limit=2"
    while url:
        answer = site.get(url, headers={"Accept": accept})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        text = answer.get_data(as_text=True)
        rows = csv_rows(text) if accept == "text/csv" else ndjson_rows(text)
        pages.append([row["user_id"] for row in rows])
        link = answer.headers.get("Link")
        url = link and link.removeprefix("<").removesuffix('>; rel="next"')
        if url:
            assert f"after={pages[-1][-1]}" in url and "limit=2" in url
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [user_id for page in pages for user_id in page] == ids
    # A page that holds the rest has no Link, however it was asked for.
    assert "Link" not in site.get("/v1/newsletters/copernica-updates/subscribers?limit=5").headers
    assert (
        "Link"
        not in site.get(
            f"/v1/newsletters/copernica-updates/subscribers?limit=2&after={ids[2]}"
        ).headers
    )
    assert "Link" not in site.get("/v1/newsletters/copernica-updates/subscribers").headers


def test_a_page_of_the_export_keeps_every_row_it_counted_when_others_subscribe(
    site, conn, app, monkeypatch
):
    """Found by a hostile round: a page was cut at `limit` after its end was found, so one
    who subscribed meanwhile with a lower id pushed a counted subscriber off the page."""
    ids = _subscribers(site, conn, 5)
    late = uuid.UUID(int=1)  # before every other id
    service = app.extensions[SERVICES].newsletters
    export_page = service.export_page

    def and_then_someone_subscribes(uow, *args):
        found = export_page(uow, *args)
        c = uow.one_statement
        c.execute(
            "insert into users (id, email, email_key) values (%s, 'late@example.com',"
            " 'late@example.com')",
            (late,),
        )
        c.execute(
            "insert into subscriptions (user_id, newsletter, state) values (%s, 2, 'subscribed')",
            (late,),
        )
        return found

    monkeypatch.setattr(service, "export_page", and_then_someone_subscribes)
    for limit in (5, 3):  # the whole rest (no next page), then a page with one after it
        answer = site.get(f"/v1/newsletters/copernica-updates/subscribers?limit={limit}")
        exported = [row["user_id"] for row in ndjson_rows(answer.get_data(as_text=True))]
        assert exported == [str(late), *ids[:limit]]
        assert ("Link" in answer.headers) == (limit < 5)
        conn.execute("delete from users where id = %s", (late,))


def test_batches_grow_with_short_addresses_and_every_row_comes(site, conn, app, monkeypatch):
    short = [f"p{i}@example.com" for i in range(6)]
    long = [f"{'x' * 200}{i}@example.com" for i in range(6)]
    for address in short + long:
        assert subscribe(site, email=address).status_code == 200
    # Room for two rows of the longest addresses, a dozen short ones.
    monkeypatch.setattr(newsletters, "_BATCH_BYTES", 600)
    monkeypatch.setattr(subscriber_rows, "_PART_ROWS", 3)
    asked = []
    ask = store.ask_for_subscriber_batch
    monkeypatch.setattr(
        store, "ask_for_subscriber_batch", lambda c, p: asked.append(p["limit"]) or ask(c, p)
    )
    rows = site.get("/v1/newsletters/copernica-updates/subscribers").get_data(as_text=True)
    exported = ndjson_rows(rows)
    expected = conn.execute("select id::text, email from users order by id").fetchall()
    assert [(r["user_id"], r["email"]) for r in exported] == [
        (row["id"], row["email"]) for row in expected
    ]
    # Lines made three at a time: each row still carries its own link.
    tokens = app.extensions[SERVICES].newsletters.tokens
    for row in exported:
        assert row["unsubscribe_url"].endswith("/" + tokens.sign(uuid.UUID(row["user_id"]), 2))
        assert row["list_unsubscribe"] == f"<{row['unsubscribe_url']}>"
    assert asked[0] == 2  # the first batch reckons with the longest addresses
    assert max(asked) > 2  # after short rows, more at a time


def test_the_export_as_csv_has_a_header_and_a_row_each(site, conn):
    subscribe(site, email="o'brien+news@example.com")
    answer = site.get(
        "/v1/newsletters/copernica-updates/subscribers", headers={"Accept": "text/csv"}
    )
    assert answer.mimetype == "text/csv"
    rows = csv_rows(answer.get_data(as_text=True))
    assert [row["email"] for row in rows] == ["o'brien+news@example.com"]
    assert rows[0]["list_unsubscribe"] == f"<{rows[0]['unsubscribe_url']}>"
    assert rows[0]["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    token = rows[0]["unsubscribe_url"].rsplit("/", 1)[1]
    assert rows[0]["preferences_url"] == f"{PREFERENCES}{token}"
    # The same fields as an NDJSON row, in the same order.
    ndjson = ndjson_rows(
        site.get("/v1/newsletters/copernica-updates/subscribers").get_data(as_text=True)
    )
    assert list(rows[0]) == list(ndjson[0]) and rows[0] == ndjson[0]


def test_an_empty_list_exports_nothing_but_its_closing_line(site):
    answer = site.get("/v1/newsletters/mailerq/subscribers")
    assert answer.status_code == 200 and answer.get_data() == b'{"complete":true,"rows":0}\n'
    answer = site.get("/v1/newsletters/mailerq/subscribers", headers={"Accept": "text/csv"})
    assert csv_rows(answer.get_data(as_text=True)) == []


def test_an_export_cut_by_the_database_has_no_closing_line(site, conn, app, monkeypatch):
    """A stream the database cut (a blip, a stop) must not look whole: HTTP/1.0 clients
    and proxies that remove chunking see only where it ends."""
    _subscribers(site, conn, 5)
    service = app.extensions[SERVICES].newsletters
    export = service.export

    def cut_after_two(*args, **kwargs):
        for n, piece in enumerate(export(*args, **kwargs, batch_size=2)):
            if n == 1:
                raise psycopg.OperationalError("terminating connection due to administrator")
            yield piece

    monkeypatch.setattr(service, "export", cut_after_two)
    got = b""
    with pytest.raises(psycopg.OperationalError):
        answer = site.get("/v1/newsletters/copernica-updates/subscribers", buffered=False)
        for piece in answer.response:
            got += piece
    assert got.count(b"\n") == 2 and b'"complete"' not in got


# --- links in bulk -----------------------------------------------------------------------


def test_links_in_bulk_by_address_or_id_the_unknown_listed(site, conn, app):
    user_id = subscribe(site).get_json()["user_id"]
    answer = site.post(
        "/v1/newsletters/smtpeter/unsubscribe-links",
        json={"emails": ["ANNA@example.com", "nobody@example.com", "not an address"]},
    )
    assert answer.status_code == 200
    body = answer.get_json()
    (link,) = body["links"]
    assert (link["given"], link["email"]) == ("ANNA@example.com", "anna@example.com")
    assert body["unknown"] == ["nobody@example.com", "not an address"]
    tokens = app.extensions[SERVICES].newsletters.tokens
    token = tokens.sign(uuid.UUID(user_id), 4)
    assert link["unsubscribe_url"].endswith(token)
    assert link["preferences_url"] == f"{PREFERENCES}{token}"
    by_id = site.post(
        "/v1/newsletters/smtpeter/unsubscribe-links",
        json={"user_ids": [user_id.upper(), str(uuid.UUID(int=1))]},
    ).get_json()
    assert by_id["links"] == [link | {"given": user_id}]
    assert by_id["unknown"] == [str(uuid.UUID(int=1))]
    both = site.post(
        "/v1/newsletters/smtpeter/unsubscribe-links",
        json={"emails": ["anna@example.com"], "user_ids": [user_id]},
    ).get_json()
    assert [one["given"] for one in both["links"]] == ["anna@example.com", user_id]
    assert {one["unsubscribe_url"] for one in both["links"]} == {link["unsubscribe_url"]}
    assert_problem(site.post("/v1/newsletters/smtpeter/unsubscribe-links", json={}), 422)
    assert_problem(site.post("/v1/newsletters/smtpeter/unsubscribe-links"), 400)


# Who the links are asked for, on the list `copernica` (double opt-in): only a subscriber
# (the flag `subscribed`) is on it; the others have a record or not.
_PEOPLE = {
    "subscriber": "sub@example.com",
    "pending": "pending@example.com",  # asked, never confirmed: anyone may ask for anyone
    "unsubscribed": "left@example.com",
    "on another list": "other@example.com",
    "record on no list": "minimal@example.com",
    "no record": "nobody@example.com",
}
_LINK_KEYS = {
    "every list": ["newsletters"],
    "the list alone": ["newsletters:copernica"],
    "every list and users:read": ["newsletters", "users:read"],
    "the list alone and users:read": ["newsletters:copernica", "users:read"],
}


def _the_people(site, conn) -> dict[str, str]:
    """Each of _PEOPLE in their state, by the name of their kind; their ids (a random one
    for the one with no record)."""
    for email in ("sub@example.com", "left@example.com"):
        subscribe(site, key="copernica", email=email)
        token = mailed(conn, email, "newsletter_confirm")["token"]
        assert site.post("/v1/newsletters/confirm", json={"token": token}).status_code == 200
    subscribe(site, key="copernica", email="pending@example.com")
    subscribe(site, key="copernica-updates", email="other@example.com")
    site.post("/v1/profiles", json={"email": "minimal@example.com", "source": "event"})
    links = site.post(
        "/v1/newsletters/copernica/unsubscribe-links", json={"emails": ["left@example.com"]}
    ).get_json()["links"]
    assert site.post(links[0]["unsubscribe_url"].split("8000", 1)[1]).status_code == 200
    ids = {}
    for kind, email in _PEOPLE.items():
        row = conn.execute("select id from users where email = %s", (email,)).fetchone()
        ids[kind] = str(row["id"] if row else uuid.uuid4())
    assert flags(conn, "sub@example.com") == {"copernica": "subscribed"}
    assert flags(conn, "left@example.com") == {"copernica": "unsubscribed"}
    assert flags(conn, "pending@example.com") == {"copernica": "pending"}
    return ids


@pytest.mark.parametrize("key", _LINK_KEYS)
@pytest.mark.parametrize("given", ["emails", "user_ids"])
def test_links_without_users_read_are_for_the_lists_subscribers_alone(site, conn, app, key, given):
    """Without `users:read` the links say nothing the list's export does not: a link for
    each subscriber, and everyone else in `unknown`, a record or not alike. With it, a
    link for every record, as a lookup would have it."""
    ids = _the_people(site, conn)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = (
        f"Bearer {site_key_for(conn, 'copernica.com', _LINK_KEYS[key])}"
    )
    path = "/v1/newsletters/copernica/unsubscribe-links"
    asked = list(_PEOPLE.values()) if given == "emails" else list(ids.values())
    kinds = dict(zip(asked, _PEOPLE, strict=True))
    answer = client.post(path, json={given: asked})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    linked = [kinds[link["given"]] for link in body["links"]]
    unknown = [kinds[one] for one in body["unknown"]]
    if "users:read" in key:
        assert linked == [kind for kind in _PEOPLE if kind != "no record"]
        assert unknown == ["no record"]
    else:
        assert linked == ["subscriber"]
        assert unknown == [kind for kind in _PEOPLE if kind != "subscriber"]
        (link,) = body["links"]
        assert link["user_id"] == ids["subscriber"]
        # Asked alone, a record on no list and no record get the same answer, but for
        # what was given.
        alone = [
            client.post(path, json={given: [asked[list(_PEOPLE).index(kind)]]})
            for kind in ("record on no list", "no record")
        ]
        texts = [
            a.get_data(as_text=True).replace(one, "GIVEN")
            for a, one in zip(alone, [a.get_json()["unknown"][0] for a in alone], strict=True)
        ]
        assert texts[0] == texts[1] and "GIVEN" in texts[0]


# --- the preferences page: on the pages of the site that manages the list ----------------


def test_the_preferences_page_is_on_the_pages_of_the_site_that_manages_the_list(site, conn, app):
    """Whoever asks, the page is the managing site's: smtpeter.com's list exported with
    copernica.com's key links to smtpeter.com's pages."""
    site_key_for(conn, "smtpeter.com", pages="https://www.smtpeter.com/my", lists=["smtpeter"])
    user_id = subscribe(site, key="smtpeter").get_json()["user_id"]
    confirmation = mailed(conn, "anna@example.com", "newsletter_confirm")["token"]
    assert site.post("/v1/newsletters/confirm", json={"token": confirmation}).status_code == 200
    subscribe(site)  # copernica-updates, at once
    token = app.extensions[SERVICES].newsletters.tokens.sign(uuid.UUID(user_id), 4)
    page = f"https://www.smtpeter.com/my/newsletters/preferences?token={token}"
    (row,) = ndjson_rows(site.get("/v1/newsletters/smtpeter/subscribers").get_data(as_text=True))
    assert row["preferences_url"] == page
    csv = site.get("/v1/newsletters/smtpeter/subscribers", headers={"Accept": "text/csv"})
    assert [row["preferences_url"] for row in csv_rows(csv.get_data(as_text=True))] == [page]
    links = site.post("/v1/newsletters/smtpeter/unsubscribe-links", json={"user_ids": [user_id]})
    assert [link["preferences_url"] for link in links.get_json()["links"]] == [page]
    # The other lists stay copernica.com's.
    (row,) = ndjson_rows(
        site.get("/v1/newsletters/copernica-updates/subscribers").get_data(as_text=True)
    )
    assert row["preferences_url"].startswith(PREFERENCES)


@pytest.mark.parametrize("accept", [NDJSON, "text/csv"])
def test_a_list_no_site_with_pages_manages_has_no_export_or_links_but_a_409(site, conn, accept):
    """Rows whose preferences page leads nowhere are refused whole, before a byte of the
    stream, with what to set; the same list then exports once it is set."""
    subscribe(site, key="mailerq")
    update = UnitOfWork.of(conn)
    others = [key for key in KEYS if key != "mailerq"]
    update.run(lambda: update_site(update, "copernica.com", SiteSettings(lists=others)))

    def refused(detail: str) -> None:
        answer = site.get("/v1/newsletters/mailerq/subscribers", headers={"Accept": accept})
        assert detail in assert_problem(answer, 409)["detail"]
        links = site.post(
            "/v1/newsletters/mailerq/unsubscribe-links", json={"emails": ["anna@example.com"]}
        )
        assert detail in assert_problem(links, 409)["detail"]

    refused("identity sites update SITE --list mailerq --pages https://")
    site_key_for(conn, "mailerq.com", lists=["mailerq"])  # with pages https://mailerq.com
    conn.execute("update sites set pages_url = null where name = 'mailerq.com'")
    refused("identity sites update mailerq.com --pages https://")
    conn.execute("update sites set pages_url = 'https://mailerq.com' where name = 'mailerq.com'")
    answer = site.get("/v1/newsletters/mailerq/subscribers", headers={"Accept": accept})
    assert answer.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"emails": []},
        {"emails": ["a@example.com"] * 1001},
        {"user_ids": [str(uuid.uuid4())] * 1001},
        {"emails": "a@example.com"},
        {"emails": [1]},
        {"emails": [None]},
        {"emails": ["a\u0000@example.com"]},
        {"emails": ["a\ud800@example.com"]},
        {"user_ids": ["nope"]},
        {"user_ids": [1]},
        {"emails": ["a@example.com"], "extra": True},
        [],
    ],
)
def test_bad_link_batches_are_refused(site, body):
    assert_problem(site.post("/v1/newsletters/copernica/unsubscribe-links", json=body), 422)


def test_a_huge_body_is_refused(site):
    emails = [f"p{i}@example.com" for i in range(100_000)]
    answer = site.post("/v1/newsletters/copernica/unsubscribe-links", json={"emails": emails})
    assert_problem(answer, 413)


# --- the import ----------------------------------------------------------------------------


def _import(site, lines):
    body = "".join(json.dumps(line) + "\n" for line in lines)
    answer = site.post("/v1/profiles/import", data=body.encode(), content_type=NDJSON)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return [json.loads(line) for line in answer.get_data(as_text=True).splitlines()]


def test_an_import_brings_consents_over_and_never_resubscribes(site, conn, app):
    old = {"consented_at": "2024-03-01T10:00:00Z", "consent_text": "old form v1"}
    report = _import(
        site,
        [
            {"email": "anna@example.com", "newsletters": {"copernica": old, "mailerq": old}},
            {"email": "bob@example.com", "newsletters": {"nope": old}},
            {
                "email": "carl@example.com",
                "newsletters": {
                    "smtpeter": {"consented_at": "2999-01-01T00:00:00Z", "consent_text": "x"}
                },
            },
            {"email": "dora@example.com", "newsletters": {"smtpeter": {"consent_text": "x"}}},
        ],
    )
    assert [line.get("status") for line in report[:4]] == [
        "created",
        "rejected",
        "rejected",
        "rejected",
    ]
    assert flags(conn) == {"copernica": "subscribed", "mailerq": "subscribed"}
    (first, _) = events(conn)
    assert first["channel"] == "import" and first["consent_text"] == "old form v1"
    assert (
        first["at"].isoformat() == "2024-03-01T10:00:00+00:00" and first["site"] == "copernica.com"
    )
    # Anna leaves mailerq; the same file again changes nothing.
    tokens = app.extensions[SERVICES].newsletters.tokens
    user_id = uuid.UUID(report[0]["id"])
    assert site.post(f"/v1/unsubscribe/{tokens.sign(user_id, 5)}").status_code == 200
    again = _import(
        site,
        [
            {"email": "anna@example.com", "newsletters": {"copernica": old, "mailerq": old}},
            {"email": "bob@example.com", "newsletters": {"mailerq": old}},
        ],
    )
    assert flags(conn) == {"copernica": "subscribed", "mailerq": "unsubscribed"}
    assert len(events(conn)) == 3
    # The report says which lists kept the flag the person had.
    assert again[0]["newsletters_kept"] == ["copernica", "mailerq"]
    assert again[1]["status"] == "created" and "newsletters_kept" not in again[1]


# --- the signed-in person ------------------------------------------------------------------


@pytest.fixture
def anna(site, conn, app):
    sign_up(site, conn)
    return as_user(app, login(site).get_json()["access_token"])


def test_the_signed_in_person_sets_their_own_flags(anna, conn):
    mine = anna.get("/v1/me/newsletters")
    assert mine.status_code == 200
    assert [(n["key"], n["subscribed"], n["state"]) for n in mine.get_json()] == [
        (key, False, None) for key in KEYS
    ]
    answer = anna.put("/v1/me/newsletters/copernica", json={"subscribed": True})
    assert answer.status_code == 200
    assert {n["key"]: n["subscribed"] for n in answer.get_json()}["copernica"] is True
    anna.put("/v1/me/newsletters/copernica", json={"subscribed": True})
    anna.put("/v1/me/newsletters/copernica", json={"subscribed": False})
    assert [(e["action"], e["channel"]) for e in events(conn)] == [
        ("subscribe", "preference-page"),
        ("unsubscribe", "preference-page"),
    ]
    assert_problem(anna.put("/v1/me/newsletters/nope", json={"subscribed": True}), 404)
    assert_problem(anna.put("/v1/me/newsletters/copernica", json={"subscribed": "maybe"}), 422)


def test_me_needs_a_user_token(site, client):
    assert_problem(site.get("/v1/me/newsletters"), 401)
    assert_problem(client.get("/v1/me/notifications"), 401)


def test_notification_settings_are_kept_apart_from_newsletters(anna, conn):
    defaults = anna.get("/v1/me/notifications")
    assert defaults.status_code == 200
    assert defaults.get_json()["smtpeter"]["quota-warning"] == ["in-app", "email"]
    changed = anna.put(
        "/v1/me/notifications",
        json={"smtpeter": {"quota-warning": ["push", "in-app"]}, "mailerq": {"queue-alert": []}},
    )
    assert changed.status_code == 200
    body = changed.get_json()
    assert body["smtpeter"]["quota-warning"] == ["in-app", "push"]
    assert body["mailerq"]["queue-alert"] == []
    assert body["smtpeter"]["invoice"] == ["in-app", "email"]
    assert anna.get("/v1/me/notifications").get_json() == body
    assert flags(conn) == {} and events(conn) == []
    for bad in (
        {"smtpeter": {"nope": ["email"]}},
        {"smtpeter": {"invoice": ["fax"]}},
        {"nope": {}},
        {"smtpeter": {"invoice": "email"}},
    ):
        assert_problem(anna.put("/v1/me/notifications", json=bad), 422)
    assert anna.get("/v1/me/notifications").get_json() == body


def test_an_address_the_record_should_never_hold_is_still_escaped_in_the_export(site, conn):
    # Written past the service's checks: quotes and a backslash, as no address it takes has.
    odd = 'odd"one\\x@example.com'
    user_id = conn.execute(
        "insert into users (email, email_key) values (%s, %s) returning id", (odd, odd)
    ).fetchone()["id"]
    conn.execute(
        "insert into subscriptions (user_id, newsletter, state) values (%s, 2, 'subscribed')",
        (user_id,),
    )
    subscribe(site, email="plain@example.com")
    ndjson = site.get("/v1/newsletters/copernica-updates/subscribers").get_data(as_text=True)
    emails = {row["email"] for row in ndjson_rows(ndjson)}
    assert emails == {odd, "plain@example.com"}
    text = site.get(
        "/v1/newsletters/copernica-updates/subscribers", headers={"Accept": "text/csv"}
    ).get_data(as_text=True)
    assert {row["email"] for row in csv_rows(text)} == emails


def test_an_address_a_spreadsheet_would_take_for_a_formula_is_defused_in_the_csv(site, conn):
    risky = ["=1+1@example.com", "+31@example.com", "-2+3@example.com"]
    for email in [*risky, "plain@example.com"]:
        assert subscribe(site, email=email).status_code == 200
    text = site.get(
        "/v1/newsletters/copernica-updates/subscribers", headers={"Accept": "text/csv"}
    ).get_data(as_text=True)
    cells = {row["email"] for row in csv_rows(text)}
    assert cells == {"'" + email for email in risky} | {"plain@example.com"}
    ndjson = site.get("/v1/newsletters/copernica-updates/subscribers").get_data(as_text=True)
    assert {row["email"] for row in ndjson_rows(ndjson)} >= set(risky)


def test_the_csv_escape_can_be_taken_back_so_two_people_stay_two(site, conn):
    """-x@ and '-x@ are two addresses: escaped, they must not read the same."""
    people = ["-x@example.com", "'-x@example.com", "'plain@example.com", "plain@example.com"]
    for email in people:
        assert subscribe(site, email=email).status_code == 200
    text = site.get(
        "/v1/newsletters/copernica-updates/subscribers", headers={"Accept": "text/csv"}
    ).get_data(as_text=True)
    cells = [row["email"] for row in csv_rows(text)]
    assert len(set(cells)) == 4
    assert sorted(cell.removeprefix("'") if cell[:1] == "'" else cell for cell in cells) == sorted(
        people
    )


def test_an_import_line_with_consent_needs_the_newsletters_scope(app, conn):
    """A key that may only write profiles cannot subscribe anyone, by import either."""
    key = site_key_for(conn, "profiles-only.example", ["profiles:write"])
    limited = app.test_client()
    limited.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    old = {"consented_at": "2024-03-01T10:00:00Z", "consent_text": "trust me"}
    report = _import(
        limited,
        [
            {"email": "anna@example.com", "newsletters": {"copernica": old}},
            {"email": "bob@example.com"},
        ],
    )
    assert [line["status"] for line in report[:2]] == ["rejected", "created"]
    assert "may not manage copernica" in report[0]["errors"]["newsletters"][0]
    assert conn.execute("select count(*) as n from subscriptions").fetchone()["n"] == 0
    assert conn.execute("select count(*) as n from consent_events").fetchone()["n"] == 0


def test_an_import_line_for_a_list_no_longer_sent_is_rejected_alone(site, conn):
    conn.execute("delete from newsletters where key = 'copernica-partners'")
    old = {"consented_at": "2024-03-01T10:00:00Z", "consent_text": "old form"}
    report = _import(
        site,
        [
            {"email": "anna@example.com", "newsletters": {"copernica-partners": old}},
            {"email": "bob@example.com", "newsletters": {"mailerq": old}},
        ],
    )
    assert [line["status"] for line in report[:2]] == ["rejected", "created"]
    assert report[0]["errors"] == {"newsletters": ["no longer sent: copernica-partners"]}
    assert flags(conn, "bob@example.com") == {"mailerq": "subscribed"}
    assert flags(conn) == {}


def test_a_bad_consent_in_an_import_line_is_named_by_its_path(site, conn):
    lines = [
        {
            "email": "anna@example.com",
            "newsletters": {"copernica": {"consented_at": "yesterday", "consent_text": "x"}},
        },
        {"email": "bob@example.com", "newsletters": {"nope": {"consent_text": "x"}}},
        {"email": "eve@example.com", "newsletters": {"mailerq": {"consent_text": "x"}}},
    ]
    report = _import(site, lines)[:-1]  # the summary line last
    assert [line["status"] for line in report] == ["rejected"] * 3
    assert list(report[0]["errors"]) == ["newsletters.copernica.consented_at"]
    assert report[1]["errors"] == {
        "newsletters": ['"nope": Must be one of: ' + ", ".join(NEWSLETTER_KEYS) + "."]
    }
    assert report[2]["errors"] == {
        "newsletters.mailerq.consented_at": ["Missing data for required field."]
    }
    assert conn.execute("select count(*) as n from consent_events").fetchone()["n"] == 0


@pytest.mark.parametrize(
    "at", ["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z", "1989-12-31T23:59:59Z"]
)
def test_an_import_refuses_a_consent_time_before_any_list_existed(site, conn, at):
    line = {
        "email": "anna@example.com",
        "newsletters": {"copernica": {"consented_at": at, "consent_text": "x"}},
    }
    report = _import(site, [line])
    assert report[0]["status"] == "rejected" and "consented_at" in json.dumps(report[0]["errors"])
    assert conn.execute("select count(*) as n from consent_events").fetchone()["n"] == 0


@pytest.mark.parametrize(
    "accept", ["text/csv; charset=utf-8", "text/csv;header=present", "text/csv, */*"]
)
def test_csv_asked_for_with_parameters_is_csv(site, accept):
    subscribe(site, email="plain@example.com")
    answer = site.get("/v1/newsletters/copernica-updates/subscribers", headers={"Accept": accept})
    assert answer.mimetype == "text/csv"


@pytest.mark.parametrize(
    ("accept", "answered"),
    [
        ("application/json", "application/x-ndjson"),
        ("text/csv;q=0, */*", "application/x-ndjson"),
        ("text/*", "text/csv"),
        ("", "application/x-ndjson"),
        ("application/x-ndjson;q=0, */*", "text/csv"),
        ("*/*", "application/x-ndjson"),
    ],
)
def test_the_export_answers_the_type_the_accept_header_takes(site, accept, answered):
    subscribe(site, email="plain@example.com")
    answer = site.get("/v1/newsletters/copernica-updates/subscribers", headers={"Accept": accept})
    assert answer.status_code == 200 and answer.mimetype == answered


@pytest.mark.parametrize("accept", ["application/xml", "text/csv;q=0", "text/html"])
def test_an_export_in_a_type_it_does_not_have_is_a_406(site, accept):
    answer = site.get("/v1/newsletters/copernica-updates/subscribers", headers={"Accept": accept})
    assert_problem(answer, 406)


def test_the_export_is_kept_by_no_cache(site):
    subscribe(site, email="plain@example.com")
    answer = site.get("/v1/newsletters/copernica-updates/subscribers")
    assert answer.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "text", ["   ", "\u200d", "\u0301", "\u0301\u200c", "\u2800", "\u064b", "\u0483", "\u3099"]
)
def test_consent_text_that_shows_nothing_is_refused(site, conn, text):
    answer = subscribe(site, consent={"text": text})
    assert answer.get_json()["errors"] == {"consent.text": ["Blank; send some text."]}
    assert conn.execute("select count(*) as n from consent_events").fetchone()["n"] == 0


def test_an_unknown_query_parameter_of_the_export_is_a_422_not_ignored(site):
    """`?limt=10` used to stream the whole list."""
    subscribe(site, email="plain@example.com")
    answer = site.get("/v1/newsletters/copernica-updates/subscribers?limt=10")
    assert_problem(answer, 422)


def test_a_withdrawn_confirmation_stays_withdrawn_when_a_later_request_is_pending(site, conn, app):
    first = _requested_then_left(site, conn, app)
    subscribe(site, key="smtpeter", consent=CONSENT | {"text": "the second form"})
    assert flags(conn) == {"smtpeter": "pending"}
    assert_problem(site.post("/v1/newsletters/confirm", json={"token": first}), 422, "token")
    second = mailed(conn, "anna@example.com", "newsletter_confirm")["token"]
    assert site.post("/v1/newsletters/confirm", json={"token": second}).status_code == 200
    assert events(conn)[-1]["consent_text"] == "the second form"


def test_a_persons_own_change_records_where_they_made_it(anna, conn):
    browser = {"client_ip": "203.0.113.9", "user_agent": "Mozilla/5.0 (Test)"}
    answer = anna.put("/v1/me/newsletters/mailerq", json={"subscribed": True, **browser})
    assert answer.status_code == 200
    event = events(conn)[-1]
    assert (str(event["client_ip"]), event["user_agent"]) == ("203.0.113.9", "Mozilla/5.0 (Test)")


def test_a_links_request_with_neither_emails_nor_ids_is_a_422(site):
    answer = site.post("/v1/newsletters/copernica/unsubscribe-links", json={})
    assert_problem(answer, 422)


def test_ids_in_a_body_are_uuids_as_the_service_writes_them(site, conn):
    (user_id,) = _subscribers(site, conn, 1)
    path = "/v1/newsletters/copernica-updates/unsubscribe-links"
    answer = site.post(path, json={"user_ids": [user_id.upper()]})
    assert answer.status_code == 200 and answer.get_json()["links"][0]["given"] == user_id
    for odd in (f"{{{user_id}}}", f"urn:uuid:{user_id}", user_id.replace("-", "")):
        assert_problem(site.post(path, json={"user_ids": [odd]}), 422, "user_ids.0")


def test_exports_nobody_reads_cannot_take_the_workers_memory(conn, database_url, site_key):
    """Each export holds a few MB while its client reads: past
    IDENTITY_MAX_EXPORTS_PER_WORKER at once, a new one is a 503 to retry, and the slot of
    one that ends (read, cut off, or never started) is free again."""
    app = create_app(
        {"DATABASE_URL": database_url, "MAX_EXPORTS_PER_WORKER": 2},
        database=PinnedDatabase(conn),
    )
    site = app.test_client()
    site.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {site_key}"
    _subscribers(site, conn, 3)
    url = "/v1/newsletters/copernica-updates/subscribers"
    unread = [site.get(url, buffered=False) for _ in range(2)]
    assert all(answer.status_code == 200 for answer in unread)
    refused = site.get(url)
    assert_problem(refused, 503)
    assert int(refused.headers["Retry-After"]) >= 1
    slots = app.extensions[SERVICES].exports
    assert slots.taken == 2
    unread[0].close()  # its client went away before reading a byte
    assert slots.taken == 1
    assert len(ndjson_rows(site.get(url).get_data(as_text=True))) == 3
    assert slots.taken == 1  # read to its end: given back
    unread[1].close()
    assert slots.taken == 0
