"""The newsletter service called as the HTTP face calls it, with a unit of work on the
test's rolled-back connection and a Principal: double opt-in, confirmations, one-clicks,
preferences through a link, links in bulk, and the export as a client reads it."""

import uuid

import pytest

from identity.config import load_config
from identity.errors import Conflict, InvalidInput, NotFound, TooManyRequests
from identity.security.unsubscribe_tokens import UnsubscribeTokens
from identity.services.newsletters import Consent, Newsletters
from identity.services.principal import Browser, LinkHolder, Principal, SiteCaller
from identity.services.subscriber_rows import CSV_HEADER
from identity.services.suppression import Suppression
from identity.store import newsletters as store
from identity.store.transactions import UnitOfWork
from tests.exports import csv_rows, ndjson_rows
from tests.outbox import mailed

ANNA = "anna@example.com"
UPDATES = "copernica-updates"  # subscribed at once
COPERNICA = "copernica"  # double opt-in
# The preferences page of every list: copernica.com's (`site`) manages them all.
PREFERENCES = "https://copernica.com/newsletters/preferences?token="


@pytest.fixture
def newsletters():
    """Built as identity.composition builds it, from the settings."""
    settings = load_config({"DATABASE_URL": "postgresql://unused"})
    return Newsletters(
        UnsubscribeTokens(settings["SECRET_KEY"], settings["UNSUBSCRIBE_KEY_ID"]),
        settings["PUBLIC_URL"],
        Suppression(settings["SECRET_KEY"]),
        confirm_hours=settings["NEWSLETTER_CONFIRM_HOURS"],
        catalog_seconds=settings["NEWSLETTER_CATALOG_SECONDS"],
    )


@pytest.fixture
def uow(conn):
    return UnitOfWork.of(conn)


@pytest.fixture
def site(conn):
    """copernica.com's key with the newsletters scope, for a browser it speaks for; the
    site manages every list, on its pages https://copernica.com."""
    row = conn.execute(
        "insert into sites (name, pages_url) values ('copernica.com', 'https://copernica.com')"
        " returning id"
    ).fetchone()
    conn.execute("update newsletters set site_id = %s", (row["id"],))
    caller = SiteCaller(
        row["id"],
        "copernica.com",
        uuid.uuid4(),
        frozenset({"newsletters"}),
        "https://copernica.com",
    )
    return Principal(site=caller, browser=Browser("203.0.113.7", "Mozilla/5.0 (Test)"))


def _link(user_id, list_id) -> Principal:
    return Principal(link=LinkHolder(user_id, list_id), browser=Browser("198.51.100.9", "Mail"))


def subscribe(newsletters, uow, site, key=UPDATES, address=ANNA, text="Yes, send me news"):
    consent = Consent.of(site, "form", text)
    return uow.run(lambda: newsletters.subscribe(uow, site, key, address, consent))


def confirm(newsletters, uow, site, token):
    return uow.run(lambda: newsletters.confirm(uow, site, token))


def _events(conn, user_id) -> list[tuple]:
    return [(e["newsletter"], e["action"], e["state"]) for e in store.consent_events(conn, user_id)]


def _list_id(conn, key) -> int:
    return next(n["id"] for n in store.catalog(conn) if n["key"] == key)


def _outbox_count(conn) -> int:
    return conn.execute("select count(*) as n from outbox").fetchone()["n"]


def test_a_double_opt_in_list_is_pending_and_mails_a_confirmation(newsletters, uow, site, conn):
    flag = subscribe(newsletters, uow, site, COPERNICA)
    assert flag["state"] == "pending" and flag["newsletter"] == COPERNICA
    mail = mailed(conn, ANNA, "newsletter_confirm")
    assert mail["newsletter"] == "Copernica newsletter" and mail["token"]
    user = conn.execute("select status, field_sources from users").fetchone()
    assert user["status"] == "minimal"  # a new address: a minimal record
    assert user["field_sources"]["email"]["source"] == "newsletter"
    assert user["field_sources"]["email"]["site"] == "copernica.com"
    assert _events(conn, flag["user_id"]) == [("copernica", "request", "pending")]
    event = store.consent_events(conn, flag["user_id"])[0]
    assert (event["site"], event["client_ip"], event["consent_text"]) == (
        "copernica.com",
        "203.0.113.7",
        "Yes, send me news",
    )


def test_a_list_without_double_opt_in_subscribes_at_once(newsletters, uow, site, conn):
    flag = subscribe(newsletters, uow, site)
    assert flag["state"] == "subscribed"
    assert _outbox_count(conn) == 0
    again = subscribe(newsletters, uow, site)
    assert again["state"] == "subscribed" and again["changed_at"] == flag["changed_at"]
    assert _events(conn, flag["user_id"]) == [("copernica-updates", "subscribe", "subscribed")]


