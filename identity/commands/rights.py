"""The person's rights and the staff, for operators: retention (`identity prune`),
backups and the erasure ledger, staff roles."""

from pathlib import Path

import click

from identity.commands.common import _config, _run, database_url, unit_of_work


@click.group()
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


@click.command("prune")
def prune():
    """Remove what has outlived its purpose: `identity retention run`, by its short name.
    Safe on a schedule while the service runs (short batches, each committed alone)."""
    run_retention.callback()


@click.command("backup")
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


@click.group()
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


@click.group()
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
