"""The `identity` console script: serve, migrate, site and signing keys, the OpenAPI document."""

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import click
import psycopg
from psycopg.rows import dict_row

from identity.config import load_config
from identity.errors import ConfigurationError, IdentityError
from identity.services.sites import SCOPES
from identity.store import migrations
from identity.store.transactions import UnitOfWork

EMBEDDED_DATABASE = "identity"
# multiprocessing's resource tracker (beside each worker's import helpers) says in a line
# of plain text, at shutdown, that it frees what a helper pool leaves behind: it does
# free it, and every line `identity serve` writes is JSON.
_QUIET_TRACKER = "ignore::UserWarning:multiprocessing.resource_tracker"

log = logging.getLogger(__name__)


class _Commands(click.Group):
    """The commands, each failing with one `Error:` line and a non-zero exit, never a
    traceback: a database that cannot be reached or has no schema yet, a malformed URL, a
    path that cannot be written."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except psycopg.errors.UndefinedTable:
            raise click.ClickException(
                "the database has no schema yet: run `identity db upgrade`"
            ) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            # PostgreSQL's message names the object, never the URL.
            raise click.ClickException(
                f"the database refused: {exc.diag.message_primary}; the serving role"
                " (IDENTITY_DATABASE_URL) may only read and write rows, what needs more"
                " runs as the owner (IDENTITY_MIGRATION_DATABASE_URL, docs/serving.md)"
            ) from None
        except psycopg.OperationalError as exc:
            # libpq's first line says what failed (refused, unknown host, bad password);
            # it names the host and port, never the URL's password.
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
            raise click.ClickException(f"the database cannot be reached: {reason}") from None
        except psycopg.ProgrammingError:
            # The message would quote the URL, password and all.
            raise click.ClickException(
                "IDENTITY_DATABASE_URL is not a PostgreSQL URL"
                " (postgresql://user:password@host:5432/name)"
            ) from None
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from None


@click.group(cls=_Commands)
def main():
    """identity: the one user record of copernica.com, smtpeter.com and mailerq.com."""
    from identity import logs

    logs.configure()


class DatabaseUrls(NamedTuple):
    """Where the service connects: as the serving role (rights to rows only) and as the
    role that owns the schema and migrates it (docs/serving.md, "Database roles")."""

    serving: str
    migration: str


@contextmanager
def database_urls():
    """IDENTITY_DATABASE_URL and IDENTITY_MIGRATION_DATABASE_URL (unset: the first), or
    the embedded PostgreSQL under .data/ with a role of each kind (stopped on exit)."""
    config = _config()
    if config["DATABASE_URL"]:
        yield DatabaseUrls(
            config["DATABASE_URL"], config["MIGRATION_DATABASE_URL"] or config["DATABASE_URL"]
        )
        return
    from identity.embedded import (
        OWNER_ROLE,
        SERVING_ROLE,
        ensure_database,
        ensure_role,
        start_embedded,
        with_database,
    )

    server = _run(start_embedded, Path(config["DATA_DIR"]).resolve() / "pg")
    try:
        server_url = server.get_uri()
        owner, serving = ensure_role(server_url, OWNER_ROLE), ensure_role(server_url, SERVING_ROLE)
        ensure_database(server_url, EMBEDDED_DATABASE, owner=OWNER_ROLE)
        yield DatabaseUrls(
            with_database(serving, EMBEDDED_DATABASE), with_database(owner, EMBEDDED_DATABASE)
        )
    finally:
        server.cleanup()


@contextmanager
def database_url():
    """The serving role's URL: every command but the migration's connects as it."""
    with database_urls() as urls:
        yield urls.serving


def migrate(urls: DatabaseUrls) -> None:
    """Apply the pending migrations as the owner, then grant the serving role its rights
    to rows (unless both URLs log in as the same role: then it owns what it serves)."""
    serving_role = None
    if urls.migration != urls.serving:
        from identity.store.roles import current_role

        serving_role = current_role(urls.serving)
    with psycopg.connect(urls.migration, autocommit=True) as conn:
        applied = migrations.upgrade(conn, serving_role=serving_role)
    _report_migrations(applied)


@contextmanager
def connection():
    with database_url() as url, psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@contextmanager
def unit_of_work():
    """A unit of work on a connection of the command's own."""
    with connection() as conn:
        yield UnitOfWork.of(conn)


