"""Newsletters: the lists, subscribing with consent, unsubscribe links and preferences,
and (apart from newsletters) the signed-in person's notification settings."""

from datetime import UTC, datetime, timedelta

import marshmallow as ma
from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from schemas.accounts import BROWSER_FIELDS, BrowserSchema
from schemas.common import QueryInteger, QuickNested, SmallDict, UtcDateTime, Uuid
from schemas.profiles import LANGUAGES, ProfileSubmissionSchema
from schemas.text import EMAIL, Text

NEWSLETTER_KEYS = ("copernica", "copernica-updates", "copernica-partners", "smtpeter", "mailerq")
PRODUCTS = ("copernica", "smtpeter", "mailerq")
STATES = ("pending", "subscribed", "unsubscribed")
MAX_LINKS_BATCH = 1000


class StrictBoolean(fields.Boolean):
    """true or false, and nothing that merely looks like one ("no", 0)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


_state = fields.String(
    validate=validate.OneOf(STATES),
    metadata={"description": "`pending` until a double opt-in is confirmed"},
)


class NewsletterSchema(ma.Schema):
    key = fields.String(validate=validate.OneOf(NEWSLETTER_KEYS))
    name = fields.String()
    product = fields.String(validate=validate.OneOf(PRODUCTS))
    description = fields.String()
    double_opt_in = fields.Boolean(
        metadata={"description": "whether subscribing waits for a confirmation mail"}
    )


class ConsentSchema(BrowserSchema):
    """What the person was shown and where they acted: kept as proof of consent."""

    text = Text(
        required=True,
        max_length=2000,
        multiline=True,
        blank=False,
        metadata={
            "description": "the consent text the person agreed to (or its version)",
            "example": "Yes, send me the Copernica newsletter (consent text v3).",
        },
    )
    channel = fields.String(
        load_default="form",
        validate=validate.OneOf(("form", "api")),
        metadata={"description": "a form the person filled in, or another API integration"},
    )


class SubscriptionRequestSchema(BrowserSchema):
    """The address, the consent and where it was given. The browser may come inside the
    consent (as it always could) or beside it, as every other endpoint a site calls for
    a person takes it; what the consent says of it comes first."""

    email = Text(required=True, max_length=320, metadata=EMAIL | {"example": "anna@example.com"})
    consent = fields.Nested(ConsentSchema, required=True)
    language = fields.String(
        validate=validate.OneOf(LANGUAGES),
        load_default=None,
        metadata={"description": "for a new record: the language of its mails"},
    )

    @post_load
    def ip_as_text(self, data, **kwargs):
        """The browser given beside the consent goes into it, where it is kept as proof,
        for what the consent itself leaves out: the consent's own words are the more
        particular (a form may send where the consent was given and where the page was
        loaded), and the ledger keeps one browser."""
        data = super().ip_as_text(data, **kwargs)
        consent = data["consent"]
        for name in BROWSER_FIELDS:
            beside = data.pop(name)
            if consent[name] is None:
                consent[name] = beside
        return data


class SubscriptionSchema(ma.Schema):
    newsletter = fields.String(validate=validate.OneOf(NEWSLETTER_KEYS))
    user_id = Uuid()
    state = _state
    changed_at = UtcDateTime()


class ConfirmationSchema(BrowserSchema):
    token = Text(
        required=True,
        max_length=100,
        metadata={"description": "the `token=` of the confirmation mail's link"},
    )


class LinkSchema(ma.Schema):
    """Which list and which address an unsubscribe link is for, and its flag."""

    newsletter = fields.String(validate=validate.OneOf(NEWSLETTER_KEYS))
    name = fields.String()
    email = fields.String(metadata={"description": "masked: a***@e***.com"})
    state = fields.String(
        validate=validate.OneOf(STATES),
        allow_none=True,
        metadata={"description": "null: never subscribed; `pending` until confirmed"},
    )


class UnsubscribedSchema(LinkSchema):
    changed = fields.Boolean(metadata={"description": "false when the link had been used already"})


class FlagSchema(ma.Schema):
    key = fields.String(validate=validate.OneOf(NEWSLETTER_KEYS))
    name = fields.String()
    product = fields.String(validate=validate.OneOf(PRODUCTS))
    subscribed = fields.Boolean()
    state = fields.String(
        validate=validate.OneOf(STATES),
        allow_none=True,
        metadata={"description": "null: never subscribed"},
    )


class PreferencesSchema(ma.Schema):
    email = fields.String(metadata={"description": "masked: a***@e***.com"})
    newsletters = fields.List(fields.Nested(FlagSchema))


class PreferencesChangeSchema(ma.Schema):
    """`all: false` leaves every list; `newsletters` sets some. Only a list the person is
    subscribed to may stay true: a link can unsubscribe, never subscribe."""

    all = StrictBoolean(
        validate=validate.Equal(False, error="a link can only unsubscribe: send all: false"),
        metadata={"description": "false: leave every list"},
    )
    newsletters = SmallDict(
        max_items=len(NEWSLETTER_KEYS),
        keys=fields.String(validate=validate.OneOf(NEWSLETTER_KEYS)),
        values=StrictBoolean(),
        metadata={"description": "{list key: subscribed}"},
    )

    @validates_schema
    def one_of_them(self, data, **kwargs):
        if data.get("newsletters") == {}:
            raise ValidationError("name at least one list", "newsletters")
        if ("all" in data) == ("newsletters" in data):
            raise ValidationError("send either all: false or newsletters: {key: bool}", "_schema")


class LinksRequestSchema(ma.Schema):
    """Addresses, ids or both; a link for each that has a record (without users:read,
    for each subscriber of the list)."""

    emails = fields.List(
        Text(max_length=320),
        validate=validate.Length(min=1, max=MAX_LINKS_BATCH),
        metadata={"example": ["anna@example.com"]},
    )
    user_ids = fields.List(Uuid(), validate=validate.Length(min=1, max=MAX_LINKS_BATCH))

    @validates_schema
    def one_of_them(self, data, **kwargs):
        if not data.get("emails") and not data.get("user_ids"):
            raise ValidationError("send emails, user_ids or both", "_schema")


class SubscriberLinkSchema(ma.Schema):
    """One subscriber (or person) with their unsubscribe link and preferences page, ready
    for a mail."""

    user_id = Uuid()
    email = fields.String()
    unsubscribe_url = fields.String(metadata={"description": "one-click: POST; GET only reads"})
    list_unsubscribe = fields.String(
        metadata={"description": "the value of the List-Unsubscribe header: <unsubscribe_url>"}
    )
    list_unsubscribe_post = fields.String(
        metadata={"description": "the value of the List-Unsubscribe-Post header (RFC 8058)"}
    )
    preferences_url = fields.String(
        metadata={
            "description": "the person's page of every flag, on the pages of the site that"
            " manages the list: `{pages}/newsletters/preferences?token=`, the same token as"
            " `unsubscribe_url`'s (the page calls `/v1/unsubscribe/{token}/preferences`)"
        }
    )


class ExportCompleteSchema(ma.Schema):
    """The last line of a whole export: that it is whole, and how many rows came before."""

    complete = fields.Boolean(required=True, metadata={"enum": [True]})
    rows = fields.Integer(required=True, validate=validate.Range(min=0))


class GivenLinkSchema(SubscriberLinkSchema):
    """A link asked for in bulk, with what was sent to ask for it."""

    given = fields.String(
        metadata={
            "description": "the address as sent (or the id, in its usual lower-case form):"
            " `email` is the record's own spelling"
        }
    )


class LinksSchema(ma.Schema):
    newsletter = fields.String(validate=validate.OneOf(NEWSLETTER_KEYS))
    links = fields.List(fields.Nested(GivenLinkSchema))
    unknown = fields.List(
        fields.String(),
        metadata={
            "description": "the addresses (as sent) or ids with no record, or, for a key"
            " without users:read, with no subscribed flag on the list: the two alike"
        },
    )


class ExportQuerySchema(ma.Schema):
    after = Uuid(
        load_default=None,
        metadata={"description": "resume after this `user_id` (the last one received)"},
    )
    limit = QueryInteger(
        load_default=None,
        validate=validate.Range(min=1, max=100_000_000),
        metadata={
            "description": "a page of this many rows (and any who subscribe within it"
            " meanwhile), with a Link to the next; all when left out"
        },
    )


class MyFlagChangeSchema(BrowserSchema):
    """The change, and (like every consent) where the person made it: the site passes on
    what it knows of their browser."""

    subscribed = StrictBoolean(required=True)
    consent_text = Text(
        max_length=2000,
        multiline=True,
        load_default=None,
        metadata={"description": "the text the person was shown, or its version"},
    )


# --- notifications: a separate system from newsletters ------------------------------------


def notification_settings_schema(events: dict[str, tuple[str, ...]], channels: tuple[str, ...]):
    """{dashboard: {event: [channels]}}, for the catalog of events the service keeps
    (identity.services.notifications): which events notify on which channels. A
    dashboard's attribute is its name with `_` for `-`."""

    def dashboard(name: str) -> fields.Nested:
        events_of = ma.Schema.from_dict(
            {event: _channels(channels) for event in events[name]},
            name=f"{name.title().replace('-', '')}Events",
        )
        return fields.Nested(
            events_of, data_key=name, metadata={"description": f"the {name} dashboard"}
        )

    return ma.Schema.from_dict(
        {name.replace("-", "_"): dashboard(name) for name in events},
        name="NotificationSettings",
    )


