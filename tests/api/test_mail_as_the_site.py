"""A person's mail goes out as the site they used: in its brand, from its sender, with its
link on its pages, in its language for people who chose none. Each kind of mail is
started through the API with one site's key (or by a person signed in through it),
delivered by the courier to a real SMTP server, read as the person reads it, and its link
followed as the site's page would follow it. A site without pages is refused before
anything is written."""

import re
from dataclasses import dataclass

import pytest
from psycopg import sql

from identity.mail.courier import Courier, CourierSettings
from identity.mail.relay import Relay, parse_smtp_url
from identity.mail.render import Renderer
from identity.services.sites import SCOPES, SiteSettings, create_site
from identity.store.transactions import UnitOfWork
from tests.api.problems import assert_problem
from tests.api.test_accounts import BROWSER, OTHER_PASSWORD, PASSWORD
from tests.sites import site_key_for

# IDENTITY_MAIL_FROM: no mail of a person's flow goes out from it.
MAIL_FROM = "identity <no-reply@identity.example>"


@dataclass(frozen=True)
class Site:
    name: str
    brand: str
    sender: str
    pages: str
    language: str


COPERNICA = Site(
    "copernica.com",
    "Copernica",
    "Copernica <news@copernica.com>",
    "https://www.copernica.com/account",
    "en",
)
SMTPETER = Site(
    "smtpeter.com", "SMTPeter", "SMTPeter Team <team@smtpeter.com>", "https://my.smtpeter.com", "nl"
)
SITES = {site.name: site for site in (COPERNICA, SMTPETER)}


@pytest.fixture
def sites(app, conn) -> dict:
    """A client with each site's key, by site name; the two differ in every setting."""
    clients = {}
    for site in SITES.values():
        key = site_key_for(
            conn,
            site.name,
            pages=site.pages,
            brand=site.brand,
            sender=site.sender,
            language=site.language,
        )
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        clients[site.name] = client
    return clients


@pytest.fixture
def deliver(conn, mail_server):
    """Sends what is due through a courier (as `identity mail deliver` would) to the test's
    SMTP server; the mails that arrived this time, by recipient."""
    courier = Courier(
        Renderer(MAIL_FROM),
        Relay(parse_smtp_url(mail_server.url), timeout=5),
        CourierSettings(connections=1),
    )
    seen = [0]

    def deliver() -> dict[str, list]:
        sent = courier.deliver_due(conn)
        arrived = mail_server.sink.wait_for(seen[0] + sent)[seen[0] :]
        seen[0] += len(arrived)
        by_recipient: dict[str, list] = {}
        for message in arrived:
            by_recipient.setdefault(message["To"], []).append(message)
        return by_recipient

    yield deliver
    courier.close()


@dataclass(frozen=True)
class Read:
    """A mail as its reader sees it: who it is from, what it says, in which language."""

    sender: str
    subject: str
    text: str
    html: str
    language: str

    def token(self, site: Site, path: str) -> str:
        """The token of the mail's link, which must be on `site`'s pages at `path`, in the
        text and in the HTML alike."""
        found = re.search(re.escape(f"{site.pages}{path}?token=") + r"([\w-]+)", self.text)
        assert found, f"no link to {site.pages}{path} in:\n{self.text}"
        assert f'href="{site.pages}{path}?token={found[1]}"' in self.html
        return found[1]


def read(message) -> Read:
    return Read(
        message["From"],
        message["Subject"],
        message.get_body(("plain",)).get_content(),
        message.get_body(("html",)).get_content(),
        message["Content-Language"],
    )


def one_mail(delivered: dict, to: str, site: Site) -> Read:
    """The one mail `to` got, which must be `site`'s from end to end: its sender (envelope
    and From, Message-ID in its domain), its brand in the subject and the text."""
    (message,) = delivered.pop(to)
    mail = read(message)
    assert mail.sender == site.sender
    assert message["Message-ID"].endswith(f"@{site.sender.partition('@')[2]}")
    assert site.brand in mail.subject and site.brand in mail.text and site.brand in mail.html
    other = next(s for s in SITES.values() if s != site)
    assert other.pages not in mail.text and other.sender not in mail.text
    return mail