@main.command()
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="gunicorn worker processes",
)
@click.option(
    "--mail/--no-mail", default=True, show_default=True, help="run a mail delivery worker beside"
)
def serve(workers: int, mail: bool):
    """Migrate, then serve on 127.0.0.1:$PORT (8000) with gunicorn, and deliver mail,
    until Ctrl-C or SIGTERM. The mail delivery worker is started again whenever it exits."""
    config = _config()
    if mail and config["SMTP_URL"]:
        # Refused now, with the reason, rather than by a worker started again and again.
        from identity.mail.relay import parse_smtp_url

        _run(parse_smtp_url, config["SMTP_URL"])
    with database_urls() as urls, tempfile.TemporaryDirectory(prefix="identity-metrics-") as counts:
        migrate(urls)
        url = urls.serving
        # GET /metrics adds up what every process counted: the server's workers and the
        # courier write their counts to files in this directory, fresh for each start.
        env = {
            **os.environ,
            "IDENTITY_DATABASE_URL": url,
            "PYTHONWARNINGS": _QUIET_TRACKER,
            "PROMETHEUS_MULTIPROC_DIR": counts,
        }
        # What serves never holds the owner's password.
        env.pop("IDENTITY_MIGRATION_DATABASE_URL", None)
        # The app factory rather than the checkout's wsgi.py: an installed wheel has no
        # checkout to change into.
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:identity.gunicorn_conf",
            "--workers",
            str(workers),
            "identity:create_app()",
        ]
        server = subprocess.Popen(command, env=env)  # noqa: S603 - fixed command
        deliver = [sys.executable, "-m", "identity", "mail", "deliver"]
        courier = CourierProcess(deliver, env) if mail else None
        children = [server, courier] if courier else [server]
        # gunicorn and the courier stop gracefully on SIGTERM and SIGINT; pass ours on,
        # then wait for them, so the embedded database is stopped only after the last
        # request is answered and the last mail handed over.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda signum, _frame: _signal_all(children, signum))
        while server.poll() is None:
            if courier is not None:
                courier.tend()
            time.sleep(0.2)
        _signal_all(children, signal.SIGTERM)  # gunicorn may have stopped on its own
        for child in children:
            child.wait()
    sys.exit(server.returncode)


def _signal_all(children: list, signum: int) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signum)


class CourierProcess:
    """The mail delivery worker beside `identity serve`, started again whenever it exits
    (a kill, a crash) until the server stops: after a pause of 1 s, doubling while it
    keeps exiting up to 30 s, back to 1 s once it has run a minute. Each exit is logged
    with its exit code or signal."""

    FIRST_PAUSE = 1.0
    MAX_PAUSE = 30.0
    RAN_LONG_ENOUGH = 60.0

    def __init__(self, command: list[str], env: dict):
        self.command = command
        self.env = env
        self.stopping = False
        self.pause = self.FIRST_PAUSE
        self.restart_at: float | None = None
        self._start()

    def _start(self) -> None:
        self.process = subprocess.Popen(self.command, env=self.env)  # noqa: S603 - fixed command
        self.started_at = time.monotonic()
        self.restart_at = None

    def tend(self) -> None:
        """Notice an exit, and start the worker again once its pause is over."""
        if self.stopping:
            return
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                self._start()
            return
        code = self.process.poll()
        if code is None:
            return
        ran = now - self.started_at
        if ran >= self.RAN_LONG_ENOUGH:
            self.pause = self.FIRST_PAUSE
        log.warning(
            "mail courier exited; starting it again",
            extra={
                "pid": self.process.pid,
                "exit_code": code if code >= 0 else None,
                "signal": _signal_name(-code) if code < 0 else None,
                "ran_seconds": round(ran, 1),
                "restart_in_seconds": self.pause,
            },
        )
        self.restart_at = now + self.pause
        self.pause = min(self.MAX_PAUSE, self.pause * 2)

    def poll(self) -> int | None:
        return None if self.restart_at is not None else self.process.poll()

    def send_signal(self, signum: int) -> None:
        self.stopping = True
        self.process.send_signal(signum)

    def wait(self) -> int:
        self.stopping = True
        return self.process.wait()


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


@main.group()
def db():
    """The database schema."""