def test_the_mailed_token_confirms_once_with_the_requests_consent(newsletters, uow, site, conn):
    user_id = subscribe(newsletters, uow, site, COPERNICA, text="form v3")["user_id"]
    token = mailed(conn, ANNA, "newsletter_confirm")["token"]
    from_the_link = site.with_browser(Browser("192.0.2.44", "Phone"))
    assert confirm(newsletters, uow, from_the_link, token)["state"] == "subscribed"
    confirmed = store.consent_events(conn, user_id)[-1]
    assert (confirmed["action"], confirmed["consent_text"], confirmed["client_ip"]) == (
        "confirm",
        "form v3",
        "192.0.2.44",
    )
    with pytest.raises(InvalidInput):
        confirm(newsletters, uow, site, token)
    with pytest.raises(InvalidInput):
        confirm(newsletters, uow, site, "never-mailed")
    assert len(store.consent_events(conn, user_id)) == 2


def test_a_refused_flag_comes_back_only_through_a_fresh_confirmation(newsletters, uow, site, conn):
    user_id = subscribe(newsletters, uow, site)["user_id"]
    link = _link(user_id, _list_id(conn, UPDATES))
    uow.run(lambda: newsletters.one_click(uow, link.link, Consent.of(link, "one-click")))
    again = subscribe(newsletters, uow, site)  # a list without double opt-in, even so
    assert again["state"] == "pending"
    token = mailed(conn, ANNA, "newsletter_confirm")["token"]
    assert store.flag_of(conn, user_id, _list_id(conn, UPDATES))["state"] == "pending"
    assert confirm(newsletters, uow, site, token)["state"] == "subscribed"


def test_leaving_after_the_mail_went_out_withdraws_its_link(newsletters, uow, site, conn):
    user_id = subscribe(newsletters, uow, site, COPERNICA)["user_id"]
    token = mailed(conn, ANNA, "newsletter_confirm")["token"]
    link = _link(user_id, _list_id(conn, COPERNICA))
    uow.run(lambda: newsletters.one_click(uow, link.link, Consent.of(link, "one-click")))
    # The transaction's clock stands still: the confirmation is made to look older.
    conn.execute("update newsletter_confirmations set created_at = now() - interval '1 minute'")
    with pytest.raises(InvalidInput):
        confirm(newsletters, uow, site, token)
    assert store.flag_of(conn, user_id, link.link.list_id)["state"] == "unsubscribed"


def test_confirmation_mails_are_limited_per_address_and_list(newsletters, uow, site, conn):
    for _ in range(3):
        subscribe(newsletters, uow, site, COPERNICA)
    with pytest.raises(TooManyRequests):
        subscribe(newsletters, uow, site, COPERNICA)
    assert _outbox_count(conn) == 3
    assert subscribe(newsletters, uow, site, "smtpeter")["state"] == "pending"


def test_an_unknown_list_is_not_found_and_writes_nothing(newsletters, uow, site, conn):
    with pytest.raises(NotFound):
        subscribe(newsletters, uow, site, "no-such-list")
    assert conn.execute("select count(*) as n from users").fetchone()["n"] == 0


def test_one_click_leaves_the_links_list_once(newsletters, uow, site, conn):
    user_id = subscribe(newsletters, uow, site)["user_id"]
    subscribe(newsletters, uow, site, "smtpeter")
    link = _link(user_id, _list_id(conn, UPDATES))
    consent = Consent.of(link, "one-click")
    first = uow.run(lambda: newsletters.one_click(uow, link.link, consent))
    assert first == {
        "newsletter": UPDATES,
        "name": "Copernica software updates",
        "email": "a***@e***.com",
        "state": "unsubscribed",
        "changed": True,
    }
    second = uow.run(lambda: newsletters.one_click(uow, link.link, consent))
    assert second == first | {"changed": False}
    leaving = [e for e in store.consent_events(conn, user_id) if e["action"] == "unsubscribe"]
    assert [(e["newsletter"], e["channel"], e["site"]) for e in leaving] == [
        (UPDATES, "one-click", None),  # no site: the link's holder
    ]
    assert leaving[0]["client_ip"] == "198.51.100.9"
    assert store.flag_of(conn, user_id, _list_id(conn, "smtpeter"))["state"] == "pending"


def test_a_link_for_a_record_that_is_gone_is_not_found(newsletters, uow, conn):
    link = _link(uuid.uuid4(), _list_id(conn, UPDATES))
    with pytest.raises(NotFound):
        uow.run(lambda: newsletters.one_click(uow, link.link, Consent.of(link, "one-click")))
    with pytest.raises(NotFound):
        newsletters.describe_link(uow, link.link)


def test_preferences_refuse_a_list_not_subscribed_and_change_nothing(newsletters, uow, site, conn):
    user_id = subscribe(newsletters, uow, site)["user_id"]
    link = _link(user_id, _list_id(conn, UPDATES))
    consent = Consent.of(link, "preference-page")
    before = _events(conn, user_id)
    with pytest.raises(InvalidInput) as refused:
        uow.run(
            lambda: newsletters.set_preferences(
                uow, link.link, {UPDATES: False, "smtpeter": True}, consent
            )
        )
    assert list(refused.value.errors) == ["newsletters.smtpeter"]
    assert _events(conn, user_id) == before  # not even the list set to false was left
    shown = uow.run(
        lambda: newsletters.set_preferences(
            uow, link.link, {UPDATES: True, "smtpeter": False}, consent
        )
    )
    states = {n["key"]: n["state"] for n in shown["newsletters"]}
    assert states[UPDATES] == "subscribed" and states["smtpeter"] == "unsubscribed"
    assert states[COPERNICA] is None and shown["email"] == "a***@e***.com"
    everything = uow.run(lambda: newsletters.set_preferences(uow, link.link, None, consent))
    assert {n["state"] for n in everything["newsletters"]} == {"unsubscribed"}
    assert newsletters.describe_link(uow, link.link)["state"] == "unsubscribed"


