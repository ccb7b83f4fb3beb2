"""GET /metrics in-process: who may read it, and that what a site does shows in the counts
(the app in these tests is one process: prometheus_client's own registry, no files)."""

import uuid

from prometheus_client.parser import text_string_to_metric_families

from tests.api.problems import assert_problem
from tests.api.test_accounts import login, register, sign_up
from tests.api.test_import import ndjson, run_import
from tests.api.test_newsletters import subscribe
from tests.sites import site_key_for


def samples(client) -> dict[tuple, float]:
    """The scrape as {(sample name, sorted labels...): value}."""
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.content_type.startswith("text/plain; version=0.0.4")
    found = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            found[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, *sorted(labels.items())), 0.0)


def scraper(app, conn):
    client = app.test_client()
    key = site_key_for(conn, "prometheus", scopes=["metrics"])
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def test_only_a_key_with_the_metrics_scope_reads_them(app, conn, client):
    assert_problem(client.get("/metrics"), 401)
    other = app.test_client()
    other.environ_base["HTTP_AUTHORIZATION"] = (
        f"Bearer {site_key_for(conn, 'copernica.com', scopes=['auth', 'users:read'])}"
    )
    assert_problem(other.get("/metrics"), 403)
    metrics = scraper(app, conn)
    found = samples(metrics)
    assert ("identity_outbox_queued",) in found
    # The key reads the numbers and nothing else.
    assert_problem(metrics.get(f"/v1/users/{uuid.uuid4()}"), 403)


def test_what_a_site_does_is_counted_by_route_outcome_and_kind(app, conn, site):
    metrics = scraper(app, conn)
    before = samples(metrics)
    sign_up(site, conn)  # a registration, proven; a verification mail queued
    assert login(site).status_code == 200
    assert login(site, password="not her password at all").status_code == 401
    assert site.get(f"/v1/users/{uuid.uuid4()}").status_code == 404
    assert site.get("/no/such/path").status_code == 404
    _, summary = run_import(site, ndjson({"email": "b@example.com"}, {"email": "nope"}))
    assert summary["created"] == 1 and summary["rejected"] == 1
    after = samples(metrics)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "identity_http_request_duration_seconds_count"
    assert grew(requests, route="/v1/auth/login", method="POST", status="200") == 1
    assert grew(requests, route="/v1/auth/login", method="POST", status="401") == 1
    assert grew(requests, route="/v1/users/<uuid:user_id>", method="GET", status="404") == 1
    assert grew(requests, route="(no route)", method="GET", status="404") == 1
    events = "identity_security_events_total"
    assert grew(events, event="registration.requested") == 1
    assert grew(events, event="registration.proven") == 1
    assert grew(events, event="login.succeeded") == 1
    assert grew(events, event="login.failed") == 1
    lines = "identity_import_lines_total"
    assert grew(lines, outcome="created") == 1 and grew(lines, outcome="rejected") == 1
    # Read from the test's own (rolled-back) transaction: its verification mail waits.
    assert value(after, "identity_outbox_queued") >= 1
    # No label holds an address, a token, an id or a raw path.
    text = metrics.get("/metrics").get_data(as_text=True)
    assert "@" not in text and "/no/such/path" not in text and "idsk_" not in text


def test_throttle_refusals_and_one_clicks_are_counted(app, conn, site, client):
    metrics = scraper(app, conn)
    before = samples(metrics)
    browser = {"client_ip": "192.0.2.44", "user_agent": "x"}
    statuses = [register(site, f"p{n}@example.com", **browser).status_code for n in range(23)]
    refused = statuses.count(429)
    assert refused >= 1
    subscribe(site, key="copernica-updates")
    conn.execute("update subscriptions set state = 'subscribed'")
    row = conn.execute("select id from users where email = 'anna@example.com'").fetchone()
    tokens = app.extensions["identity.services"].newsletters.tokens
    url = f"/v1/unsubscribe/{tokens.sign(uuid.UUID(row['id'].hex), 2)}"
    for _ in range(2):  # the second changes nothing
        answer = client.post(url, data="List-Unsubscribe=One-Click", content_type=FORM)
        assert answer.status_code == 200
    after = samples(metrics)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("identity_throttle_refusals_total", route="/v1/auth/register") == refused
    assert grew("identity_one_clicks_total", changed="true") == 1
    assert grew("identity_one_clicks_total", changed="false") == 1
    route = "/v1/unsubscribe/<string(length=44):token>"
    assert grew("identity_http_request_duration_seconds_count", route=route, **POST_200) == 2


FORM = "application/x-www-form-urlencoded"
POST_200 = {"method": "POST", "status": "200"}
