"""Settings: safe local defaults first, then IDENTITY_* from the environment."""

import ipaddress
import os
import re
from urllib.parse import parse_qs, urlsplit

from identity.errors import ConfigurationError

DEV_SECRET_KEY = "dev-only-not-secret-change-me"  # noqa: S105 - refused when IDENTITY_ENV=production

DEFAULTS = {
    # "development" runs with the defaults below; "production" refuses to start without
    # the secrets and the database it must be given.
    "ENV": "development",
    # Unset: `identity serve` starts the embedded PostgreSQL under .data/ and fills this in.
    "DATABASE_URL": None,
    # The role that owns the schema, for `identity db upgrade` (and `identity serve`'s
    # migration) only; unset: IDENTITY_DATABASE_URL's. The upgrade then grants the
    # serving role (IDENTITY_DATABASE_URL's user) rights to rows, nothing more.
    "MIGRATION_DATABASE_URL": None,
    # Where the embedded PostgreSQL keeps its data (relative to the working directory).
    "DATA_DIR": ".data",
    "DB_POOL_MIN": 1,
    "DB_POOL_MAX": 8,
    # Seconds a request waits for a database connection before it answers 503.
    "DB_TIMEOUT": 3.0,
    # Per connection, in milliseconds: a statement running longer is cancelled, a lock
    # waited for longer is given up, and a transaction left open and idle is ended, so no
    # request can hold rows or a connection for long. The import's batches take < 1 s.
    "DB_STATEMENT_TIMEOUT_MS": 30_000,
    "DB_LOCK_TIMEOUT_MS": 10_000,
    "DB_IDLE_IN_TRANSACTION_MS": 60_000,
    # The root of every purpose's key (identity.security.derived_keys): changing it makes
    # the stored signing keys unreadable (`identity keys rotate --now` then) and ends every
    # unsubscribe link sent. Production refuses one with little randomness.
    "SECRET_KEY": DEV_SECRET_KEY,
    # argon2id's cost for each password hash and check, OWASP's minimum for argon2id
    # (19 MiB, 2 passes, 1 lane) and the least the service starts with: about 31 ms a
    # hash or check on this 2-core machine. Raise them as the hardware allows.
    "PASSWORD_TIME_COST": 2,
    "PASSWORD_MEMORY_KIB": 19456,
    "PASSWORD_PARALLELISM": 1,
    # For test suites only: true lets the three costs above go below that minimum, so the
    # tests that are not about hashing do not pay for it. Production refuses to start
    # with it set, whatever the costs.
    "CHEAP_PASSWORD_HASHING": False,
    # The least time a password-reset request takes to answer, whatever the address:
    # queueing the mail takes a few milliseconds more than finding no account, and an
    # answer that came sooner for unknown addresses would tell them apart. Tests that are
    # not about that timing set it to 0.
    "PASSWORD_RESET_ANSWER_SECONDS": 0.1,
    # How long an access token lives; a retired signing key stays published this long
    # (and a little more), so the tokens it signed can be checked until they expire.
    "ACCESS_TOKEN_SECONDS": 900,
    "PUBLIC_URL": "http://127.0.0.1:8000",
    # The proxies in front of the service (comma-separated CIDRs, or single addresses)
    # whose X-Forwarded-For is believed where a browser calls the service itself (the
    # unsubscribe links). Unset: none; the client is the connection's own address.
    "TRUSTED_PROXIES": None,
    # The key id that signs new unsubscribe tokens (1-255). Raising it rotates the key:
    # tokens of every lower id keep working, as links in old mails must.
    "UNSUBSCRIBE_KEY_ID": 1,
    # How long the link of a newsletter's double opt-in confirmation mail works.
    "NEWSLETTER_CONFIRM_HOURS": 72,
    # Seconds a process keeps the newsletter catalog before reading it again: so long may
    # a retired list (its row deleted) still be taken there. 0 reads it at every use.
    "NEWSLETTER_CATALOG_SECONDS": 5.0,
    # smtp://[user:password@]host:port[?starttls=1] or smtps://...; unset: mails are
    # written to the log (template, masked recipient, subject), not sent.
    "SMTP_URL": None,
    # The From of the service's own mail (`identity mail test`). A person's mail goes out
    # as the site they used, from its sender; a site without one sends from this address,
    # named by the site's brand.
    "MAIL_FROM": "identity <no-reply@localhost>",
    # A mail the relay keeps refusing for now is given up after this many tries, the
    # first retry after about MAIL_RETRY_SECONDS, each next one after twice as long.
    "MAIL_MAX_ATTEMPTS": 10,
    "MAIL_RETRY_SECONDS": 30.0,
    # SMTP sessions each delivery worker keeps to the relay and sends over at once.
    "MAIL_CONNECTIONS": 4,
    # A delivery worker looks for due mail this often even without a notification.
    "MAIL_POLL_SECONDS": 1.0,
    # Seconds a delivery worker may take over the mails it claimed: a worker that dies or
    # freezes with mails claimed leaves them to another one this long after the claim.
    "MAIL_LEASE_SECONDS": 60.0,
    # Seconds a delivery worker told to stop lets the mails in flight finish before it
    # cuts their SMTP sessions (those mails go out later, from the next worker).
    "MAIL_STOP_SECONDS": 5.0,
    # /health/ready reports mail as "late" once a due mail has waited this long for a
    # worker, or when mail is due and no worker is alive (its HTTP status stays 200).
    "MAIL_LATE_SECONDS": 300.0,
    # `host:port` where a delivery worker (`identity mail deliver`) answers Prometheus
    # with its own counts; unset: none (under `identity serve` its counts reach the
    # server's GET /metrics through their shared multiprocess directory).
    "MAIL_METRICS_BIND": None,
    # Seconds each SMTP step may take (connecting, the greeting, EHLO, MAIL, RCPT, DATA,
    # the answer to the mail's end) before the relay counts as unreachable for that mail.
    "SMTP_TIMEOUT_SECONDS": 20.0,
    # Seconds a process trusts a site key it found valid before asking the database
    # again: so long may a revoked key keep working. 0 asks on every request.
    "SITE_KEY_CACHE_SECONDS": 5.0,
    # Accounts: a sign-in (refresh-token family) ends when unused this long, and in any
    # case after the absolute time.
    # Threads per worker process that hash and check passwords: workers x threads about
    # the machine's cores (more only thrash the caches; requests wait for one cheaply).
    "PASSWORD_THREADS": 1,
    "REFRESH_IDLE_SECONDS": 30 * 86400,
    "REFRESH_ABSOLUTE_SECONDS": 90 * 86400,
    # Failed logins allowed per account and per client IP within 15 minutes before
    # logins wait (1 s, then 2, 4, ... up to 15 min per account, 1 h per IP).
    "LOGIN_ACCOUNT_FAILURES": 5,
    "LOGIN_IP_FAILURES": 20,
    # Seconds a client may take to send a request's line and headers (and to start the
    # next one on a kept-alive connection), and to send a JSON body; the import has its
    # own limit (MAX_IMPORT_SECONDS). A slower client is cut off.
    "HEADER_TIMEOUT_SECONDS": 10.0,
    "BODY_TIMEOUT_SECONDS": 30.0,
    # Seconds a client may leave a piece of an answer unread (the export sends 64 KiB at
    # a time): then the connection is cut and what the answer held is let go.
    "SEND_TIMEOUT_SECONDS": 120.0,
    # Subscriber exports one worker streams at once (each holds a few MB while its client
    # reads): past it, a new one is a 503 with Retry-After, so exports nobody reads cannot
    # take the worker's memory.
    "MAX_EXPORTS_PER_WORKER": 16,
    # Bytes in one JSON request body; the import endpoint has its own, larger limit.
    "MAX_BODY_BYTES": 1024 * 1024,
    "MAX_IMPORT_BYTES": 256 * 1024 * 1024,
    # Profiles written per transaction by the bulk import.
    "IMPORT_BATCH_SIZE": 1000,
    # Helper processes (per server process) that check import lines while it writes;
    # 0 checks them in the server process itself.
    "IMPORT_PROCESSES": 2,
    # An import ends with 413 past this many lines, and with 408 past this many seconds
    # (a client trickling its body); the lines written before stay written.
    "MAX_IMPORT_LINES": 3_000_000,
    "MAX_IMPORT_SECONDS": 600,
    # An import whose body stops arriving for this long ends with 408 (and lets go of the
    # site's import lock and its connection), however long it may take in all.
    "IMPORT_IDLE_SECONDS": 30.0,
    # Social sign-in: a provider is on when its client id is set (its endpoints answer 404
    # otherwise). Google and LinkedIn are found by their OpenID Connect discovery
    # document; Facebook by its three endpoints (Graph API version in the path).
    "GOOGLE_CLIENT_ID": None,
    "GOOGLE_CLIENT_SECRET": None,
    "GOOGLE_DISCOVERY_URL": "https://accounts.google.com/.well-known/openid-configuration",
    "LINKEDIN_CLIENT_ID": None,
    "LINKEDIN_CLIENT_SECRET": None,
    "LINKEDIN_DISCOVERY_URL": "https://www.linkedin.com/oauth/.well-known/openid-configuration",
    "FACEBOOK_CLIENT_ID": None,
    "FACEBOOK_CLIENT_SECRET": None,
    "FACEBOOK_AUTHORIZE_URL": "https://www.facebook.com/v21.0/dialog/oauth",
    "FACEBOOK_TOKEN_URL": "https://graph.facebook.com/v21.0/oauth/access_token",
    "FACEBOOK_USERINFO_URL": "https://graph.facebook.com/v21.0/me",
    # Seconds each call to a provider may take (connecting, then each read) before the
    # sign-in fails with 502; and how long a sign-in begun at `authorize` may take.
    "SOCIAL_TIMEOUT_SECONDS": 10.0,
    "SOCIAL_FLOW_SECONDS": 600,
    # Retention (`identity prune`): days each kind of data is kept once its
    # purpose has passed (identity.services.retention).
    "RETENTION_LOGIN_ATTEMPTS_DAYS": 90,
    "RETENTION_SIGN_INS_DAYS": 30,
    "RETENTION_MAILED_LINKS_DAYS": 30,
    "RETENTION_MAIL_DAYS": 30,
    "RETENTION_SPENT_REFRESH_TOKENS_DAYS": 30,
    "RETENTION_AUDIT_EVENTS_DAYS": 400,
    # Staff acting as a person: how long the access token lasts (at most the access
    # tokens' own lifetime). A person erasing themselves without their password: how
    # recent the sign-in must be.
    "IMPERSONATION_SECONDS": 600,
    "FRESH_SIGN_IN_SECONDS": 300,
    # On SIGTERM a worker finishes its requests for this long, then is stopped. An import
    # ends at its next batch at once, answering 503 with how far it got.
    "STOP_GRACE_SECONDS": 20,
    # On SIGTERM the server first keeps serving this long with /health/ready answering
    # 503, so the load balancer takes it out before it stops taking connections.
    "DRAIN_SECONDS": 0.0,
}

