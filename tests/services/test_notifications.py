"""Notification settings called directly: the defaults until the person changes one, a
change of some events keeping the rest, and nothing of the newsletters touched."""

import uuid
from datetime import UTC, datetime

import pytest

from identity.services.notifications import (
    DEFAULTS,
    change_notification_settings,
    notification_settings,
)
from identity.services.principal import Principal, UserCaller
from identity.store.transactions import UnitOfWork


@pytest.fixture
def uow(conn):
    return UnitOfWork.of(conn)


def _person(conn, email="anna@example.com") -> Principal:
    user_id = conn.execute(
        "insert into users (email, email_key) values (%s, %s) returning id", (email, email)
    ).fetchone()["id"]
    signed_in = UserCaller(user_id, "smtpeter.com", uuid.uuid4(), datetime.now(UTC))
    return Principal(user=signed_in)


def change(uow, principal, changes) -> dict:
    return uow.run(lambda: change_notification_settings(uow, principal, changes))


def test_the_defaults_until_the_person_changes_something(uow, conn):
    assert notification_settings(uow, _person(conn)) == DEFAULTS


def test_a_change_sets_the_events_named_and_keeps_the_rest(uow, conn):
    anna, bob = _person(conn), _person(conn, "bob@example.com")
    answer = change(uow, anna, {"smtpeter": {"invoice": ["push", "email", "push"]}})
    assert answer["smtpeter"]["invoice"] == ["push", "email"]  # in the channels' order, once
    change(uow, anna, {"mailerq": {"security": []}})
    now = notification_settings(uow, anna)
    assert now["smtpeter"]["invoice"] == ["push", "email"] and now["mailerq"]["security"] == []
    assert now["smtpeter"]["security"] == DEFAULTS["smtpeter"]["security"]
    assert notification_settings(uow, bob) == DEFAULTS
    untouched = conn.execute(
        "select (select count(*) from subscriptions) + (select count(*) from consent_events) as n"
    ).fetchone()
    assert untouched["n"] == 0  # these are no consent to newsletters


def test_a_kept_setting_of_an_event_no_longer_offered_is_not_shown(uow, conn):
    anna = _person(conn)
    conn.execute(
        "insert into notification_settings (user_id, dashboard, event, channels)"
        " values (%s, 'smtpeter', 'retired-event', '{email}')",
        (anna.user.user_id,),
    )
    assert notification_settings(uow, anna) == DEFAULTS