def sign_up(client, deliver, site: Site, email="anna@example.com", **fields) -> dict:
    """An account made through `client` (`site`'s), its verification mail followed."""
    body = {"email": email, "password": PASSWORD, **BROWSER, **fields}
    assert client.post("/v1/auth/register", json=body).status_code == 202
    token = one_mail(deliver(), email, site).token(site, "/verify-email")
    answer = client.post("/v1/auth/verify-email", json={"token": token})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def signed_in(app, client, email="anna@example.com", password=PASSWORD):
    """A client with the access token of a login through `client`'s site."""
    login = client.post("/v1/auth/login", json={"email": email, "password": password, **BROWSER})
    assert login.status_code == 200, login.get_data(as_text=True)
    person = app.test_client()
    person.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {login.get_json()['access_token']}"
    return person


# --- each kind of mail, as each site ----------------------------------------------------


@pytest.mark.parametrize("name", SITES)
def test_the_verification_mail_is_the_registering_sites_in_its_language(sites, deliver, conn, name):
    """A person who chose no language gets the site's; one who did, their own."""
    site, client = SITES[name], sites[name]
    body = {"email": "anna@example.com", "password": PASSWORD, **BROWSER}
    assert client.post("/v1/auth/register", json=body).status_code == 202
    mail = one_mail(deliver(), "anna@example.com", site)
    assert mail.language == site.language
    token = mail.token(site, "/verify-email")
    assert client.post("/v1/auth/verify-email", json={"token": token}).status_code == 200
    chose = {"email": "bob@example.com", "password": PASSWORD, "language": "en", **BROWSER}
    assert client.post("/v1/auth/register", json=chose).status_code == 202
    assert one_mail(deliver(), "bob@example.com", site).language == "en"


@pytest.mark.parametrize("name", SITES)
def test_the_notice_of_a_second_sign_up_is_the_sites_that_was_used(sites, deliver, name):
    """Signed up through one site, registered again through each: the notice is from the
    site where it was tried."""
    sign_up(sites["copernica.com"], deliver, COPERNICA)
    body = {"email": "anna@example.com", "password": OTHER_PASSWORD, **BROWSER}
    assert sites[name].post("/v1/auth/register", json=body).status_code == 202
    mail = one_mail(deliver(), "anna@example.com", SITES[name])
    assert "?token=" not in mail.text  # a notice carries no link


@pytest.mark.parametrize("name", SITES)
def test_the_link_to_choose_a_password_is_on_the_proving_sites_pages(sites, deliver, name):
    """Two registrations with different passwords: proving the address takes neither and
    mails a link to choose one, as the site whose page proved it."""
    site, client = SITES[name], sites[name]
    for password in (PASSWORD, OTHER_PASSWORD):
        body = {"email": "anna@example.com", "password": password, **BROWSER}
        assert client.post("/v1/auth/register", json=body).status_code == 202
    first, _ = deliver()["anna@example.com"]
    token = read(first).token(site, "/verify-email")
    assert client.post("/v1/auth/verify-email", json={"token": token}).status_code == 200
    mail = one_mail(deliver(), "anna@example.com", site)
    chosen = {
        "token": mail.token(site, "/reset-password"),
        "new_password": "a brand new 77 tune",
        **BROWSER,
    }
    assert client.post("/v1/auth/password-reset/confirm", json=chosen).status_code == 204