@db.command()
def upgrade():
    """Apply the pending migrations as IDENTITY_MIGRATION_DATABASE_URL's role (safe while
    other replicas start too), then grant IDENTITY_DATABASE_URL's role rights to rows."""
    with database_urls() as urls:
        migrate(urls)


def _report_migrations(applied: list[str]) -> None:
    """A JSON log line, as every line `identity serve` writes."""
    if applied:
        log.info("migrations applied", extra={"applied": applied})
    else:
        log.info("migrations are current")


@main.group()
def sites():
    """The sites that call the service, and their keys."""


def _site_options(command):
    """The settings of a site, as `sites create` and `sites update` take them."""
    options = [
        click.option("--brand", help='the name its mails use, e.g. "SMTPeter"'),
        click.option("--sender", help='the From of its mails: "Name <address>"'),
        click.option(
            "--pages",
            metavar="URL",
            help="the base URL of its pages: {pages}/verify-email?token=... and the rest",
        ),
        click.option(
            "--redirect-uri",
            "redirect_uris",
            multiple=True,
            metavar="URL",
            help="an exact URL it may use for social sign-in (repeatable; replaces the list)",
        ),
        click.option("--no-redirect-uris", is_flag=True, help="leave it no redirect URI"),
        click.option("--language", type=click.Choice(["en", "nl"]), help="of its mails"),
        click.option(
            "--list",
            "lists",
            multiple=True,
            metavar="LIST",
            help="a newsletter list it manages (repeatable; replaces the lists it had)",
        ),
        click.option("--no-lists", is_flag=True, help="let it manage no list"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _site_settings(options: dict):
    from identity.services.sites import SiteSettings

    if options["no_redirect_uris"] and options["redirect_uris"]:
        raise click.UsageError("--redirect-uri and --no-redirect-uris exclude each other")
    if options["no_lists"] and options["lists"]:
        raise click.UsageError("--list and --no-lists exclude each other")
    redirect_uris = list(options["redirect_uris"]) or ([] if options["no_redirect_uris"] else None)
    lists = list(options["lists"]) or ([] if options["no_lists"] else None)
    return SiteSettings(
        brand=options["brand"],
        sender=options["sender"],
        pages=options["pages"],
        redirect_uris=redirect_uris,
        language=options["language"],
        lists=lists,
    )


@sites.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help=f"what the key may do (repeatable): {', '.join(SCOPES)}, newsletters:<list>",
)
@_site_options
def create_site_command(name: str, scopes: tuple[str, ...], **options):
    """Make site NAME (or set the options given on it) and print a new key for it with
    exactly the scopes named, on the last line. The key is shown once."""
    from identity.services.sites import create_site

    settings = _site_settings(options)
    production = _config()["ENV"] == "production"
    with unit_of_work() as uow:
        key = _run(
            uow.run,
            lambda: create_site(uow, name, list(scopes), settings, production=production),
        )
    click.echo(f"a new key for {name}; it is shown only now:", err=True)
    click.echo(key)


@sites.command("update")
@click.argument("name")
@_site_options
def update_site_command(name: str, **options):
    """Set the options given on site NAME; what is not given stays as it is."""
    from identity.services.sites import update_site

    settings = _site_settings(options)
    production = _config()["ENV"] == "production"
    with unit_of_work() as uow:
        _run(uow.run, lambda: update_site(uow, name, settings, production=production))
    click.echo(f"updated {name}", err=True)


@sites.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="one JSON document")
def show_site(name: str, as_json: bool):
    """Site NAME: brand, sender, pages, redirect URIs, language, lists, keys and scopes."""
    from identity.services.sites import describe_sites

    with unit_of_work() as uow:
        (site,) = _run(describe_sites, uow, name)
    click.echo(json.dumps(site, default=str, indent=2) if as_json else _site_text(site))


@sites.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON array")
def list_sites(as_json: bool):
    """Every site with its settings and its keys' scopes."""
    from identity.services.sites import describe_sites

    with unit_of_work() as uow:
        found = describe_sites(uow)
    if as_json:
        click.echo(json.dumps(found, default=str, indent=2))
        return
    click.echo("\n\n".join(_site_text(site) for site in found) or "no sites yet", err=not found)