# Longer than any purpose lasts, and what PostgreSQL's intervals hold with room to spare.
MAX_RETENTION_DAYS = 36500

_TYPES = {key: type(value) for key, value in DEFAULTS.items() if value is not None}
REQUIRED_IN_PRODUCTION = ("DATABASE_URL", "SECRET_KEY", "PUBLIC_URL")
PASSWORD_COST_FLOOR = {
    "PASSWORD_TIME_COST": 2,
    "PASSWORD_MEMORY_KIB": 19456,
    "PASSWORD_PARALLELISM": 1,
}


def load_config(overrides: dict | None = None, environ: dict | None = None) -> dict:
    """The settings in force: defaults, then IDENTITY_* variables, then `overrides`."""
    environ = os.environ if environ is None else environ
    config = dict(DEFAULTS)
    for key in DEFAULTS:
        raw = environ.get(f"IDENTITY_{key}")
        if raw is None or raw == "":
            continue
        config[key] = _parse(key, raw)
    config.update(overrides or {})
    _check(config, environ)
    return config


_BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _parse(key: str, raw: str):
    kind = _TYPES.get(key, str)
    if kind is bool:
        if raw.strip().lower() not in _BOOLEANS:
            raise ConfigurationError(f"IDENTITY_{key} must be 1 or 0 (true or false), got {raw!r}")
        return _BOOLEANS[raw.strip().lower()]
    try:
        return kind(raw)
    except ValueError:
        raise ConfigurationError(f"IDENTITY_{key} must be a {kind.__name__}, got {raw!r}") from None