@pytest.mark.parametrize("name", SITES)
def test_a_reset_link_and_the_notice_after_it_are_the_asking_sites(sites, deliver, name):
    """The account was made through copernica.com; the reset is asked through each site,
    and that site's is every mail of it."""
    site, client = SITES[name], sites[name]
    sign_up(sites["copernica.com"], deliver, COPERNICA)
    asked = client.post("/v1/auth/password-reset", json={"email": "anna@example.com", **BROWSER})
    assert asked.status_code == 202
    token = one_mail(deliver(), "anna@example.com", site).token(site, "/reset-password")
    reset = {"token": token, "new_password": OTHER_PASSWORD, **BROWSER}
    assert client.post("/v1/auth/password-reset/confirm", json=reset).status_code == 204
    notice = one_mail(deliver(), "anna@example.com", site)
    assert "?token=" not in notice.text


@pytest.mark.parametrize("name", SITES)
def test_a_signed_in_persons_mails_are_the_site_they_signed_in_through(
    app, sites, deliver, conn, name
):
    """Made through copernica.com, signed in through each site: the change of password's
    notice and the change of address's link and notice are that site's."""
    site = SITES[name]
    sign_up(sites["copernica.com"], deliver, COPERNICA)
    person = signed_in(app, sites[name])
    change = {"current_password": PASSWORD, "new_password": OTHER_PASSWORD, **BROWSER}
    assert person.put("/v1/me/password", json=change).status_code == 204
    one_mail(deliver(), "anna@example.com", site)

    assert (
        person.post(
            "/v1/me/email",
            json={"new_email": "anna@work.example", "current_password": OTHER_PASSWORD, **BROWSER},
        ).status_code
        == 202
    )
    delivered = deliver()
    notice = one_mail(delivered, "anna@example.com", site)  # to the old address
    notice.token(site, "/email-change-undo")  # with the link that undoes it, on its pages
    token = one_mail(delivered, "anna@work.example", site).token(site, "/email-change")
    # The site's page at /email-change proves the new address with the API.
    moved = sites[name].post("/v1/auth/verify-email", json={"token": token})
    assert moved.status_code == 200 and moved.get_json()["email"] == "anna@work.example"
    # The old address hears that it happened, with the link that undoes it.
    done = one_mail(deliver(), "anna@example.com", site)
    undo = done.token(site, "/email-change-undo")
    undone = sites[name].post("/v1/auth/email-change/undo", json={"token": undo})
    assert undone.status_code == 200 and undone.get_json()["email"] == "anna@example.com"
    one_mail(deliver(), "anna@example.com", site).token(site, "/reset-password")


@pytest.mark.parametrize("name", SITES)
def test_the_holder_of_an_address_asked_for_hears_it_from_the_asking_site(
    app, sites, deliver, name
):
    site = SITES[name]
    sign_up(sites["copernica.com"], deliver, COPERNICA)
    sign_up(sites["copernica.com"], deliver, COPERNICA, email="bob@example.com")
    person = signed_in(app, sites[name])
    assert (
        person.post(
            "/v1/me/email",
            json={"new_email": "bob@example.com", "current_password": PASSWORD, **BROWSER},
        ).status_code
        == 202
    )
    delivered = deliver()
    one_mail(delivered, "anna@example.com", site)  # the notice to the old address
    attempt = one_mail(delivered, "bob@example.com", site)  # no link: the address is taken
    assert "?token=" not in attempt.text


@pytest.mark.parametrize("name", SITES)
def test_a_newsletter_confirmation_is_the_subscribing_sites(sites, deliver, name):
    site, client = SITES[name], sites[name]
    body = {"email": "anna@example.com", "consent": {"text": "Yes, news please", **BROWSER}}
    pending = client.post("/v1/newsletters/copernica/subscriptions", json=body)
    assert pending.get_json()["state"] == "pending"
    mail = one_mail(deliver(), "anna@example.com", site)
    assert mail.language == site.language  # a new address has no language of its own
    token = mail.token(site, "/newsletters/confirm")
    confirmed = client.post("/v1/newsletters/confirm", json={"token": token})
    assert confirmed.get_json()["state"] == "subscribed"


# --- a site without pages -----------------------------------------------------------------


