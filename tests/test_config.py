import base64
import secrets
import uuid

import pytest

from identity.config import DEV_SECRET_KEY, load_config
from identity.errors import ConfigurationError

PRODUCTION = {
    "IDENTITY_ENV": "production",
    "IDENTITY_DATABASE_URL": "postgresql://identity@db/identity?sslmode=verify-full",
    # secrets.token_urlsafe(32), as the README says to make one
    "IDENTITY_SECRET_KEY": "q3vN8Zk_T1wYbR0fLx7cJ2uHd9sAeG4mPo6iKnVt5Wg",
    "IDENTITY_PUBLIC_URL": "https://identity.example.com",
}


def test_development_runs_on_safe_defaults():
    config = load_config(environ={})
    assert config["ENV"] == "development"
    assert config["SECRET_KEY"] == DEV_SECRET_KEY
    assert config["DATABASE_URL"] is None
    assert config["MAX_BODY_BYTES"] > 0


def test_settings_come_from_identity_variables_with_their_types():
    config = load_config(environ={"IDENTITY_DB_POOL_MAX": "20", "IDENTITY_DB_TIMEOUT": "0.5"})
    assert config["DB_POOL_MAX"] == 20
    assert config["DB_TIMEOUT"] == 0.5


def test_a_malformed_number_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="IDENTITY_DB_POOL_MAX must be a int"):
        load_config(environ={"IDENTITY_DB_POOL_MAX": "many"})


def test_production_starts_with_everything_it_needs():
    assert load_config(environ=PRODUCTION)["ENV"] == "production"


@pytest.mark.parametrize(
    "missing", ["IDENTITY_DATABASE_URL", "IDENTITY_SECRET_KEY", "IDENTITY_PUBLIC_URL"]
)
def test_production_refuses_to_start_without_a_required_setting(missing):
    environ = {k: v for k, v in PRODUCTION.items() if k != missing}
    with pytest.raises(ConfigurationError, match=missing):
        load_config(environ=environ)


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        (DEV_SECRET_KEY, "is the development value"),
        ("too-short", "is shorter than 32 characters"),
        ("a" * 32, "uses too few different characters"),
        ("x" * 40, "uses too few different characters"),
        ("01101001110100101101001011010010110100101101", "uses too few different characters"),
        ("password" * 5, "is made of words, keyboard runs, sequences or repeats"),
        ("correcthorsebatterystaple" * 2, "is made of words, keyboard runs, sequences or repeats"),
        ("qwertyuiopasdfghjklzxcvbnm1234567890", "is made of words, keyboard runs"),
        ("abcdefghijklmnopqrstuvwxyz0123456789", "is made of words, keyboard runs"),
    ],
    ids=["dev", "short", "a*32", "x*40", "two characters", "word*5", "phrase*2", "keyboard", "run"],
)
def test_production_refuses_a_secret_key_with_little_randomness(secret, why):
    with pytest.raises(ConfigurationError) as refused:
        load_config(environ=PRODUCTION | {"IDENTITY_SECRET_KEY": secret})
    message = refused.value.detail
    assert message.startswith(f"IDENTITY_SECRET_KEY {why}")
    # The rule, and how to make a good one; never the value or a part of it.
    assert "at least 32 characters" in message and "secrets.token_urlsafe(32)" in message
    assert secret not in message and secret[:8] not in message


@pytest.mark.parametrize(
    "make",
    [
        lambda: secrets.token_hex(16),
        lambda: secrets.token_urlsafe(24),
        lambda: base64.b64encode(secrets.token_bytes(24)).decode(),
        lambda: secrets.token_urlsafe(64),
        lambda: str(uuid.uuid4()) + str(uuid.uuid4()),
    ],
    ids=["hex 32", "urlsafe 32", "base64 32", "urlsafe 86", "two uuids"],
)
def test_production_takes_a_random_secret_key_however_it_was_made(make):
    for _ in range(50):
        secret = make()
        assert load_config(environ=PRODUCTION | {"IDENTITY_SECRET_KEY": secret})["SECRET_KEY"]


@pytest.mark.parametrize(
    "url",
    [
        "smtps://relay.example.com:465",
        "smtps://user:p%40ss@relay.example.com",
        "smtp://user:pass@relay.example.com:587?starttls=1",
        "smtp://relay.example.com:587?starttls=true",
    ],
)
def test_production_takes_an_smtp_relay_over_tls(url):
    assert load_config(environ=PRODUCTION | {"IDENTITY_SMTP_URL": url})["SMTP_URL"] == url


