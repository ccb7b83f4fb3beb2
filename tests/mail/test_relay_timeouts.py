"""Every step of the SMTP conversation has IDENTITY_SMTP_TIMEOUT_SECONDS: a relay that
goes silent at any of them costs a mail that long, then a retry later, never a courier."""

import time
import uuid
from datetime import UTC, datetime

import pytest

from identity.config import load_config
from identity.mail.courier import courier_from_settings
from identity.mail.relay import DeliveryFailed
from identity.mail.render import Renderer
from tests.mail.relays import STEPS, SilentRelay


@pytest.mark.parametrize("step", STEPS)
def test_a_relay_silent_at_any_step_fails_the_mail_for_now_after_the_timeout(step):
    relay = SilentRelay(silent_from=step)
    courier = courier_from_settings(
        load_config({"SMTP_URL": relay.url, "SMTP_TIMEOUT_SECONDS": 0.3})
    )
    mail = Renderer("identity <no-reply@example.com>").outgoing(
        "test", "en", {}, "p@example.com", uuid.uuid4(), datetime.now(UTC)
    )
    try:
        started = time.monotonic()
        with pytest.raises(DeliveryFailed) as failed:
            courier.relay.send(mail)
        assert 0.25 < time.monotonic() - started < 1.5
        assert not failed.value.permanent and "cannot be reached" in failed.value.reason
    finally:
        courier.close()
        relay.close()
