"""Site keys called directly: issued once and kept only as a hash, revoked one or all,
listed; and a presented key checked (its shape first, then the database unless this
process found it valid moments ago) into a Principal, or refused with the right error."""

import pytest

from identity.errors import Forbidden, InvalidInput, Unauthenticated
from identity.security.site_keys import looks_like_site_key, site_key_hash, site_key_label
from identity.services.sites import (
    SCOPES,
    RecentSiteKeys,
    authenticate_site,
    create_site,
    list_site_keys,
    revoke_site_keys,
)
from identity.store.transactions import UnitOfWork


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class NoDatabase:
    """Lends no connection: a unit of work on it proves the database was not asked."""

    def acquire(self):
        raise AssertionError("the database was asked")

    def release(self, conn):  # pragma: no cover - nothing is lent
        pass


@pytest.fixture
def uow(conn):
    return UnitOfWork.of(conn)


def issue(uow, name="copernica.com", scopes=None) -> str:
    return uow.run(lambda: create_site(uow, name, list(scopes or SCOPES)))


def revoke(uow, name="copernica.com", prefix=None) -> int:
    return uow.run(lambda: revoke_site_keys(uow, name, prefix))


def test_a_key_is_handed_out_once_and_kept_only_as_its_hash(uow, conn):
    key = issue(uow)
    assert looks_like_site_key(key)
    stored = conn.execute("select key_hash, key_prefix, scopes from site_keys").fetchone()
    assert bytes(stored["key_hash"]) == site_key_hash(key)
    assert stored["key_prefix"] == site_key_label(key) and key not in str(stored)
    assert stored["scopes"] == sorted(SCOPES)  # no scopes named: all of them
    second = issue(uow, scopes=["users:read", "auth", "auth"])
    (listed,) = [k for k in list_site_keys(uow) if k["key_prefix"] == site_key_label(second)]
    assert listed["scopes"] == ["auth", "users:read"] and listed["site"] == "copernica.com"
    assert conn.execute("select count(*) as n from sites").fetchone()["n"] == 1


@pytest.mark.parametrize(
    ("name", "scopes"),
    [("Copernica.com", None), ("copernica com", None), ("copernica.com", ["admin"])],
)
def test_a_bad_site_name_or_scope_is_refused_and_writes_nothing(uow, conn, name, scopes):
    with pytest.raises(InvalidInput):
        issue(uow, name, scopes)
    assert conn.execute("select count(*) as n from sites").fetchone()["n"] == 0


def test_keys_are_revoked_one_by_its_prefix_or_all(uow):
    keys = [issue(uow) for _ in range(3)]
    other = issue(uow, "smtpeter.com")
    assert revoke(uow, prefix=site_key_label(keys[0])) == 1
    assert revoke(uow) == 2
    assert revoke(uow) == 0
    revoked = {k["key_prefix"]: k["revoked_at"] is not None for k in list_site_keys(uow)}
    assert revoked == {site_key_label(k): True for k in keys} | {site_key_label(other): False}


def test_a_valid_key_is_the_sites_principal_and_its_use_is_kept(uow, conn):
    key = issue(uow, scopes=["users:read"])
    principal = authenticate_site(uow, key, "users:read", RecentSiteKeys(0))
    assert principal.site_name == "copernica.com"
    assert principal.site.scopes == frozenset({"users:read"})
    stored = conn.execute("select id, site_id, last_used_at from site_keys").fetchone()
    assert (principal.site.key_id, principal.site.site_id) == (stored["id"], stored["site_id"])
    assert stored["last_used_at"] is not None


@pytest.mark.parametrize("key", ["", "Bearer", "idsk_short", "x" * 48, "idsk_" + "!" * 43])
def test_a_key_of_the_wrong_shape_is_refused_without_the_database(key):
    with pytest.raises(Unauthenticated):
        authenticate_site(UnitOfWork(NoDatabase()), key, "auth", RecentSiteKeys(5))


def test_an_unknown_or_revoked_key_is_unauthenticated_and_a_missing_scope_forbidden(uow):
    unknown = "idsk_" + "A" * 43
    with pytest.raises(Unauthenticated):
        authenticate_site(uow, unknown, "auth", RecentSiteKeys(5))
    reader = issue(uow, scopes=["users:read"])
    with pytest.raises(Forbidden):
        authenticate_site(uow, reader, "auth", RecentSiteKeys(5))
    revoke(uow)
    with pytest.raises(Unauthenticated):
        authenticate_site(uow, reader, "users:read", RecentSiteKeys(5))


def test_a_key_found_valid_is_kept_for_its_seconds_with_its_own_scopes(uow):
    key = issue(uow, scopes=["users:read"])
    clock = Clock()
    recent = RecentSiteKeys(5, clock=clock)
    authenticate_site(uow, key, "users:read", recent)
    kept = UnitOfWork(NoDatabase())
    assert authenticate_site(kept, key, "users:read", recent).site_name == "copernica.com"
    with pytest.raises(Forbidden):
        authenticate_site(kept, key, "auth", recent)
    revoke(uow)
    clock.now += 4.9
    authenticate_site(uow, key, "users:read", recent)  # revoked, but still kept here
    clock.now += 0.2
    with pytest.raises(Unauthenticated):
        authenticate_site(uow, key, "users:read", recent)


def test_a_key_found_invalid_is_not_kept(uow):
    recent = RecentSiteKeys(60, clock=Clock())
    unknown = "idsk_" + "B" * 43
    with pytest.raises(Unauthenticated):
        authenticate_site(uow, unknown, "auth", recent)
    assert recent.get(site_key_hash(unknown)) is None