@pytest.mark.parametrize(
    "url",
    [
        "smtp://relay.example.com:25",
        "smtp://user:hunter2hunter2@relay.example.com:587",
        "smtp://relay.example.com:587?starttls=0",
        "smtp://[::1",
    ],
)
def test_production_refuses_an_smtp_relay_without_tls(url):
    with pytest.raises(ConfigurationError, match="IDENTITY_SMTP_URL must use TLS") as refused:
        load_config(environ=PRODUCTION | {"IDENTITY_SMTP_URL": url})
    assert "hunter2" not in refused.value.detail
    assert load_config(environ={"IDENTITY_SMTP_URL": url})["SMTP_URL"] == url  # development


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://identity:hunter2@db/identity?sslmode=verify-full",
        "postgresql:///identity?host=/var/run/postgresql",
        "postgresql://%2Fvar%2Frun%2Fpostgresql/identity",
        "postgresql:///identity",
        "host=/tmp dbname=identity user=identity",
        "host=db dbname=identity sslmode=verify-full",
    ],
    ids=["tcp verify-full", "socket query", "socket host", "default socket", "dsn socket", "dsn"],
)
def test_production_takes_a_database_over_verified_tls_or_a_unix_socket(url):
    environ = PRODUCTION | {"IDENTITY_DATABASE_URL": url}
    assert load_config(environ=environ)["DATABASE_URL"] == url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://identity:hunter2@db/identity",
        "postgresql://identity:hunter2@db/identity?sslmode=require",
        "postgresql://identity:hunter2@db/identity?sslmode=verify-ca",
        "postgresql://identity:hunter2@localhost/identity",
        "postgresql://identity:hunter2@127.0.0.1:5432/identity?sslmode=prefer",
        "postgresql://identity:hunter2@[::1]/identity",
        "postgresql://identity:hunter2@/identity?host=/tmp,db",
        "postgresql://identity:hunter2@/identity?hostaddr=10.0.0.5",
        "host=db password=hunter2 dbname=identity",
    ],
)
def test_production_refuses_a_database_over_tcp_without_verify_full(url):
    with pytest.raises(ConfigurationError, match="sslmode=verify-full") as refused:
        load_config(environ=PRODUCTION | {"IDENTITY_DATABASE_URL": url})
    assert "hunter2" not in refused.value.detail
    assert load_config(environ={"IDENTITY_DATABASE_URL": url})["DATABASE_URL"] == url


def test_libpqs_own_variables_count_where_the_url_is_silent():
    socket = PRODUCTION | {"IDENTITY_DATABASE_URL": "postgresql:///identity"}
    with pytest.raises(ConfigurationError, match="over TCP"):
        load_config(environ=socket | {"PGHOST": "db"})
    tls = socket | {"PGHOST": "db", "PGSSLMODE": "verify-full"}
    assert load_config(environ=tls)["DATABASE_URL"] == "postgresql:///identity"


def test_a_database_url_libpq_cannot_read_is_refused_without_echoing_it():
    url = "postgresql://identity:hunter2@[db/identity?sslmode=verify-full"  # libpq quotes it
    with pytest.raises(ConfigurationError, match="not a PostgreSQL URL") as refused:
        load_config(environ=PRODUCTION | {"IDENTITY_DATABASE_URL": url})
    assert "hunter2" not in refused.value.detail


def test_production_holds_the_migration_url_to_the_same_tls_rule():
    url = "postgresql://identity_owner:hunter2@db/identity"
    with pytest.raises(
        ConfigurationError, match=r"^IDENTITY_MIGRATION_DATABASE_URL reaches"
    ) as refused:
        load_config(environ=PRODUCTION | {"IDENTITY_MIGRATION_DATABASE_URL": url})
    assert "hunter2" not in refused.value.detail
    tls = PRODUCTION | {"IDENTITY_MIGRATION_DATABASE_URL": url + "?sslmode=verify-full"}
    assert load_config(environ=tls)["MIGRATION_DATABASE_URL"].endswith("verify-full")


def test_a_migration_url_without_a_serving_url_is_refused():
    with pytest.raises(ConfigurationError, match="without IDENTITY_DATABASE_URL"):
        load_config(environ={"IDENTITY_MIGRATION_DATABASE_URL": "postgresql:///identity"})


def test_an_unknown_environment_is_refused():
    with pytest.raises(ConfigurationError, match="IDENTITY_ENV"):
        load_config(environ={"IDENTITY_ENV": "staging"})


@pytest.mark.parametrize(
    ("key", "value"),
    [("PASSWORD_TIME_COST", "1"), ("PASSWORD_MEMORY_KIB", "8192"), ("PASSWORD_PARALLELISM", "0")],
)
def test_password_hashing_below_owasps_minimum_is_refused(key, value):
    with pytest.raises(ConfigurationError, match=f"IDENTITY_{key} must be at least"):
        load_config(environ={f"IDENTITY_{key}": value})


CHEAP = {
    "IDENTITY_CHEAP_PASSWORD_HASHING": "1",
    "IDENTITY_PASSWORD_TIME_COST": "1",
    "IDENTITY_PASSWORD_MEMORY_KIB": "8",
}


