import uuid

from identity.services.principal import SiteCaller
from identity.services.sites import RecentSiteKeys

CALLER = SiteCaller(uuid.uuid4(), "copernica.com", uuid.uuid4(), frozenset({"users:read"}))


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_kept_for_its_time_and_then_forgotten():
    clock = Clock()
    recent = RecentSiteKeys(5, clock=clock)
    recent.keep(b"digest", CALLER)
    clock.now += 4.9
    assert recent.get(b"digest") == CALLER
    assert recent.get(b"other") is None
    clock.now += 0.2
    assert recent.get(b"digest") is None


def test_nothing_is_kept_with_no_time():
    recent = RecentSiteKeys(0, clock=Clock())
    recent.keep(b"digest", CALLER)
    assert recent.get(b"digest") is None


def test_the_number_of_kept_keys_is_bounded():
    recent = RecentSiteKeys(60, max_keys=10, clock=Clock())
    for n in range(25):
        recent.keep(n.to_bytes(4, "big"), CALLER)
    assert sum(recent.get(n.to_bytes(4, "big")) is not None for n in range(25)) <= 10
    assert recent.get((24).to_bytes(4, "big")) == CALLER
