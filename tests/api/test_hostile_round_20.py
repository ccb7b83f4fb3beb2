"""Hostile round on issue 20 ("Three sites, each its own"): what broke, each a test that
failed until it was mended. The write-ups and reproductions are in the issue's note."""

import re

import pytest

from identity.api.forwarded import browser_address
from identity.errors import ConfigurationError, InvalidInput
from identity.mail.render import Branding, Renderer
from identity.services.sites import SiteSettings, create_site
from identity.store.transactions import UnitOfWork
from tests.api.test_accounts import BROWSER, OTHER_PASSWORD, PASSWORD
from tests.api.test_mail_as_the_site import (  # noqa: F401 - fixtures
    COPERNICA,
    MAIL_FROM,
    SMTPETER,
    deliver,
    one_mail,
    sign_up,
    sites,
)
from tests.sites import site_key_for

# --- mail as the site ---------------------------------------------------------------------


@pytest.mark.parametrize("sender", ["no-reply@bücher.de", "jöhn@example.com"])
def test_a_sender_the_site_was_given_can_send_its_mails(app, conn, deliver, sender):  # noqa: F811
    try:
        key = site_key_for(conn, "idn.example", ["auth"], brand="IDN", sender=sender)
    except InvalidInput:
        return  # refused when set: as good, the operator hears it at once
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    body = {"email": "anna@example.com", "password": PASSWORD, **BROWSER}
    assert client.post("/v1/auth/register", json=body).status_code == 202
    assert "anna@example.com" in deliver()
    failed = conn.execute("select last_error from outbox where status = 'failed'").fetchall()
    assert not failed, failed


def test_every_mail_of_a_reset_is_the_asking_sites_whoever_confirms_it(
    sites,  # noqa: F811
    deliver,  # noqa: F811
):
    sign_up(sites["copernica.com"], deliver, COPERNICA)
    asked = sites["smtpeter.com"].post(
        "/v1/auth/password-reset", json={"email": "anna@example.com", **BROWSER}
    )
    assert asked.status_code == 202
    token = one_mail(deliver(), "anna@example.com", SMTPETER).token(SMTPETER, "/reset-password")
    confirmed = sites["copernica.com"].post(
        "/v1/auth/password-reset/confirm",
        json={"token": token, "new_password": OTHER_PASSWORD, **BROWSER},
    )
    if confirmed.status_code == 204:
        one_mail(deliver(), "anna@example.com", SMTPETER)  # the notice: SMTPeter's too
    else:
        assert confirmed.status_code in (403, 422)


def test_a_long_brand_beyond_ascii_is_encoded_in_words_of_at_most_75_characters():
    brand = "Cöpernica ✓ " + "Long" * 20  # 92 characters: --brand takes up to 100
    sender = Renderer(MAIL_FROM).sender_of(
        Branding("copernica.com", brand, None, "https://www.copernica.com")
    )
    words = re.findall(r"=\?[^?]+\?[QqBb]\?[^?]*\?=", sender.header)
    assert words
    assert all(len(word) <= 75 for word in words), sender.header


# --- keys and lists -----------------------------------------------------------------------


def _site_without_pages(conn, name: str, lists: list[str]) -> None:
    uow = UnitOfWork.of(conn)
    uow.run(lambda: create_site(uow, name, ["auth"], SiteSettings(lists=lists)))


@pytest.mark.parametrize("accept", ["application/x-ndjson", "text/csv"])
@pytest.mark.parametrize("managed", ["by a site without pages", "by no site"])
def test_the_export_of_a_list_the_key_may_not_manage_is_403(app, conn, managed, accept):
    if managed == "by a site without pages":
        _site_without_pages(conn, "mailerq.com", ["mailerq"])
    key = site_key_for(conn, "smtpeter.com", ["newsletters:smtpeter"], lists=["smtpeter"])
    client = app.test_client()
    answer = client.get(
        "/v1/newsletters/mailerq/subscribers",
        headers={"Authorization": f"Bearer {key}", "Accept": accept},
    )
    assert answer.status_code == 403, answer.get_data(as_text=True)
    assert "mailerq.com" not in answer.get_data(as_text=True)


# --- behind a proxy -----------------------------------------------------------------------


def test_a_proxy_written_as_an_ipv4_mapped_address_is_trusted_or_refused():
    from identity.config import trusted_proxies

    try:
        trusted = trusted_proxies("::ffff:10.0.0.1")
    except ConfigurationError:
        return  # refused at the start, with the reason: as good
    for peer in ("10.0.0.1", "::ffff:10.0.0.1"):
        assert browser_address(peer, "203.0.113.50", trusted) == "203.0.113.50"


def test_a_link_is_good_at_the_site_whose_pages_it_is_on_and_nowhere_else(
    sites,  # noqa: F811
    deliver,  # noqa: F811
):
    """A verification link of copernica.com brought to smtpeter.com's key is no link there
    (422) and stays good for copernica.com; a double opt-in alike."""
    body = {"email": "anna@example.com", "password": PASSWORD, **BROWSER}
    assert sites["copernica.com"].post("/v1/auth/register", json=body).status_code == 202
    mail = one_mail(deliver(), "anna@example.com", COPERNICA)
    token = mail.token(COPERNICA, "/verify-email")
    elsewhere = sites["smtpeter.com"].post("/v1/auth/verify-email", json={"token": token})
    assert elsewhere.status_code == 422
    here = sites["copernica.com"].post("/v1/auth/verify-email", json={"token": token})
    assert here.status_code == 200

    asked = sites["copernica.com"].post(
        "/v1/newsletters/copernica/subscriptions",
        json={"email": "bob@example.com", "consent": {"text": "Yes", **BROWSER}},
    )
    assert asked.get_json()["state"] == "pending"
    confirm = one_mail(deliver(), "bob@example.com", COPERNICA).token(
        COPERNICA, "/newsletters/confirm"
    )
    refused = sites["smtpeter.com"].post("/v1/newsletters/confirm", json={"token": confirm})
    assert refused.status_code == 422
    taken = sites["copernica.com"].post("/v1/newsletters/confirm", json={"token": confirm})
    assert taken.status_code == 200 and taken.get_json()["state"] == "subscribed"
