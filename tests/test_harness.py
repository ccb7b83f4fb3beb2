"""What the tests' shared app promises each test: services built anew, remembering
nothing an earlier test taught them (its data was rolled back)."""

import pytest

from identity.api.guards import SERVICES


def _look_up(site):
    return site.get("/v1/users", query_string={"email": "nobody@example.com"}).status_code


@pytest.mark.parametrize("turn", [1, 2])
def test_each_test_gets_services_that_remember_nothing(app, site, turn):
    services = app.extensions[SERVICES]
    assert services.recent_site_keys._found == {}
    assert services.key_ring._checked == {}
    assert services.accounts.sessions.ring is services.key_ring
    assert services.newsletters._catalog is None
    assert services.exports.taken == 0
    assert _look_up(site) == 404
    assert services.recent_site_keys._found  # learnt now, forgotten by the next test
    app.extensions[SERVICES].clock = lambda: 0.0  # swapped now, as built for the next


def test_the_shared_app_is_the_one_the_tests_share(session_app, app):
    assert app is session_app
