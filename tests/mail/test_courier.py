"""Mail through the outbox to a real SMTP server on loopback: never lost, never sent for a
change that rolled back, never twice, in the person's language, as the site it is sent for
(its brand, its sender), with working links on that site's pages."""

import logging
import threading
import time

import psycopg
import pytest
from psycopg import sql

from identity.mail import enqueue
from identity.mail.courier import Courier, CourierSettings
from identity.mail.relay import Relay, parse_smtp_url
from identity.mail.render import LANGUAGES, TEMPLATES, Branding, Renderer
from identity.services.sites import MailingSite
from tests.mailsink import MailServer

pytestmark = pytest.mark.committing

# IDENTITY_MAIL_FROM: the service's own mail, and the address of a site without a sender.
DEFAULT_SENDER = "identity <no-reply@example.com>"
SENDER = "Copernica <news@copernica.com>"
PAGES = "https://www.copernica.com/account"
TOKEN = "tok_5e3r3t-T0ken_value"
COPERNICA = Branding("copernica.com", "Copernica", SENDER, PAGES)


@pytest.fixture
def db(committing_db):
    return committing_db


def a_site(db, name: str, **columns) -> MailingSite:
    """A site record as `identity sites create` leaves it (committed; emptied after the
    test), as a mailing flow finds it."""
    columns = {"name": name, **columns}
    row = db.execute(
        sql.SQL(
            "insert into sites ({}) values ({}) returning id, name, pages_url, language"
        ).format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(map(sql.Placeholder, columns)),
        ),
        columns,
    ).fetchone()
    return MailingSite(row["id"], row["name"], row["pages_url"] or "", row["language"])


@pytest.fixture
def copernica(db) -> MailingSite:
    return a_site(db, "copernica.com", brand="Copernica", sender=SENDER, pages_url=PAGES)


@pytest.fixture
def make_courier():
    """Couriers to the test's server, fast to retry; their SMTP sessions closed afterwards."""
    made: list[Courier] = []

    def make(server: MailServer, public_url: str | None = None, **settings) -> Courier:
        courier = Courier(
            Renderer(DEFAULT_SENDER, public_url),
            Relay(parse_smtp_url(server.url), timeout=2),
            CourierSettings(**{"retry_base_seconds": 0.05, "poll_seconds": 0.2, **settings}),
        )
        made.append(courier)
        return courier

    yield make
    for courier in made:
        courier.close()


@pytest.fixture
def queue(db, copernica):
    """Queue a mail (a verification, unless told) as copernica.com, unless told."""

    def queue(template="verify_email", to="anna@example.com", language="en", site=copernica, **v):
        values = v or {"token": TOKEN, "valid_hours": 24}
        with db.transaction():
            return enqueue(db, template, to, language, site, **values)

    return queue


def outbox_row(db, mail_id):
    return db.execute("select * from outbox where id = %s", (mail_id,)).fetchone()


def test_a_mail_arrives_with_both_parts_in_the_persons_language_and_a_working_link(
    db, mail_server, make_courier, queue
):
    mail_id = queue(language="nl", to="anna@example.com")
    assert make_courier(mail_server).deliver_due(db) == 1
    (message,) = mail_server.sink.wait_for(1)
    assert message["To"] == "anna@example.com"
    assert message["From"] == SENDER
    assert mail_server.sink.envelopes[0][0] == "news@copernica.com"
    assert message["Subject"] == "Bevestig je e-mailadres voor Copernica"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@copernica.com>") and message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    link = f"{PAGES}/verify-email?token={TOKEN}"
    assert link in text and f'href="{link}"' in html
    assert "aanmelding bij Copernica" in text and "aanmelding bij Copernica" in html
    assert "Bevestig" in text and "Mijn adres bevestigen" in html
    assert "werkt één keer" in text and "werkt één keer" in html

    row = outbox_row(db, mail_id)
    assert row["status"] == "sent" and row["sent_at"] and row["attempts"] == 1
    assert row["mail_values"] is None  # the token does not stay at rest
    assert row["recipient"] == "anna@example.com" and row["template"] == "verify_email"


