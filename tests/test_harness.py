"""What the tests' shared app promises each test: it starts as create_app built it."""

from identity.api import CLOCK
from identity.db import EXTENSION


def _look_up(site):
    return site.get("/v1/users", query_string={"email": "nobody@example.com"}).status_code


def test_what_a_test_leaves_in_the_shared_app_is_put_back(session_app, app, site, conn):
    shared, put_back = session_app
    assert app is shared
    assert _look_up(site) == 404
    conn.execute("delete from site_keys")
    assert _look_up(site) == 404  # the key is still trusted: this process remembers it
    clock = app.extensions[CLOCK]
    app.extensions[CLOCK] = lambda: 0.0

    put_back()
    app.extensions[EXTENSION].conn = conn  # as the next test's `app` lends its own
    assert app.extensions[CLOCK] is clock
    assert _look_up(site) == 401  # forgotten with the rest of what it learnt
