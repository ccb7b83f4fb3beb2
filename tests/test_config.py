import pytest

from identity.config import DEV_SECRET_KEY, load_config
from identity.errors import ConfigurationError

PRODUCTION = {
    "IDENTITY_ENV": "production",
    "IDENTITY_DATABASE_URL": "postgresql://identity@db/identity",
    "IDENTITY_SECRET_KEY": "x" * 40,
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


@pytest.mark.parametrize("secret", [DEV_SECRET_KEY, "too-short"])
def test_production_refuses_a_weak_secret_key(secret):
    with pytest.raises(ConfigurationError, match="IDENTITY_SECRET_KEY"):
        load_config(environ=PRODUCTION | {"IDENTITY_SECRET_KEY": secret})


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