def _site_text(site: dict) -> str:
    lines = [
        site["name"],
        f"  brand          {site['brand']}",
        f"  sender         {site['sender'] or '(IDENTITY_MAIL_FROM, named by the brand)'}",
        f"  pages          {site['pages'] or '(none: its mails are refused)'}",
        f"  redirect URIs  {' '.join(site['redirect_uris']) or '(none)'}",
        f"  language       {site['language']}",
        f"  lists          {' '.join(site['lists']) or '(none)'}",
    ]
    for key in site["keys"]:
        state = f"revoked {key['revoked_at']}" if key["revoked_at"] else "active"
        used = key["last_used_at"] or "never"
        lines.append(
            f"  key {key['prefix']}  {state}  last used {used}  scopes {' '.join(key['scopes'])}"
        )
    return "\n".join(lines)


@sites.command("revoke")
@click.argument("name")
@click.option("--key", "key_prefix", help="only the key starting with this (see `sites list`)")
def revoke_site(name: str, key_prefix: str | None):
    """Revoke every key of site NAME, or one of them."""
    from identity.services.sites import revoke_site_keys

    with unit_of_work() as uow:
        count = _run(uow.run, lambda: revoke_site_keys(uow, name, key_prefix))
    if not count:
        raise click.ClickException(f"no active key of {name} matches")
    click.echo(f"revoked {count} key{'s' if count != 1 else ''} of {name}")


@main.group()
def sessions():
    """People's sign-ins."""


@sessions.command("revoke")
@click.option("--email", "address", metavar="ADDRESS", help="end this person's sign-ins")
@click.option("--all", "everyone", is_flag=True, help="end everyone's sign-ins")
def revoke_sessions(address: str | None, everyone: bool):
    """End sign-ins: their refresh tokens are refused, and their access tokens at once by
    this service. A site that checks access tokens itself accepts them until they expire
    (about 15 minutes) unless it asks /v1/me."""
    from identity.services.accounts.sessions import end_every_sign_in, end_sign_ins_of

    if bool(address) == everyone:
        raise click.UsageError("give either --email ADDRESS or --all")
    with unit_of_work() as uow:
        if everyone:
            ended, whose = _run(uow.run, lambda: end_every_sign_in(uow)), "everyone"
        else:
            ended, whose = _run(uow.run, lambda: end_sign_ins_of(uow, address)), address
    click.echo(f"ended {ended} sign-in{'s' if ended != 1 else ''} of {whose}")


@main.group()
def keys():
    """The keys that sign access tokens."""


@keys.command("rotate")
@click.option(
    "--now",
    "at_once",
    is_flag=True,
    help="an emergency: the new key signs at once, before sites holding a cached key set"
    " have it (they fetch the set again on meeting its kid)",
)
@click.option(
    "--revoke-previous",
    is_flag=True,
    help="a leaked key: revoke every earlier key still published; the tokens they signed"
    " are refused on every replica within seconds and they leave the key set (implies --now)",
)
def rotate_keys(at_once: bool, revoke_previous: bool):
    """Make a new signing key (ES256) and retire the current one.

    The new key is published at once and signs after the key set's cache lifetime (about
    six minutes), once every site's cached copy holds it; until then the current key
    signs. A retired key stays published until the tokens it signed have expired."""
    from identity.security.access_tokens import publish_seconds, rotate_signing_key
    from identity.services.security_events import security_event

    config = _config()
    with connection() as conn:
        rotation = rotate_signing_key(
            conn,
            config["SECRET_KEY"],
            access_token_seconds=config["ACCESS_TOKEN_SECONDS"],
            at_once=at_once,
            revoke_previous=revoke_previous,
        )
    security_event(
        "signing_key.rotated",
        kid=rotation.kid,
        signs_from=rotation.signs_from,
        retired=rotation.retired,
        revoked=rotation.revoked,
    )
    when = "now" if at_once or revoke_previous else f"from {rotation.signs_from.isoformat()}"
    click.echo(f"made {rotation.kid}: published now, signs {when}")
    retired = [kid for kid in rotation.retired if kid not in rotation.revoked]
    seconds = publish_seconds(config["ACCESS_TOKEN_SECONDS"])
    for kid in retired:
        click.echo(f"retired {kid}: signs until then, published {seconds} s more")
    for kid in rotation.revoked:
        click.echo(f"revoked {kid}: its tokens are refused and it has left the key set")


