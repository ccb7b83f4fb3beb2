"""The composition root: the one place the service's parts are put together from the
settings (`create_app` calls `build`). Kept out of `identity.services`, whose package
must stay light: the import's helper processes load a service module or two and nothing
else."""

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import psycopg

from identity.concurrency import CpuThreads, Slots
from identity.security.access_tokens import KeyRing
from identity.security.passwords import Passwords
from identity.security.unsubscribe_tokens import UnsubscribeTokens
from identity.services.accounts import Accounts, account_settings
from identity.services.accounts.social import SocialLogin
from identity.services.admin import StaffWork
from identity.services.companies import Companies, CompanySettings
from identity.services.erasure import Erasure
from identity.services.newsletters import Newsletters
from identity.services.pictures import Logos, Pictures
from identity.services.sites import RecentSiteKeys
from identity.services.suppression import Suppression
from identity.social.providers import Provider, provider_settings


@dataclass
class Services:
    """The services of one process, built once. `clock` is the time source of everything
    time-limited (site keys kept, an import's deadline): tests replace it to move time
    without sleeping."""

    accounts: Accounts
    social: SocialLogin
    companies: Companies
    newsletters: Newsletters
    pictures: Pictures
    logos: Logos
    key_ring: KeyRing
    recent_site_keys: RecentSiteKeys
    suppression: Suppression
    erasure: Erasure
    staff_work: StaffWork
    exports: Slots
    clock: Callable[[], float] = field(default=time.monotonic)


def build(
    settings: dict, connection: Callable[[], AbstractContextManager[psycopg.Connection]]
) -> Services:
    """The services for `settings` (identity.config's), the signing keys read through
    `connection()`: a connection lent for a moment, beside any request's transaction."""
    ring = KeyRing(
        connection,
        settings["SECRET_KEY"],
        access_token_seconds=settings["ACCESS_TOKEN_SECONDS"],
    )
    passwords = Passwords.from_settings(settings, offload=CpuThreads(settings["PASSWORD_THREADS"]))
    accounts = Accounts.build(account_settings(settings), passwords, ring)
    providers = {
        name: Provider(provider, timeout=settings["SOCIAL_TIMEOUT_SECONDS"])
        for name, provider in provider_settings(settings).items()
    }
    # One thread a worker re-encodes pictures and logos: a few at once would only queue.
    images = CpuThreads(1)
    companies = Companies(CompanySettings(account_settings(settings)))
    erasure = erasure_of(settings, passwords)
    suppression = erasure.suppression
    services = Services(
        accounts=accounts,
        social=SocialLogin(
            account_settings(settings), providers, accounts.login, settings["SOCIAL_FLOW_SECONDS"]
        ),
        companies=companies,
        newsletters=Newsletters(
            UnsubscribeTokens(settings["SECRET_KEY"], settings["UNSUBSCRIBE_KEY_ID"]),
            settings["PUBLIC_URL"],
            suppression,
            confirm_hours=settings["NEWSLETTER_CONFIRM_HOURS"],
            catalog_seconds=settings["NEWSLETTER_CATALOG_SECONDS"],
            clock=lambda: services.clock(),
        ),
        pictures=Pictures(offload=images),
        logos=Logos(companies.may, offload=images),
        key_ring=ring,
        recent_site_keys=RecentSiteKeys(
            settings["SITE_KEY_CACHE_SECONDS"], clock=lambda: services.clock()
        ),
        exports=Slots(settings["MAX_EXPORTS_PER_WORKER"]),
        suppression=suppression,
        erasure=erasure,
        staff_work=StaffWork(
            account_settings(settings), ring, erasure, settings["IMPERSONATION_SECONDS"]
        ),
    )
    return services


def erasure_of(settings: dict, passwords: Passwords | None = None) -> Erasure:
    """Erasure for `settings` (an operator's command makes one with no other service)."""
    if passwords is None:
        passwords = Passwords.from_settings(settings, offload=CpuThreads(1))
    return Erasure(
        account_settings(settings),
        passwords,
        Suppression(settings["SECRET_KEY"]),
        settings["FRESH_SIGN_IN_SECONDS"],
    )
