"""The `identity` console script: serve, migrate, sign-ins, signing keys, companies, the
OpenAPI document; the other groups are identity.commands' (sites, mail, the person's
rights and staff), registered here."""

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import psycopg

from identity.commands import mail, rights, sites
from identity.commands.common import (
    DatabaseUrls,
    _config,
    _run,
    connection,
    database_urls,
    unit_of_work,
)
from identity.store import migrations

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


for command in (
    sites.sites,
    mail.mail,
    rights.retention,
    rights.prune,
    rights.backup,
    rights.erasures,
    rights.staff,
):
    main.add_command(command)