def test_a_change_that_rolls_back_sends_nothing(db, mail_server, make_courier, copernica):
    with pytest.raises(RuntimeError), db.transaction():
        enqueue(
            db, "verify_email", "anna@example.com", "en", copernica, token=TOKEN, valid_hours=24
        )
        raise RuntimeError("the change failed")
    assert make_courier(mail_server).deliver_due(db) == 0
    assert db.execute("select count(*) as n from outbox").fetchone()["n"] == 0
    time.sleep(0.2)
    assert mail_server.sink.messages == []


def test_with_the_relay_down_mail_waits_and_goes_out_once_it_is_back(
    db, database_url, mail_server, make_courier, queue
):
    mail_server.stop()
    courier = make_courier(mail_server)
    stop = threading.Event()
    worker = threading.Thread(target=courier.run, args=(database_url, stop))
    worker.start()
    try:
        mail_id = queue()
        deadline = time.monotonic() + 10
        while outbox_row(db, mail_id)["attempts"] < 2:
            assert time.monotonic() < deadline, "no retries while the relay was down"
            time.sleep(0.05)
        row = outbox_row(db, mail_id)
        assert row["status"] == "queued" and "cannot be reached" in row["last_error"]
        mail_server.start()
        mail_server.sink.wait_for(1)
        deadline = time.monotonic() + 5
        while outbox_row(db, mail_id)["status"] != "sent":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(timeout=10)
    assert len(mail_server.sink.messages) == 1