@keys.command("list")
def list_keys():
    """Every signing key: kid, algorithm, created, signs from, retired, published until,
    revoked. Never a private part."""
    from identity.security.access_tokens import list_signing_keys

    with connection() as conn:
        for key in list_signing_keys(conn):
            click.echo(json.dumps(key, default=str))


@main.group()
def retention():
    """Data kept only as long as its purpose lasts."""


@retention.command("run")
def run_retention():
    """Remove what has outlived its purpose (login attempts after
    IDENTITY_RETENTION_LOGIN_ATTEMPTS_DAYS, ended sign-ins, used or expired links, sent
    mail, unfinished sign-ins, stale throttles, spent refresh tokens, the trail after
    IDENTITY_RETENTION_AUDIT_EVENTS_DAYS), in short batches; run it daily. The same as
    `identity prune`."""
    from identity.services import retention as service

    config = _config()
    days = {
        kind: config[f"RETENTION_{kind.upper()}_DAYS"]
        for kind in service.RETENTION_DAYS
        if f"RETENTION_{kind.upper()}_DAYS" in config
    }
    with unit_of_work() as uow:
        removed = _run(service.run, uow, days, lambda kind, n: click.echo(f"{kind:26} {n:>9}"))
    click.echo(f"removed {sum(removed.values())} rows")


@main.command("prune")
def prune():
    """Remove what has outlived its purpose: `identity retention run`, by its short name.
    Safe on a schedule while the service runs (short batches, each committed alone)."""
    run_retention.callback()


@main.command("backup")
@click.option(
    "--to",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("backups"),
    show_default=True,
    help="the folder the dump goes in",
)
def backup(folder: Path):
    """Write a consistent dump of the database (pg_dump, custom format) named by its time,
    without the erasure ledger and the suppression list: a restore then leaves both as
    they are, and `identity erasures reapply` erases again whoever was erased since the
    dump was made. Restore as the owner: `pg_restore --clean --if-exists -d
    "$IDENTITY_MIGRATION_DATABASE_URL" FILE`."""
    from identity import backups

    with database_url() as url:
        path = _run(backups.dump, url, folder)
    click.echo(str(path))


@main.group()
def erasures():
    """The ledger of erased people (ids only)."""


@erasures.command("reapply")
def reapply_erasures():
    """After a restore: erase again everyone in the ledger whose record the backup brought
    back. Run it after every restore, before the service serves again."""
    from identity import composition

    with unit_of_work() as uow:
        erasure = composition.erasure_of(_config())
        again = _run(erasure.reapply, uow)
    click.echo(f"erased again: {len(again)}")


@main.group()
def staff():
    """The service's own team: who has which staff role."""


@staff.command("grant")
@click.argument("address", metavar="EMAIL")
@click.argument("role", type=click.Choice(["support", "dpo", "admin"]))
def grant_staff(address: str, role: str):
    """Give the account with EMAIL the staff role ROLE (replacing any other). It works as
    staff only in a sign-in made with a second factor that is still on."""
    from identity.services import staff as service

    with unit_of_work() as uow:
        _run(uow.run, lambda: service.grant(uow, address, role))
    click.echo(f"{address} is {role} staff")


@staff.command("revoke")
@click.argument("address", metavar="EMAIL")
def revoke_staff(address: str):
    """Take the staff role of the account with EMAIL away, at its next request."""
    from identity.services import staff as service

    with unit_of_work() as uow:
        _run(uow.run, lambda: service.revoke(uow, address))
    click.echo(f"{address} is no staff any more")


@staff.command("list")
def list_staff():
    """Every staff member, their role, and whether they have a second factor on (without
    one the role does nothing)."""
    from identity.services import staff as service

    with unit_of_work() as uow:
        rows = _run(service.everyone, uow)
    for row in rows:
        factor = "second factor on" if row["second_factor"] else "NO second factor: inactive"
        click.echo(f"{row['role']:8} {row['email']}  since {row['granted_at']:%Y-%m-%d}  {factor}")


@main.group()
def companies():
    """Companies: which may be chosen as partner."""


@companies.command("partner")
@click.argument("company_id", type=click.UUID)
@click.option("--off", is_flag=True, help="no longer a partner: its customers lose it")
def flag_partner(company_id, off: bool):
    """Mark company COMPANY_ID as a partner, which customer companies may choose (their
    admins, with PUT /v1/companies/{id}/partner); with --off, no longer one."""
    from identity.services.companies import flag_partner as flag

    with unit_of_work() as uow:
        _run(uow.run, lambda: flag(uow, company_id, on=not off))
    click.echo(f"company {company_id} is {'no longer ' if off else ''}a partner")