def _channels(channels: tuple[str, ...]) -> fields.List:
    return fields.List(
        fields.String(validate=validate.OneOf(channels)),
        validate=validate.Length(max=len(channels)),
        metadata={"description": "the channels this event notifies on; [] for none"},
    )


# --- bringing existing lists over with the import ------------------------------------------


_EARLIEST_CONSENT = datetime(1990, 1, 1, tzinfo=UTC)


class ImportedConsentSchema(ma.Schema):
    consented_at = fields.AwareDateTime(
        required=True,
        metadata={"description": "when the person subscribed on the old list, RFC 3339"},
    )
    consent_text = Text(
        required=True,
        max_length=2000,
        multiline=True,
        blank=False,
        metadata={"description": "the consent text they agreed to (or its version)"},
    )

    @validates_schema
    def not_in_the_future(self, data, **kwargs):
        if data["consented_at"] > datetime.now(UTC) + timedelta(minutes=5):
            raise ValidationError("lies in the future", "consented_at")
        # No list of these products is older; and a year 1 with a zone ahead of UTC is
        # year 0 in UTC, which PostgreSQL stores and Python cannot read back.
        if data["consented_at"] < _EARLIEST_CONSENT:
            raise ValidationError("lies before 1990", "consented_at")


class ImportLineSchema(ProfileSubmissionSchema):
    """A line of the bulk import: a submission, and the lists the person consented to on
    an old system (NDJSON only)."""

    newsletters = SmallDict(
        max_items=len(NEWSLETTER_KEYS),
        keys=fields.String(validate=validate.OneOf(NEWSLETTER_KEYS)),
        values=QuickNested(ImportedConsentSchema),
        load_default=None,
        metadata={
            "description": "{list key: {consented_at, consent_text}}: subscribed with that"
            " consent, unless the person has a flag on that list already",
            "example": {
                "copernica": {
                    "consented_at": "2024-03-01T10:00:00Z",
                    "consent_text": "old signup form v1",
                }
            },
        },
    )