def _check(config: dict, environ) -> None:
    if config["ENV"] not in ("development", "production"):
        raise ConfigurationError("IDENTITY_ENV must be 'development' or 'production'")
    _check_password_cost(config)
    _check_public_url(config["PUBLIC_URL"])
    trusted_proxies(config["TRUSTED_PROXIES"])
    if config["PASSWORD_RESET_ANSWER_SECONDS"] < 0:
        raise ConfigurationError("IDENTITY_PASSWORD_RESET_ANSWER_SECONDS must be 0 or more")
    if config["PASSWORD_THREADS"] < 1:
        raise ConfigurationError("IDENTITY_PASSWORD_THREADS must be at least 1")
    if not 1 <= config["UNSUBSCRIBE_KEY_ID"] <= 255:
        raise ConfigurationError("IDENTITY_UNSUBSCRIBE_KEY_ID must be 1 to 255")
    _check_social(config)
    if config["MIGRATION_DATABASE_URL"] and not config["DATABASE_URL"]:
        # The embedded database has its own two roles; a migration URL alone is a slip.
        raise ConfigurationError(
            "IDENTITY_MIGRATION_DATABASE_URL is set without IDENTITY_DATABASE_URL (the"
            " serving role's URL, whose user the upgrade grants rights to rows)"
        )
    _check_bind("MAIL_METRICS_BIND", config["MAIL_METRICS_BIND"])
    for key in [k for k in config if k.startswith("RETENTION_")]:
        if not 1 <= config[key] <= MAX_RETENTION_DAYS:
            raise ConfigurationError(
                f"IDENTITY_{key} must be from 1 to {MAX_RETENTION_DAYS} (a hundred years)"
            )
    for key in ("MAIL_LEASE_SECONDS", "MAIL_LATE_SECONDS", "SMTP_TIMEOUT_SECONDS"):
        if config[key] <= 0:
            raise ConfigurationError(f"IDENTITY_{key} must be more than 0")
    if config["ENV"] != "production":
        return
    missing = [
        f"IDENTITY_{key}" for key in REQUIRED_IN_PRODUCTION if not environ.get(f"IDENTITY_{key}")
    ]
    if missing:
        raise ConfigurationError(f"production needs {', '.join(missing)} to be set")
    _check_secret_key(config["SECRET_KEY"])
    _check_smtp_tls(config["SMTP_URL"])
    _check_database_tls(config["DATABASE_URL"], environ)
    _check_database_tls(config["MIGRATION_DATABASE_URL"], environ, "MIGRATION_DATABASE_URL")
    if not config["PUBLIC_URL"].startswith("https://"):
        # One-click unsubscribe (RFC 8058) needs https.
        raise ConfigurationError("IDENTITY_PUBLIC_URL must be https:// in production")