@main.group()
def openapi():
    """The OpenAPI document."""


@openapi.command("write")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def write_openapi(path: Path):
    """Write the OpenAPI document the code describes to PATH."""
    from identity.api.openapi import openapi_document

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(openapi_document(), encoding="utf-8")
    click.echo(f"wrote {path}", err=True)


@main.group()
def mail():
    """The outbox: deliver it, look into it, resend, check the relay."""


@mail.command("deliver")
def deliver_mail():
    """Deliver queued mail until Ctrl-C or SIGTERM (as many workers as you like)."""
    import threading

    from identity.mail.courier import courier_from_settings

    config = _config()
    courier = _run(courier_from_settings, config)
    if config["MAIL_METRICS_BIND"]:
        from identity.metrics import serve_own

        serve_own(config["MAIL_METRICS_BIND"])
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    # The courier waits in `notifies()` up to a poll interval: a stop is seen by then.
    with database_url() as url:
        try:
            courier.run(url, stop)
        except Exception as exc:
            # Its type and where, as JSON: a traceback's words could hold a person's data.
            from identity.api.problems import log_server_fault

            log_server_fault(exc, None)
            sys.exit(1)


@mail.command("list")
@click.option("--failed", is_flag=True, help="only mails given up on")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def list_mail(failed: bool, limit: int):
    """The latest mails: id, status, template, recipient, tries, times, the relay's answer."""
    from identity.store import outbox

    with connection() as conn:
        for row in outbox.list_mails(conn, failed_only=failed, limit=limit):
            click.echo(json.dumps(row, default=str))


@mail.command("retry")
@click.argument("mail_id", type=int)
def retry_mail(mail_id: int):
    """Queue failed mail MAIL_ID again, now (not one whose single-use link was cleared when
    it failed)."""
    from identity.store import outbox

    with connection() as conn:
        before = outbox.requeue(conn, mail_id)
    if before is None:
        raise click.ClickException(f"no mail {mail_id}")
    if before == "cleared":
        raise click.ClickException(
            f"mail {mail_id} held a single-use link, cleared when it failed: the person asks"
            " again (a new reset, a new confirmation)"
        )
    if before != "failed":
        raise click.ClickException(f"mail {mail_id} is {before}, not failed; nothing to do")
    click.echo(f"mail {mail_id} is queued again")


@mail.command("test")
@click.argument("address")
def test_mail(address: str):
    """Send a test mail to ADDRESS now and say whether the relay took it."""
    from identity.mail import enqueue
    from identity.mail.courier import courier_from_settings
    from identity.services.contact import normalise_email
    from identity.store import outbox

    config = _config()
    courier = _run(courier_from_settings, config)
    address = _run(normalise_email, address)
    with connection() as conn:
        try:
            # Sent in the transaction that queues it, so no other worker (the one beside
            # `make run`) can see it, let alone take it, before this one has tried.
            with conn.transaction():
                mail_id = enqueue(conn, "test", address, "en")
                courier.deliver_due(conn, only_id=mail_id)
                # A check that did not go through is over: no worker sends it later,
                # perhaps with other settings than the ones being checked.
                outbox.give_up(conn, mail_id)
        finally:
            courier.close()
        row = outbox.get(conn, mail_id)
    if row["status"] != "sent":
        raise click.ClickException(
            f"the relay did not take mail {mail_id}: {row['last_error']}"
            f" (marked failed; `identity mail retry {mail_id}` sends it again)"
        )
    where = (
        "written to the log (IDENTITY_SMTP_URL is not set)"
        if courier.relay is None
        else (f"taken by the relay at {courier.relay.settings.host}:{courier.relay.settings.port}")
    )
    click.echo(f"mail {mail_id} was {where}")


def _config() -> dict:
    try:
        return load_config()
    except ConfigurationError as exc:
        raise click.ClickException(exc.detail) from None


def _run(action, *args):
    try:
        return action(*args)
    except IdentityError as exc:
        reasons = [reason for messages in (exc.errors or {}).values() for reason in messages]
        raise click.ClickException("; ".join([exc.detail, *reasons])) from None
