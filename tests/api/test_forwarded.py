"""Whose address the consent ledger keeps when a browser uses an unsubscribe link: the
connection's own, or behind a proxy of IDENTITY_TRUSTED_PROXIES the client that proxy
vouches for in X-Forwarded-For; never what a browser wrote there itself."""

import uuid

import pytest

from identity import create_app
from identity.api.forwarded import browser_address
from identity.api.guards import SERVICES
from identity.config import trusted_proxies
from identity.db import PinnedDatabase
from tests.api.test_newsletters import events, subscribe
from tests.api.test_unsubscribe import ONE_CLICK
from tests.settings import CHEAP

PROXIES = "10.0.0.0/8, 2001:db8:ffff::/48"
BROWSER_IP = "203.0.113.50"


@pytest.fixture
def url(site, conn, app):
    """The unsubscribe link of Anna, subscribed to copernica-updates."""
    subscribe(site, key="copernica-updates")
    user_id = conn.execute("select id from users where email = 'anna@example.com'").fetchone()
    token = app.extensions[SERVICES].newsletters.tokens.sign(uuid.UUID(str(user_id["id"])), 2)
    return f"/v1/unsubscribe/{token}"


@pytest.fixture
def behind_proxies(database_url, conn):
    """The service with two proxy networks trusted, on the test's connection."""
    settings = {"DATABASE_URL": database_url, **CHEAP, "TRUSTED_PROXIES": PROXIES}
    return create_app(settings, database=PinnedDatabase(conn))


def client_at(app, remote_addr: str):
    """A browser (or proxy) whose connection comes from `remote_addr`."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = remote_addr
    return client


def one_click(client, url, forwarded_for: str | None = None):
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    answer = client.post(
        url, data=ONE_CLICK, content_type="application/x-www-form-urlencoded", headers=headers
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer


def kept_address(conn) -> str:
    return events(conn)[-1]["client_ip"]


def test_behind_a_trusted_proxy_the_ledger_keeps_the_browser_it_vouches_for(
    behind_proxies, url, conn
):
    proxy = client_at(behind_proxies, "10.1.2.3")
    one_click(proxy, url, BROWSER_IP)
    assert kept_address(conn) == BROWSER_IP


def test_a_left_most_address_the_browser_wrote_itself_is_ignored(behind_proxies, url, conn):
    # The browser sent "X-Forwarded-For: 192.0.2.66"; the outer proxy appended the
    # browser's address, the inner one the outer proxy's.
    proxy = client_at(behind_proxies, "10.1.2.3")
    one_click(proxy, url, f"192.0.2.66, {BROWSER_IP}, 10.9.9.9")
    assert kept_address(conn) == BROWSER_IP


def test_the_preferences_keep_the_same_address(behind_proxies, url, conn):
    proxy = client_at(behind_proxies, "2001:db8:ffff::7")
    answer = proxy.put(
        f"{url}/preferences",
        json={"all": False},
        headers={"X-Forwarded-For": f"192.0.2.66, {BROWSER_IP}"},
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert {event["client_ip"] for event in events(conn)[-2:]} == {BROWSER_IP}


def test_from_a_connection_that_is_no_trusted_proxy_the_header_is_ignored(
    behind_proxies, url, conn
):
    stranger = client_at(behind_proxies, "198.51.100.7")
    one_click(stranger, url, BROWSER_IP)
    assert kept_address(conn) == "198.51.100.7"


def test_with_no_proxy_trusted_the_header_is_ignored_from_anywhere(client, url, conn):
    """The default: IDENTITY_TRUSTED_PROXIES unset."""
    client.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    one_click(client, url, BROWSER_IP)
    assert kept_address(conn) == "10.1.2.3"


@pytest.mark.parametrize(
    "forwarded_for",
    [
        "",
        "unknown",
        "garbage, \x00, ;;;",
        "203.0.113.5%eth0",
        "[2001:db8::1",
        "1.2.3.4, " * 2000,  # its last entry is empty
        "fe80::1%25eth0",
        "999.1.1.1",
    ],
    ids=["empty", "unknown", "garbage", "zone", "bracket", "huge", "escaped-zone", "no-ip"],
)
def test_a_header_that_names_no_address_unsubscribes_and_keeps_the_proxys(
    behind_proxies, url, conn, forwarded_for
):
    proxy = client_at(behind_proxies, "10.1.2.3")
    one_click(proxy, url, forwarded_for)
    assert kept_address(conn) == "10.1.2.3"


def test_a_long_header_is_read_from_the_right(behind_proxies, url, conn):
    proxy = client_at(behind_proxies, "10.1.2.3")
    one_click(proxy, url, "192.0.2.1, " * 2000 + BROWSER_IP)
    assert kept_address(conn) == BROWSER_IP


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("10.0.0.1", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.1", "198.51.100.1, 203.0.113.9", "203.0.113.9"),
        ("10.0.0.1", "203.0.113.9, 10.0.0.2, 10.0.0.3", "203.0.113.9"),
        ("10.0.0.1", "203.0.113.9,10.0.0.2", "203.0.113.9"),
        ("10.0.0.1", "[2001:db8::9]:443, 10.0.0.2", "2001:db8::9"),
        ("10.0.0.1", "203.0.113.9:51000", "203.0.113.9"),
        ("10.0.0.1", "::ffff:203.0.113.9", "203.0.113.9"),
        ("::ffff:10.0.0.1", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.1", "10.0.0.7, 10.0.0.2", "10.0.0.7"),  # all proxies: the left-most
        ("10.0.0.1", "203.0.113.9, garbage, 10.0.0.2", "10.0.0.2"),  # stop at garbage
        ("10.0.0.1", "garbage", "10.0.0.1"),
        ("10.0.0.1", "[2001:db8::9]x, 10.0.0.2", "10.0.0.2"),
        ("10.0.0.1", "203.0.113.9:http", "10.0.0.1"),
        ("10.0.0.1", None, "10.0.0.1"),
        ("198.51.100.1", "203.0.113.9", "198.51.100.1"),  # not a proxy: ignored
        ("", "203.0.113.9", None),  # a Unix socket
        (None, "203.0.113.9", None),
    ],
)
def test_which_address_is_the_browsers(peer, forwarded_for, client):
    assert browser_address(peer, forwarded_for, trusted_proxies("10.0.0.0/8")) == client
