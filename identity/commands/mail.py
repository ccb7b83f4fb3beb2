"""`identity mail`: deliver the outbox, look into it, resend, check the relay."""

import json
import signal
import sys

import click

from identity.commands.common import _config, _run, connection, database_url


@click.group()
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
