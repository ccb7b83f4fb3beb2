"""A courier on its own (`identity mail deliver`, no server sharing a multiprocess
directory) answers Prometheus on IDENTITY_MAIL_METRICS_BIND with its own counts."""

import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.mail.conftest import queue, wait_until
from tests.test_cli import free_port

pytestmark = pytest.mark.committing


def sent_counted(url: str) -> float | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None  # not listening yet
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            wanted = {"template": "test", "outcome": "sent"}
            if sample.name == "identity_mail_deliveries_total" and sample.labels == wanted:
                return sample.value
    return 0.0


def test_a_courier_on_its_own_serves_its_deliveries_on_its_bind(db, mail_server, courier_process):
    port = free_port()
    courier_process(mail_server.url, mail_metrics_bind=f"127.0.0.1:{port}")
    queue(db, 3)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(lambda: sent_counted(url) == 3, 20, "3 mails counted as sent")
    assert len(mail_server.sink.messages) == 3
