"""Hostile round on issue 21, the operator's side: production settings that start although
the issue says they must not. Each a failing test marked xfail(strict) until fixed; the
write-ups are in the hostile report."""

import pytest

from identity.config import load_config
from identity.errors import ConfigurationError
from tests.test_config import PRODUCTION


@pytest.mark.parametrize(
    "secret",
    [
        "Summer2026!Winter2026!Autumn2026!",
        "Copernica-Identity-Production-2026-Secret!",
        "".join(f"{i:02x}" for i in range(32)),  # 000102...1f
    ],
)
def test_production_refuses_a_root_secret_a_person_made_up(secret):
    with pytest.raises(ConfigurationError) as refused:
        load_config(environ={**PRODUCTION, "IDENTITY_SECRET_KEY": secret})
    assert secret not in str(refused.value)


def test_production_refuses_a_service_entry_that_connects_over_tcp_without_tls(tmp_path):
    services = tmp_path / "pg_service.conf"
    services.write_text("[prod]\nhost=db.example.com\nsslmode=disable\n")
    environ = {
        **PRODUCTION,
        "IDENTITY_DATABASE_URL": "postgresql:///identity?service=prod",
        "PGSERVICEFILE": str(services),
    }
    with pytest.raises(ConfigurationError):
        load_config(environ=environ)