@pytest.fixture
def pageless(app, conn):
    """A client with the key of a site that has a brand and a sender but no pages."""
    uow = UnitOfWork.of(conn)
    settings = SiteSettings(brand="No Pages", sender="news@nopages.example")
    key = uow.run(lambda: create_site(uow, "nopages.example", list(SCOPES), settings))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


# Everything a refused request could have written.
_WRITTEN = (
    "users",
    "outbox",
    "account_tokens",
    "login_throttles",
    "password_history",
    "sessions",
    "subscriptions",
    "consent_events",
    "newsletter_confirmations",
)


def everything(conn) -> dict[str, str]:
    """A fingerprint of each table a flow writes: any row added, changed or gone shows."""
    return {
        table: conn.execute(
            sql.SQL(
                "select md5(coalesce(string_agg(t::text, ',' order by t::text), '')) as print"
                " from {} t"
            ).format(sql.Identifier(table))
        ).fetchone()["print"]
        for table in _WRITTEN
    }


def refused(answer) -> None:
    """A 409 that names what to set."""
    body = assert_problem(answer, 409)
    assert "identity sites update nopages.example --pages" in body["detail"], body


def test_a_site_without_pages_can_start_no_mail_and_nothing_is_written(
    app, sites, pageless, deliver, conn
):
    """Whatever the address (known or not, so the answer tells nothing), every flow that
    could mail answers 409 before it counts, reads or writes anything."""
    sign_up(sites["copernica.com"], deliver, COPERNICA)
    before = everything(conn)
    for email in ("anna@example.com", "nobody@example.com"):
        body = {"email": email, "password": PASSWORD, **BROWSER}
        refused(pageless.post("/v1/auth/register", json=body))
        refused(pageless.post("/v1/auth/password-reset", json={"email": email, **BROWSER}))
        subscription = {"email": email, "consent": {"text": "Yes", **BROWSER}}
        refused(pageless.post("/v1/newsletters/copernica-updates/subscriptions", json=subscription))
    assert everything(conn) == before
    person = signed_in(app, pageless)  # a login mails nothing: it may
    before = everything(conn)
    change = {"current_password": "not even checked", "new_password": OTHER_PASSWORD, **BROWSER}
    refused(person.put("/v1/me/password", json=change))
    refused(
        person.post(
            "/v1/me/email",
            json={"new_email": "anna@work.example", "current_password": PASSWORD, **BROWSER},
        )
    )
    assert everything(conn) == before
    assert deliver() == {}


def test_a_link_brought_to_a_site_without_pages_stays_good(sites, pageless, deliver, conn):
    """The pages that would finish a flow mail too (a reset's notice, a contested proof's
    link): refused there, the token is not spent, and works at a site with pages."""
    body = {"email": "anna@example.com", "password": PASSWORD, **BROWSER}
    assert sites["copernica.com"].post("/v1/auth/register", json=body).status_code == 202
    verify = one_mail(deliver(), "anna@example.com", COPERNICA).token(COPERNICA, "/verify-email")
    before = everything(conn)
    refused(pageless.post("/v1/auth/verify-email", json={"token": verify}))
    assert everything(conn) == before
    assert (
        sites["copernica.com"].post("/v1/auth/verify-email", json={"token": verify}).status_code
        == 200
    )

    asked = sites["copernica.com"].post(
        "/v1/auth/password-reset", json={"email": "anna@example.com", **BROWSER}
    )
    assert asked.status_code == 202
    token = one_mail(deliver(), "anna@example.com", COPERNICA).token(COPERNICA, "/reset-password")
    reset = {"token": token, "new_password": OTHER_PASSWORD, **BROWSER}
    before = everything(conn)
    refused(pageless.post("/v1/auth/password-reset/confirm", json=reset))
    assert everything(conn) == before
    assert (
        sites["copernica.com"].post("/v1/auth/password-reset/confirm", json=reset).status_code
        == 204
    )