def _check_bind(key: str, bind: str | None) -> None:
    """`host:port` (an IPv6 host in brackets), or unset."""
    if bind is None:
        return
    host, colon, port = bind.rpartition(":")
    if not (colon and host and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigurationError(
            f"IDENTITY_{key} must be host:port (127.0.0.1:9101, [::1]:9101), got {bind!r}"
        )


SOCIAL_URLS = {
    "GOOGLE": ("DISCOVERY_URL",),
    "LINKEDIN": ("DISCOVERY_URL",),
    "FACEBOOK": ("AUTHORIZE_URL", "TOKEN_URL", "USERINFO_URL"),
}


def _check_social(config: dict) -> None:
    """A provider turned on (its client id set) needs its secret and absolute http(s)
    endpoints; https in production (the code and the client secret travel to them)."""
    for provider, urls in SOCIAL_URLS.items():
        if not config[f"{provider}_CLIENT_ID"]:
            continue
        if not config[f"{provider}_CLIENT_SECRET"]:
            raise ConfigurationError(
                f"IDENTITY_{provider}_CLIENT_ID is set without IDENTITY_{provider}_CLIENT_SECRET"
            )
        for name in urls:
            url = config[f"{provider}_{name}"] or ""
            schemes = ("https",) if config["ENV"] == "production" else ("https", "http")
            parts = urlsplit(url)
            if parts.scheme not in schemes or not parts.hostname or parts.username:
                raise ConfigurationError(
                    f"IDENTITY_{provider}_{name} must be an absolute {' or '.join(schemes)}://"
                    " URL without a user name"
                )
    if config["SOCIAL_TIMEOUT_SECONDS"] <= 0 or config["SOCIAL_FLOW_SECONDS"] < 60:
        raise ConfigurationError(
            "IDENTITY_SOCIAL_TIMEOUT_SECONDS must be more than 0 and"
            " IDENTITY_SOCIAL_FLOW_SECONDS at least 60"
        )


def _check_password_cost(config: dict) -> None:
    """OWASP's minimum for argon2id, unless a test suite outside production asks for less."""
    if config["CHEAP_PASSWORD_HASHING"]:
        if config["ENV"] == "production":
            raise ConfigurationError(
                "IDENTITY_CHEAP_PASSWORD_HASHING is for test suites; production hashes at"
                " OWASP's minimum or more"
            )
        return
    for key, floor in PASSWORD_COST_FLOOR.items():
        if config[key] < floor:
            raise ConfigurationError(f"IDENTITY_{key} must be at least {floor} (OWASP's minimum)")


# What a URL may hold and still go into a List-Unsubscribe header and a mail's links as
# it is: a host name or bracketed IPv6 address, a port, and RFC 3986's path characters,
# a % only as the start of an escape.
_URL = re.compile(
    r"https?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
    r"(?:/(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})*)?"
)


def _check_public_url(url: str) -> None:
    """The base of every link the service hands out: http(s), a host, perhaps a port
    (1-65535) and a path; no query, fragment, space or angle bracket (it ends up inside
    `<...>` in a mail header)."""
    found = _URL.fullmatch(url)
    port = found and found["port"]
    if not found or (port and not 1 <= int(port) <= 65535):
        raise ConfigurationError(
            "IDENTITY_PUBLIC_URL must be http(s)://host[:port][/path], without a query,"
            " a fragment or spaces"
        )


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _as_ipv4_when_mapped(network):
    """::ffff:10.0.0.0/104 as the 10.0.0.0/8 it is: a connection's address is read as IPv4
    when it is one written as IPv6, so that is how a proxy's must be written to match."""
    mapped = getattr(network.network_address, "ipv4_mapped", None)
    if mapped is None or network.prefixlen < 96:
        return network
    return ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")


def trusted_proxies(value: str | None) -> tuple[Network, ...]:
    """The networks of IDENTITY_TRUSTED_PROXIES: each entry a CIDR (10.0.0.0/8,
    2001:db8::/48) or one address, separated by commas. An entry that is neither refuses
    the start: a proxy left out would have every browser behind it count as that proxy,
    and one read too widely would let a browser name any address it likes. So does a
    CIDR with host bits set (10.0.0.1/8), which may mean one address or the network."""
    networks = []
    for entry in (value or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry)
            if getattr(network.network_address, "scope_id", None):
                raise ValueError("a %zone names an interface of this machine, not a proxy")
            networks.append(_as_ipv4_when_mapped(network))
        except ValueError as error:
            raise ConfigurationError(
                f"IDENTITY_TRUSTED_PROXIES: {entry!r} is not a network ({error}); give"
                " comma-separated CIDRs such as 10.0.0.0/8, 2001:db8::/48, or single addresses"
            ) from None
    return tuple(networks)


def _check_secret_key(secret: str) -> None:
    """Production's root of every key (identity.security.derived_keys) must be random; the
    message says which rule it fails, never the value."""
    from identity.security.derived_keys import ROOT_RULE, root_secret_weakness

    weakness = "is the development value" if secret == DEV_SECRET_KEY else None
    weakness = weakness or root_secret_weakness(secret)
    if weakness:
        raise ConfigurationError(
            f"IDENTITY_SECRET_KEY {weakness}: production needs a random value of {ROOT_RULE};"
            " make one with `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )


def _check_smtp_tls(url: str | None) -> None:
    """Mail carries sign-in links: to the relay over TLS, implicit (smtps://) or STARTTLS
    (?starttls=1), whose certificate the relay checks. Unset (mail to the log) is left to
    the operator."""
    if not url:
        return
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed [ of an IPv6 address, say
        parts = urlsplit("")
    starttls = parse_qs(parts.query).get("starttls", ["0"])[0] in ("1", "true", "yes")
    if parts.scheme != "smtps" and not starttls:
        raise ConfigurationError(
            "IDENTITY_SMTP_URL must use TLS in production: smtps://host:465, or"
            " smtp://host:587?starttls=1"
        )


def _check_database_tls(url: str | None, environ, key: str = "DATABASE_URL") -> None:
    """Over TCP, even to localhost, only with TLS whose certificate and host name are
    checked (sslmode=verify-full); a Unix socket needs none. libpq's PGHOST, PGHOSTADDR and
    PGSSLMODE count where the URL is silent, as they do when it connects."""
    from psycopg.conninfo import conninfo_to_dict

    if not url:
        return
    try:
        params = conninfo_to_dict(url)
    except Exception:  # its message would quote the URL, password and all
        raise ConfigurationError(
            f"IDENTITY_{key} is not a PostgreSQL URL (postgresql://user:password@host:5432/name)"
        ) from None
    if params.get("service") or environ.get("PGSERVICE"):
        # What a pg_service.conf entry holds is read by libpq at connect time, not here.
        raise ConfigurationError(
            f"IDENTITY_{key} names a pg_service.conf entry: in production write its"
            " host and sslmode=verify-full in the URL itself, so they can be checked"
        )
    hosts = str(params.get("host") or environ.get("PGHOST") or "").split(",")
    hostaddr = params.get("hostaddr") or environ.get("PGHOSTADDR")
    sslmode = params.get("sslmode") or environ.get("PGSSLMODE")
    over_tcp = bool(hostaddr) or any(host and not host.startswith(("/", "@")) for host in hosts)
    if over_tcp and sslmode != "verify-full":
        raise ConfigurationError(
            f"IDENTITY_{key} reaches PostgreSQL over TCP without sslmode=verify-full:"
            " in production add ?sslmode=verify-full (and sslrootcert= when the server's"
            " certificate is not signed by a system CA), or connect over a Unix socket"
            " (postgresql:///name?host=/var/run/postgresql)"
        )
