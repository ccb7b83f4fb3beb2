"""The Principal: exactly one kind of caller, the site it speaks for, its browser."""

import uuid
from datetime import UTC, datetime

import pytest

from identity.errors import Forbidden
from identity.services.principal import Browser, LinkHolder, Principal, SiteCaller, UserCaller

SITE = SiteCaller(uuid.uuid4(), "copernica.com", uuid.uuid4(), frozenset({"auth"}))
PERSON = UserCaller(uuid.uuid4(), "smtpeter.com", uuid.uuid4(), datetime.now(UTC))
LINK = LinkHolder(uuid.uuid4(), 1)


@pytest.mark.parametrize(
    "parts", [{}, {"site": SITE, "user": PERSON}, {"user": PERSON, "link": LINK}]
)
def test_a_principal_is_exactly_one_kind_of_caller(parts):
    with pytest.raises(ValueError):
        Principal(**parts)


def test_the_site_that_gets_the_credit():
    assert Principal(site=SITE).site_name == "copernica.com"
    assert Principal(user=PERSON).site_name == "smtpeter.com"  # the site signed in through
    assert Principal(link=LINK).site_name is None


def test_scopes_are_the_site_keys_and_only_a_sites():
    Principal(site=SITE).require_scope("auth")
    with pytest.raises(Forbidden):
        Principal(site=SITE).require_scope("newsletters")
    with pytest.raises(Forbidden):
        Principal(user=PERSON).require_scope("auth")


def test_the_browser_is_carried_and_replaced_whole():
    caller = Principal(site=SITE)
    assert caller.browser == Browser()
    seen = caller.with_browser(Browser("203.0.113.7", "Mozilla/5.0"))
    assert seen.browser.client_ip == "203.0.113.7" and seen.site == SITE
    assert caller.browser == Browser()  # frozen: the original is untouched