def test_a_test_suite_may_hash_below_the_minimum_outside_production():
    config = load_config(environ=CHEAP)
    assert config["CHEAP_PASSWORD_HASHING"] is True
    assert (config["PASSWORD_TIME_COST"], config["PASSWORD_MEMORY_KIB"]) == (1, 8)


@pytest.mark.parametrize(
    "environ",
    [PRODUCTION | CHEAP, PRODUCTION | {"IDENTITY_CHEAP_PASSWORD_HASHING": "true"}],
    ids=["cheap costs", "default costs"],
)
def test_production_refuses_cheap_password_hashing(environ):
    with pytest.raises(ConfigurationError, match="IDENTITY_CHEAP_PASSWORD_HASHING"):
        load_config(environ=environ)


def test_production_refuses_cheap_password_hashing_given_by_the_code_too():
    with pytest.raises(ConfigurationError, match="IDENTITY_CHEAP_PASSWORD_HASHING"):
        load_config({"CHEAP_PASSWORD_HASHING": True}, environ=PRODUCTION)


@pytest.mark.parametrize(("raw", "value"), [("0", False), ("false", False), ("yes", True)])
def test_a_switch_is_read_as_yes_or_no(raw, value):
    environ = {"IDENTITY_CHEAP_PASSWORD_HASHING": raw}
    assert load_config(environ=environ)["CHEAP_PASSWORD_HASHING"] is value


def test_a_switch_that_is_neither_yes_nor_no_is_refused():
    with pytest.raises(ConfigurationError, match="IDENTITY_CHEAP_PASSWORD_HASHING must be 1 or 0"):
        load_config(environ={"IDENTITY_CHEAP_PASSWORD_HASHING": "maybe"})


def test_cheap_costs_without_the_switch_are_refused():
    environ = {k: v for k, v in CHEAP.items() if k != "IDENTITY_CHEAP_PASSWORD_HASHING"}
    with pytest.raises(ConfigurationError, match="must be at least"):
        load_config(environ=environ)


def test_the_password_reset_answer_waits_a_tenth_of_a_second_unless_told_otherwise():
    assert load_config(environ={})["PASSWORD_RESET_ANSWER_SECONDS"] == 0.1
    assert load_config(environ=PRODUCTION)["PASSWORD_RESET_ANSWER_SECONDS"] == 0.1
    with pytest.raises(ConfigurationError, match="PASSWORD_RESET_ANSWER_SECONDS"):
        load_config(environ={"IDENTITY_PASSWORD_RESET_ANSWER_SECONDS": "-1"})


@pytest.mark.parametrize(
    "url",
    [
        "https://id.example.com/?x=1",
        "https://id.example.com/a>b",
        "https://id.example.com/a b",
        "javascript:alert(1)//",
        "https://id.example.com#top",
        "ftp://id.example.com",
        "http://id.example.com:99999",
        "http://id.example.com:0",
        "http://id.example.com/%zz",
        "http://[::1",
    ],
)
def test_a_public_url_that_would_break_the_links_is_refused(url):
    with pytest.raises(ConfigurationError, match="IDENTITY_PUBLIC_URL"):
        load_config(environ={"IDENTITY_PUBLIC_URL": url})


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]:8300",
        "https://id.example.com:443/identity",
        "http://127.0.0.1:8000",
        "https://id.example.com/a%20b",
    ],
)
def test_a_plain_public_url_is_taken(url):
    assert load_config(environ={"IDENTITY_PUBLIC_URL": url})["PUBLIC_URL"] == url


def test_production_links_are_https():
    with pytest.raises(ConfigurationError, match="https"):
        load_config(environ=PRODUCTION | {"IDENTITY_PUBLIC_URL": "http://identity.example.com"})
    assert load_config(environ=PRODUCTION)["PUBLIC_URL"] == "https://identity.example.com"


def test_trusted_proxies_are_networks_and_addresses_and_none_by_default():
    from identity.config import trusted_proxies

    assert trusted_proxies(load_config(environ={})["TRUSTED_PROXIES"]) == ()
    given = load_config(
        environ={"IDENTITY_TRUSTED_PROXIES": " 10.0.0.0/8, 2001:db8::/48,192.0.2.7,"}
    )
    assert [str(n) for n in trusted_proxies(given["TRUSTED_PROXIES"])] == [
        "10.0.0.0/8",
        "2001:db8::/48",
        "192.0.2.7/32",
    ]


@pytest.mark.parametrize(
    "entry", ["10.0.0.1/8", "10.0.0.0/33", "proxy.example.com", "10.0.0.0/8;", "fe80::1%eth0"]
)
def test_a_trusted_proxy_that_is_no_network_refuses_the_start_and_is_named(entry):
    with pytest.raises(ConfigurationError, match="IDENTITY_TRUSTED_PROXIES") as refused:
        load_config(environ={"IDENTITY_TRUSTED_PROXIES": f"192.0.2.0/24, {entry}"})
    assert repr(entry) in refused.value.detail
