"""The signed-in person's own newsletter flags and, apart from them, their notification
settings per product dashboard."""

from http import HTTPStatus

from flask.views import MethodView

from identity.api.guards import Blueprint, caller, principal, services
from identity.api.newsletters import KEY_PARAMETER
from identity.db import unit_of_work
from identity.services.newsletters import Consent
from identity.services.notifications import (
    CHANNELS,
    DEFAULTS,
    change_notification_settings,
    notification_settings,
)
from schemas.accounts import BROWSER_FIELDS, BrowserSchema
from schemas.newsletters import FlagSchema, MyFlagChangeSchema, notification_settings_schema

blp = Blueprint(
    "my_newsletters",
    __name__,
    url_prefix="/v1/me",
    description="The signed-in person's newsletters and notification settings.",
)

_FLAGS_EXAMPLE = [
    {
        "key": "copernica",
        "name": "Copernica newsletter",
        "product": "copernica",
        "subscribed": True,
        "state": "subscribed",
    },
    {
        "key": "mailerq",
        "name": "MailerQ newsletter",
        "product": "mailerq",
        "subscribed": False,
        "state": "unsubscribed",
    },
]
# The schema of the settings, from the service's own catalog of events.
NotificationSettingsSchema = notification_settings_schema(
    {dashboard: tuple(events) for dashboard, events in DEFAULTS.items()}, CHANNELS
)


class NotificationSettingsChangeSchema(NotificationSettingsSchema, BrowserSchema):
    """A change, with the person's browser beside the dashboards, as every write under
    /v1/me takes it."""


_NOTIFICATIONS_EXAMPLE = {
    "marketing-suite": {"campaign-sent": ["in-app"], "invoice": ["in-app", "email"]},
    "smtpeter": {"quota-warning": ["in-app", "push", "email"]},
    "mailerq": {"security": ["in-app", "email"]},
}


@blp.route("/newsletters")
class MyNewsletters(MethodView):
    @blp.user_token()
    @blp.response(HTTPStatus.OK, FlagSchema(many=True), example=_FLAGS_EXAMPLE)
    def get(self):
        """The signed-in person's newsletters

        Every list with `subscribed` (and the flag's `state`; null: never subscribed).
        """
        return services().newsletters.mine(unit_of_work(), principal())


@blp.route("/newsletters/<key>", parameters=[KEY_PARAMETER])
class MyNewsletter(MethodView):
    @blp.user_token(impersonated=False)
    @blp.arguments(
        MyFlagChangeSchema, example={"subscribed": True, "consent_text": "newsletter settings v2"}
    )
    @blp.response(HTTPStatus.OK, FlagSchema(many=True), example=_FLAGS_EXAMPLE)
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    def put(self, body, key):
        """Subscribe to or leave a list, as the signed-in person

        `{subscribed: true}` subscribes at once: the sign-in has proven the address, so
        no confirmation mail is needed. `false` leaves the list. A change is kept as a
        consent event (channel `preference-page`, the site the person signed in through,
        `consent_text`, `client_ip` and `user_agent` when given). Every list's flag after
        the change.
        """
        person = caller(body)
        consent = Consent.of(person, "preference-page", body["consent_text"])
        return services().newsletters.set_mine(
            unit_of_work(), person, key, body["subscribed"], consent
        )


@blp.route("/notifications")
class MyNotifications(MethodView):
    @blp.user_token()
    @blp.response(HTTPStatus.OK, NotificationSettingsSchema, example=_NOTIFICATIONS_EXAMPLE)
    def get(self):
        """The signed-in person's notification settings

        Per product dashboard (`marketing-suite`, `smtpeter`, `mailerq`), each event with
        the channels it notifies on (`in-app`, `push`, `email`). Separate from the
        newsletters: these are the products' own messages to their users.
        """
        return _by_attribute(notification_settings(unit_of_work(), principal()))

    @blp.user_token()
    @blp.arguments(
        NotificationSettingsChangeSchema, example={"smtpeter": {"quota-warning": ["push"]}}
    )
    @blp.response(HTTPStatus.OK, NotificationSettingsSchema, example=_NOTIFICATIONS_EXAMPLE)
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    def put(self, body):
        """Change notification settings

        `{dashboard: {event: [channels]}}`: each event given notifies on exactly the
        channels listed (`[]`: not at all); every other event keeps its setting. All
        settings after the change. The site may pass on the person's `client_ip` and
        `user_agent` beside the dashboards, as on every write under `/v1/me`.
        """
        changes = {
            name.replace("_", "-"): events
            for name, events in body.items()
            if name not in BROWSER_FIELDS
        }
        return _by_attribute(change_notification_settings(unit_of_work(), principal(), changes))


def _by_attribute(settings: dict) -> dict:
    """The settings by the schema's attribute names (marketing_suite for marketing-suite)."""
    return {name.replace("-", "_"): events for name, events in settings.items()}
