"""`identity sites`: the sites that call the service, their settings and keys."""

import json

import click

from identity.commands.common import _config, _run, unit_of_work
from identity.services.sites import SCOPES


@click.group()
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