def test_links_in_bulk_for_known_addresses_and_ids_the_rest_unknown(newsletters, uow, site, conn):
    anna = subscribe(newsletters, uow, site)["user_id"]
    bob = subscribe(newsletters, uow, site, address="bob@example.com")["user_id"]
    nobody = uuid.uuid4()
    answer = newsletters.links(
        uow,
        site,
        UPDATES,
        ["Anna@Example.com", "carl@example.com", "not an address"],
        [bob, nobody],
    )
    assert answer["newsletter"] == UPDATES
    assert answer["unknown"] == ["carl@example.com", "not an address", str(nobody)]
    links = {link["given"]: link for link in answer["links"]}
    assert list(links) == ["Anna@Example.com", str(bob)]
    assert links["Anna@Example.com"]["email"] == ANNA
    for given, user_id in (("Anna@Example.com", anna), (str(bob), bob)):
        url = links[given]["unsubscribe_url"]
        assert url.startswith(newsletters.unsubscribe_base)
        assert links[given]["list_unsubscribe"] == f"<{url}>"
        token = url.removeprefix(newsletters.unsubscribe_base)
        assert newsletters.link_of(token) == (user_id, _list_id(conn, UPDATES))
        assert links[given]["preferences_url"] == PREFERENCES + token
    with pytest.raises(NotFound):
        newsletters.link_of("x" * 44)


def _subscribed(newsletters, uow, site, how_many) -> list[uuid.UUID]:
    ids = [
        subscribe(newsletters, uow, site, address=f"person{n}@example.com")["user_id"]
        for n in range(how_many)
    ]
    subscribe(newsletters, uow, site, COPERNICA, address="pending@example.com")
    return sorted(ids)


def test_the_export_is_every_subscriber_in_id_order_and_its_closing_line(newsletters, uow, site):
    ids = _subscribed(newsletters, uow, site, 5)
    text = b"".join(newsletters.export(uow, UPDATES, False, None, batch_size=2)).decode()
    assert text.endswith('{"complete":true,"rows":5}\n')
    rows = ndjson_rows(text)
    assert [row["user_id"] for row in rows] == [str(i) for i in ids]
    assert rows[0]["email"].startswith("person")
    token = rows[0]["unsubscribe_url"].removeprefix(newsletters.unsubscribe_base)
    assert newsletters.link_of(token)[0] == ids[0]
    assert rows[0]["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    assert rows[0]["preferences_url"] == PREFERENCES + token


def test_the_export_in_pages_and_as_csv(newsletters, uow, site):
    ids = _subscribed(newsletters, uow, site, 5)
    through, more = newsletters.export_page(uow, site, UPDATES, None, 2)
    assert (through, more) == (ids[1], True)
    page = b"".join(newsletters.export(uow, UPDATES, True, None, through)).decode()
    rows = csv_rows(CSV_HEADER + page)
    assert [row["user_id"] for row in rows] == [str(i) for i in ids[:2]]
    token = rows[0]["unsubscribe_url"].removeprefix(newsletters.unsubscribe_base)
    assert rows[0]["preferences_url"] == PREFERENCES + token
    assert newsletters.export_page(uow, site, UPDATES, ids[3], 2) == (None, False)
    rest = b"".join(newsletters.export(uow, UPDATES, True, ids[3])).decode()
    assert [row["user_id"] for row in csv_rows(CSV_HEADER + rest)] == [str(ids[4])]
    empty = b"".join(newsletters.export(uow, "mailerq", False, None)).decode()
    assert ndjson_rows(empty) == []


def test_a_list_without_a_site_with_pages_has_no_links_or_export(newsletters, uow, site, conn):
    """The preferences page is on the pages of the site that manages the list: without
    one, links and the export are refused before anything is read, saying what to set."""
    subscribe(newsletters, uow, site)
    conn.execute("update newsletters set site_id = null where key = %s", (UPDATES,))
    for refused in (
        lambda: newsletters.export_page(uow, site, UPDATES, None, None),
        lambda: newsletters.links(uow, site, UPDATES, [ANNA], None),
    ):
        with pytest.raises(Conflict, match=f"--list {UPDATES} --pages"):
            refused()
    pageless = conn.execute(
        "insert into sites (name) values ('smtpeter.com') returning id"
    ).fetchone()
    conn.execute("update newsletters set site_id = %s where key = %s", (pageless["id"], UPDATES))
    with pytest.raises(Conflict, match=r"identity sites update smtpeter\.com --pages"):
        newsletters.export_page(uow, site, UPDATES, None, None)