def test_two_workers_deliver_200_mails_and_none_twice(db, database_url, mail_server, make_courier):
    with db.transaction():
        for n in range(200):
            enqueue(db, "test", f"p{n}@example.com", "en")
    stop = threading.Event()
    workers = [
        threading.Thread(
            target=make_courier(mail_server, batch_size=10).run, args=(database_url, stop)
        )
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        messages = mail_server.sink.wait_for(200, timeout=30)
        time.sleep(0.3)  # would a double arrive late?
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
    ids = [message["Message-ID"] for message in mail_server.sink.messages]
    assert len(ids) == len(set(ids)) == 200
    assert {m["To"] for m in messages} == {f"p{n}@example.com" for n in range(200)}
    counts = db.execute("select status, count(*) as n from outbox group by status").fetchall()
    assert counts == [{"status": "sent", "n": 200}]


def test_a_recipient_the_relay_refuses_for_good_fails_that_mail_only(
    db, mail_server, make_courier, queue
):
    mail_server.sink.refuse.add("gone@example.com")
    refused = queue(to="gone@example.com")
    fine = queue(to="here@example.com")
    make_courier(mail_server).deliver_due(db)
    mail_server.sink.wait_for(1)
    assert outbox_row(db, fine)["status"] == "sent"
    row = outbox_row(db, refused)
    assert row["status"] == "failed" and row["failed_at"]
    assert row["last_error"].startswith("550") and "no such user" in row["last_error"]
    # Its link (a live single-use token) is cleared at once; a mail without one is kept,
    # for an operator to retry.
    assert row["mail_values"] is None


def test_a_mail_tried_too_often_is_given_up_with_the_last_answer(
    db, mail_server, make_courier, queue
):
    mail_server.stop()
    mail_id = queue()
    courier = make_courier(mail_server, max_attempts=2, retry_base_seconds=0.001)
    courier.deliver_due(db)
    time.sleep(0.01)
    courier.deliver_due(db)
    row = outbox_row(db, mail_id)
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert "cannot be reached" in row["last_error"]


def test_hostile_values_are_escaped_and_cannot_add_headers(db, mail_server, make_courier, queue):
    hostile = '<script>alert(1)</script>"\r\nBcc: evil@example.net\r\n'
    queue("newsletter_confirm", newsletter=hostile, token=TOKEN)
    make_courier(mail_server).deliver_due(db)
    (message,) = mail_server.sink.wait_for(1)
    assert message["Bcc"] is None
    assert "\n" not in message["Subject"] and "evil@example.net" in message["Subject"]
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert mail_server.sink.envelopes[0][1] == ["anna@example.com"]


def test_a_subject_beyond_ascii_arrives_as_written(db, mail_server, make_courier, queue):
    queue("newsletter_confirm", language="nl", newsletter="Zoë’s nieuws — 日本", token=TOKEN)
    make_courier(mail_server).deliver_due(db)
    (message,) = mail_server.sink.wait_for(1)
    assert message["Subject"] == "Copernica: bevestig je aanmelding voor Zoë’s nieuws — 日本"


def test_an_address_beyond_ascii_is_delivered(db, mail_server, make_courier, queue):
    queue("test", to="zoë@exämple.com", site=None)
    make_courier(mail_server).deliver_due(db)
    (message,) = mail_server.sink.wait_for(1)
    assert mail_server.sink.envelopes[0][1] == ["zoë@xn--exmple-cua.com"]
    assert message["To"] == "zoë@exämple.com"


def test_a_running_worker_sends_within_a_second_of_the_commit(
    db, database_url, mail_server, make_courier, queue
):
    courier = make_courier(mail_server, poll_seconds=30)  # only a notification can wake it
    stop = threading.Event()
    worker = threading.Thread(target=courier.run, args=(database_url, stop))
    worker.start()
    try:
        time.sleep(0.3)  # listening
        committed = time.monotonic()
        queue()
        mail_server.sink.wait_for(1, timeout=5)
        assert time.monotonic() - committed < 1.0
    finally:
        stop.set()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("notify identity_outbox")  # wake it to see `stop`
        worker.join(timeout=10)


def test_no_log_line_shows_a_token_or_the_address(db, mail_server, caplog, make_courier, queue):
    caplog.set_level(logging.DEBUG)
    mail_server.sink.refuse.add("gone@example.com")
    queue(to="gone@example.com")
    courier = make_courier(mail_server)
    courier.deliver_due(db)
    log_only = Courier(Renderer(DEFAULT_SENDER), None)
    queue(to="anna@example.com")
    log_only.deliver_due(db)
    assert "mail written to the log" in caplog.text
    ours = [record for record in caplog.records if record.name.startswith("identity")]
    assert ours  # (the SMTP server's own debug lines are not the service's log)
    for record in ours:
        line = str(record.__dict__)
        assert TOKEN not in line and "gone@example.com" not in line
        assert "anna@example.com" not in line


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_every_template_renders_in_both_languages(template, language):
    values = {
        "token": TOKEN,
        "valid_hours": 24,
        "valid_minutes": 30,
        "valid_days": 7,
        "newsletter": "SMTPeter",
        "company": "Acme",
        "account": True,
        "turned_on": True,
        "provider": "Google",
        "new_account": True,
    }
    site = None if template == "test" else COPERNICA
    letter = Renderer(DEFAULT_SENDER).letter(template, language, values, site)
    assert letter.subject and "\n" not in letter.subject
    if site is not None:  # a person's mail says which site it is from, in words and links
        assert "Copernica" in letter.subject and "Copernica" in letter.text
        assert "Copernica" in letter.html
        assert "https://" not in letter.text or f"{PAGES}/" in letter.text
    assert letter.text.strip() and letter.html.startswith("<!doctype html>")
    assert f'lang="{language}"' in letter.html


def test_a_session_the_relay_closed_while_idle_costs_no_retry(db, make_courier, queue):
    server = MailServer(idle_timeout=0.5)
    server.start()
    try:
        courier = make_courier(server, connections=1)
        queue(to="first@example.com")
        assert courier.deliver_due(db) == 1
        time.sleep(1.5)  # the relay closes the kept session meanwhile
        second = queue(to="second@example.com")
        assert courier.deliver_due(db) == 1
        row = outbox_row(db, second)
        assert row["status"] == "sent" and row["attempts"] == 1
        assert sorted(m["To"] for m in server.sink.wait_for(2)) == [
            "first@example.com",
            "second@example.com",
        ]
    finally:
        server.stop()


def test_a_relay_that_takes_international_addresses_since_it_restarted_gets_them(
    db, make_courier, queue
):
    """The kept session remembers what the relay offered when it began: a relay that
    offers SMTPUTF8 since (an upgrade, a restart) is asked again before an international
    address is given up for good; one that still does not offer it fails the mail."""
    server = MailServer(smtputf8=False)
    server.start()
    try:
        courier = make_courier(server, connections=1)
        queue(to="first@example.com")
        assert courier.deliver_due(db) == 1
        refused = queue(to="jürgen@example.com")
        assert courier.deliver_due(db) == 1
        row = outbox_row(db, refused)
        assert row["status"] == "failed" and "SMTPUTF8" in row["last_error"]
        server.stop()  # the kept session is now the old relay's, and dead
        server.smtputf8 = True
        server.start()
        international = queue(to="straße@example.com")
        assert courier.deliver_due(db) == 1
        row = outbox_row(db, international)
        assert (row["status"], row["attempts"]) == ("sent", 1), row["last_error"]
        assert server.sink.wait_for(2)[-1]["To"] == "straße@example.com"
    finally:
        server.stop()


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_notice_of_a_taken_address_advises_what_its_holder_can_do(language):
    """An account signs in (or resets its password); a record without an account cannot
    reset a password it never had: it is told to sign up with the address."""
    renderer = Renderer(DEFAULT_SENDER)
    account = renderer.letter("email_change_attempt", language, {"account": True}, COPERNICA)
    record = renderer.letter("email_change_attempt", language, {"account": False}, COPERNICA)
    forgot = {"en": "forgot password", "nl": "wachtwoord vergeten"}[language]
    sign_up = {"en": "sign up with this address", "nl": "Meld je dan aan met dit adres"}[language]
    assert forgot in account.text and forgot in account.html and sign_up not in account.text
    assert sign_up in record.text and sign_up in record.html and forgot not in record.text


# --- as the site it is sent for -------------------------------------------------------


def test_each_mail_goes_out_as_its_own_site(db, mail_server, make_courier, queue, copernica):
    """One courier, two sites: each mail in its site's brand, from its sender, in its
    sender's domain, with its link on its site's pages."""
    smtpeter = a_site(
        db,
        "smtpeter.com",
        brand="SMTPeter",
        sender="SMTPeter <hello@smtpeter.com>",
        pages_url="https://smtpeter.com/my",
    )
    queue("password_reset", to="anna@example.com", token=TOKEN, valid_minutes=30)
    queue("password_reset", to="bob@example.com", site=smtpeter, token=TOKEN, valid_minutes=30)
    make_courier(mail_server).deliver_due(db)
    mails = {m["To"]: m for m in mail_server.sink.wait_for(2)}
    for to, brand, sender, pages in (
        ("anna@example.com", "Copernica", SENDER, PAGES),
        ("bob@example.com", "SMTPeter", "SMTPeter <hello@smtpeter.com>", "https://smtpeter.com/my"),
    ):
        message = mails[to]
        assert message["From"] == sender
        assert message["Subject"] == f"Set a new password for {brand}"
        assert message["Message-ID"].endswith(f"@{sender.partition('@')[2]}")
        text = message.get_body(("plain",)).get_content()
        assert f"{pages}/reset-password?token={TOKEN}" in text and f"the {brand} account" in text
    assert dict(mail_server.sink.envelopes) == {
        "news@copernica.com": ["anna@example.com"],
        "hello@smtpeter.com": ["bob@example.com"],
    }


def test_a_site_without_a_sender_mails_from_the_default_address_in_its_brand(
    db, mail_server, make_courier, queue
):
    mailerq = a_site(db, "mailerq.com", brand="MailerQ", pages_url="https://mailerq.com")
    queue("password_changed", site=mailerq, account=True)
    make_courier(mail_server).deliver_due(db)
    (message,) = mail_server.sink.wait_for(1)
    assert message["From"] == "MailerQ <no-reply@example.com>"
    assert message["Message-ID"].endswith("@example.com>")
    assert message["Subject"] == "Your MailerQ password was changed"


def test_a_site_without_a_brand_is_called_by_its_name(db, mail_server, make_courier, queue):
    plain = a_site(db, "example.org", sender="news@example.org", pages_url="https://example.org")
    queue("registration_attempt", site=plain, account=True)
    make_courier(mail_server).deliver_due(db)
    (message,) = mail_server.sink.wait_for(1)
    # A sender that names no one is named by the brand, here the site's name.
    (sender,) = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("example.org", "news@example.org")
    assert message["Subject"] == "Someone tried to sign up at example.org with your address"


def test_the_services_own_mail_is_from_mail_from_and_a_link_without_pages_is_never_sent(
    db, mail_server, make_courier, queue
):
    own = queue("test", to="ops@example.com", site=None)
    no_site = queue("verify_email", to="anna@example.com", site=None)
    make_courier(mail_server).deliver_due(db)
    (message,) = mail_server.sink.wait_for(1)
    assert (message["To"], message["From"]) == ("ops@example.com", DEFAULT_SENDER)
    assert message["Message-ID"].endswith("@example.com>")
    assert outbox_row(db, own)["status"] == "sent"
    row = outbox_row(db, no_site)
    assert row["status"] == "failed" and "no site with pages" in row["last_error"]


def test_a_mail_queued_before_sites_had_pages_goes_out_with_its_link_as_it_was_made(
    db, mail_server, make_courier, queue
):
    """An outbox row from before migration 0011 has no site: the courier of a service
    with IDENTITY_PUBLIC_URL sends it as it would have been sent then, rather than fail it
    at the upgrade."""
    old = queue("verify_email", to="anna@example.com", site=None)
    make_courier(mail_server, "https://id.example.com/").deliver_due(db)
    (message,) = mail_server.sink.wait_for(1)
    assert message["From"] == DEFAULT_SENDER
    text = message.get_body(("plain",)).get_content()
    assert "https://id.example.com/verify-email?token=" in text
    assert outbox_row(db, old)["status"] == "sent"


def test_a_mail_goes_out_as_its_site_is_when_it_is_sent(
    db, mail_server, make_courier, queue, copernica
):
    """The outbox keeps which site, not its settings: a site's new sender or pages count
    for its mails still queued."""
    queue()
    db.execute(
        "update sites set sender = 'Copernica <hello@copernica.nl>',"
        " pages_url = 'https://copernica.nl/account', brand = 'Copernica NL' where id = %s",
        (copernica.id,),
    )
    make_courier(mail_server).deliver_due(db)
    (message,) = mail_server.sink.wait_for(1)
    assert message["From"] == "Copernica <hello@copernica.nl>"
    assert message["Subject"] == "Confirm your email address for Copernica NL"
    text = message.get_body(("plain",)).get_content()
    assert f"https://copernica.nl/account/verify-email?token={TOKEN}" in text


def test_a_hostile_brand_is_escaped_and_cannot_add_headers(db, mail_server, make_courier, queue):
    """The site's settings are checked when they are set; were the database to hold worse,
    the brand still stays one line in the headers and text in the HTML."""
    hostile = a_site(
        db,
        "hostile.example",
        brand='<b>Evil</b>"\r\nBcc: evil@example.net',
        pages_url="https://hostile.example",
    )
    queue(site=hostile)
    make_courier(mail_server).deliver_due(db)
    (message,) = mail_server.sink.wait_for(1)
    assert message["Bcc"] is None
    assert "\n" not in message["Subject"] and "\n" not in message["From"]
    assert message["From"].addresses[0].addr_spec == "no-reply@example.com"
    html = message.get_body(("html",)).get_content()
    assert "<b>Evil" not in html and "&lt;b&gt;Evil" in html
    assert mail_server.sink.envelopes[0][1] == ["anna@example.com"]


def test_a_brand_beyond_ascii_arrives_as_written(db, mail_server, make_courier, queue):
    cafe = a_site(db, "cafe.example", brand="Zoë’s Café", pages_url="https://cafe.example")
    queue(site=cafe)
    make_courier(mail_server).deliver_due(db)
    (message,) = mail_server.sink.wait_for(1)
    assert message["From"].addresses[0].display_name == "Zoë’s Café"
    assert message["Subject"] == "Confirm your email address for Zoë’s Café"


def test_a_mail_whose_site_is_gone_fails_and_says_why(db, mail_server, make_courier, queue):
    gone = a_site(db, "gone.example", pages_url="https://gone.example")
    mail_id = queue(site=gone)
    db.execute("delete from sites where id = %s", (gone.id,))
    make_courier(mail_server).deliver_due(db)
    row = outbox_row(db, mail_id)
    assert row["status"] == "failed" and "no longer known" in row["last_error"]
