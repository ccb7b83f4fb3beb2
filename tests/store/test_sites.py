"""Sites and their keys' SQL called directly: a site made once, keys found by hash while
active, their last use kept to the minute, revoked one or all, listed; and the one
import per site that PostgreSQL's session lock enforces across connections."""

import time
import uuid

import psycopg
from psycopg.rows import dict_row

from identity.store import sites

SCOPES = ["auth", "users:read"]


def _key(conn, name="copernica.com", digest="k1", scopes=SCOPES) -> dict:
    """A key of site `name` whose hash is `digest` and prefix pfx_`digest`."""
    site_id = _site(conn, name)
    return sites.insert_key(conn, site_id, digest.encode(), f"pfx_{digest}", scopes)


def _site(conn, name: str) -> uuid.UUID:
    return sites.insert_site(conn, name, {}) or sites.site_id(conn, name)


def test_a_site_is_made_once_and_updated_by_name(conn):
    site_id = sites.insert_site(conn, "copernica.com", {"brand": "Copernica"})
    assert sites.insert_site(conn, "copernica.com", {"brand": "Other"}) is None
    assert sites.find_site(conn, "copernica.com")["brand"] == "Copernica"
    assert sites.update_site(conn, "copernica.com", {"pages_url": "https://x.test"}) == site_id
    found = sites.find_site(conn, "copernica.com")
    assert (found["brand"], found["pages_url"], found["language"]) == (
        "Copernica",
        "https://x.test",
        "en",
    )
    assert sites.update_site(conn, "smtpeter.com", {"brand": "SMTPeter"}) is None
    assert _site(conn, "smtpeter.com") != site_id


def test_a_list_is_managed_by_at_most_one_site(conn):
    first, second = _site(conn, "copernica.com"), _site(conn, "smtpeter.com")
    assert sites.manage_lists(conn, first, ["copernica", "smtpeter"]) == []
    assert [row["key"] for row in sites.manage_lists(conn, second, ["smtpeter", "nope"])] == [
        "nope"
    ]
    managed = {site["name"]: site["lists"] for site in sites.all_sites(conn)}
    assert managed == {"copernica.com": ["copernica"], "smtpeter.com": ["smtpeter"]}
    sites.manage_lists(conn, first, [])
    assert {site["name"]: site["lists"] for site in sites.all_sites(conn)}["copernica.com"] == []


def test_an_active_key_is_found_by_its_hash_with_its_site_and_scopes(conn):
    key = _key(conn)
    assert (key["key_prefix"], key["scopes"]) == ("pfx_k1", SCOPES)
    found = sites.find_active_key(conn, b"k1")
    assert found["id"] == key["id"] and found["scopes"] == SCOPES
    assert found["site_name"] == "copernica.com"
    assert found["site_id"] == _site(conn, "copernica.com")
    assert sites.find_active_key(conn, b"k2") is None


def test_a_keys_last_use_is_kept_to_the_minute(conn):
    key = _key(conn)
    assert sites.find_active_key(conn, b"k1")["last_used_stale"]  # never used
    sites.touch_key(conn, key["id"])
    assert not sites.find_active_key(conn, b"k1")["last_used_stale"]
    conn.execute("update site_keys set last_used_at = now() - interval '61 seconds'")
    assert sites.find_active_key(conn, b"k1")["last_used_stale"]


def test_revoking_one_key_by_its_prefix_or_all_of_a_sites(conn):
    for digest in ("k1", "k2", "k3"):
        _key(conn, digest=digest)
    _key(conn, "smtpeter.com", digest="other")
    assert sites.revoke_keys(conn, "copernica.com", "pfx_k2") == 1
    assert sites.find_active_key(conn, b"k2") is None
    assert sites.find_active_key(conn, b"k1") is not None
    assert sites.revoke_keys(conn, "copernica.com", "pfx_k2") == 0  # revoked already
    assert sites.revoke_keys(conn, "copernica.com", None) == 2
    assert sites.find_active_key(conn, b"k1") is None and sites.find_active_key(conn, b"k3") is None
    assert sites.find_active_key(conn, b"other") is not None  # another site's
    assert sites.revoke_keys(conn, "nobody.com", None) == 0


def test_keys_are_listed_by_site_then_age_revoked_ones_too(conn):
    conn.execute("delete from sites")
    _key(conn, "smtpeter.com", digest="s1")
    _key(conn, digest="c1")
    _key(conn, digest="c2")
    conn.execute(
        "update site_keys set created_at = created_at - interval '1 hour'"
        " where key_prefix = 'pfx_c2'"
    )
    sites.revoke_keys(conn, "copernica.com", "pfx_c1")
    listed = sites.list_keys(conn)
    assert [(k["site"], k["key_prefix"]) for k in listed] == [
        ("copernica.com", "pfx_c2"),
        ("copernica.com", "pfx_c1"),
        ("smtpeter.com", "pfx_s1"),
    ]
    assert [k["revoked_at"] is not None for k in listed] == [False, True, False]
    assert "key_hash" not in listed[0]


def test_one_import_per_site_across_connections_until_let_go(conn, database_url):
    site_id, other_site = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as other:
        assert sites.try_lock_import(other, site_id)
        assert not sites.try_lock_import(conn, site_id)
        assert sites.try_lock_import(conn, other_site)
        sites.unlock_import(other, site_id)
        assert sites.try_lock_import(conn, site_id)
        assert not sites.try_lock_import(other, site_id)
        sites.unlock_import(conn, site_id)
        sites.unlock_import(conn, other_site)
        assert sites.try_lock_import(other, site_id)
    # The lock went with its connection (once the server has ended that backend, which
    # it does a moment after the client closed it).
    deadline = time.monotonic() + 5
    while not sites.try_lock_import(conn, site_id):
        assert time.monotonic() < deadline, "the closed connection's lock stayed"
        time.sleep(0.01)
    sites.unlock_import(conn, site_id)
