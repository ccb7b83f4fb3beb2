import time
import uuid

from identity.services.sites import RecentSiteKeys, SiteCaller

CALLER = SiteCaller(uuid.uuid4(), "copernica.com", uuid.uuid4(), frozenset({"users:read"}))


def test_a_key_is_kept_for_its_time_and_then_forgotten():
    recent = RecentSiteKeys(0.1)
    recent.keep(b"digest", CALLER)
    assert recent.get(b"digest") == CALLER
    assert recent.get(b"other") is None
    time.sleep(0.12)
    assert recent.get(b"digest") is None


def test_nothing_is_kept_with_no_time():
    recent = RecentSiteKeys(0)
    recent.keep(b"digest", CALLER)
    assert recent.get(b"digest") is None


def test_the_number_of_kept_keys_is_bounded():
    recent = RecentSiteKeys(60, max_keys=10)
    for n in range(25):
        recent.keep(n.to_bytes(4, "big"), CALLER)
    assert sum(recent.get(n.to_bytes(4, "big")) is not None for n in range(25)) <= 10
    assert recent.get((24).to_bytes(4, "big")) == CALLER
