"""QuickLoad gives what the schema's own load gives, for right and wrong input alike."""

import random

import marshmallow as ma
import pytest
from marshmallow import ValidationError, fields, post_load, pre_load, validate, validates

from schemas.common import QuickLoad, SmallDict
from schemas.newsletters import NEWSLETTER_KEYS, ImportedConsentSchema, ImportLineSchema


class _AsMarshmallowLoadsIt(ImportLineSchema):
    """The import line as marshmallow alone loads it: its consents through a plain Nested
    field, not QuickNested."""

    newsletters = SmallDict(
        max_items=len(NEWSLETTER_KEYS),
        keys=fields.String(validate=validate.OneOf(NEWSLETTER_KEYS)),
        values=fields.Nested(ImportedConsentSchema),
        load_default=None,
    )


# Values a line's fields may be sent with: right ones, and each kind of wrong one.
_VALUES = [
    "anna@example.com",
    "ANNA@Example.COM",
    "not an address",
    "anna@",
    "İSTANBUL@example.com",
    "Anna",
    " Anna ",
    "",
    "   ",
    "A" * 101,
    "Anna\u202egreB",
    "An\x00na",
    "\ud800",
    "Ζωή ς",
    "+31 20 123 4567",
    "0612345678",
    "+1 555",
    "NL",
    "nl",
    "XX",
    "female",
    "unspecified",
    "import",
    "newsletter",
    "webinar",
    "nope",
    None,
    0,
    1.5,
    True,
    [],
    ["Anna"],
    {},
    {"a": 1},
    10**400,
]
_CONSENTS = [
    {"consented_at": "2024-03-01T10:00:00Z", "consent_text": "form v1"},
    {"consented_at": "2024-03-01T10:00:00+02:00", "consent_text": "  form\nv2  "},
    {"consented_at": "2024-03-01T10:00:00", "consent_text": "naive time"},
    {"consented_at": "2999-01-01T00:00:00Z", "consent_text": "in the future"},
    {"consented_at": "1989-12-31T23:59:59Z", "consent_text": "before 1990"},
    {"consented_at": "0001-01-01T00:00:00+01:00", "consent_text": "year 0 in UTC"},
    {"consented_at": "2024-03-01T10:00:00Z", "consent_text": ""},
    {"consented_at": "2024-03-01T10:00:00Z", "consent_text": "\u200b"},
    {"consented_at": "2024-03-01T10:00:00Z"},
    {"consented_at": "2024-03-01T10:00:00Z", "consent_text": "x", "extra": 1},
    {"consented_at": 1709287200, "consent_text": "a number"},
    {"consented_at": None, "consent_text": None},
    "not an object",
    None,
    [],
]
_LISTS = ["copernica", "smtpeter", "mailerq", "copernica-updates", "unknown-list", ""]


def _newsletters(rng: random.Random):
    if rng.random() < 0.1:
        return rng.choice(["all", None, [], 5])

    # Mostly right (a line with one wrong consent is refused whole), now and then not.
    def consent():
        return rng.choice(_CONSENTS[:2] if rng.random() < 0.9 else _CONSENTS)

    def key():
        return rng.choice(_LISTS[:4] if rng.random() < 0.95 else _LISTS)

    return {key(): consent() for _ in range(rng.randrange(0, 7))}


def _line(rng: random.Random, names: list[str]) -> dict:
    line = {"email": rng.choice(_VALUES[:5]), "source": "import"}
    for name in rng.sample(names, rng.randrange(0, len(names))):
        line[name] = _newsletters(rng) if name == "newsletters" else rng.choice(_VALUES)
    if rng.random() < 0.1:
        line["unknown_field"] = "x"
    if rng.random() < 0.1:
        del line[rng.choice(["email", "source"])]
    return line


def _outcome(load, data):
    """What loading gave, keys in their order (a dict compares equal in any order)."""
    try:
        return "loaded", _in_order(load(data))
    except ValidationError as exc:
        return "refused", exc.normalized_messages()


def _in_order(value):
    if isinstance(value, dict):
        return [(key, _in_order(item)) for key, item in value.items()]
    return value


def test_it_loads_and_refuses_every_line_as_the_schema_does():
    schema = ImportLineSchema()
    quick = QuickLoad(schema)
    reference = _AsMarshmallowLoadsIt()
    rng = random.Random(20261129)
    names = [name for name in schema.load_fields if name not in ("email", "source")]
    loaded = refused = consents = 0
    for _ in range(5000):
        line = _line(rng, names)
        outcome = _outcome(quick, line)
        assert outcome == _outcome(schema.load, line) == _outcome(reference.load, line), line
        loaded += outcome[0] == "loaded"
        consents += outcome[0] == "loaded" and len(dict(outcome[1])["newsletters"] or ())
        refused += outcome[0] == "refused"
    # Both ways are taken often: the comparison means something.
    assert loaded > 500 and refused > 500
    assert consents > 100


def test_plainly_right_input_takes_the_quick_way():
    schema = ImportLineSchema()
    line = {
        "email": "anna@example.com",
        "source": "import",
        "first_name": " Anna ",
        "newsletters": {"copernica": _CONSENTS[1]},
    }
    loaded = QuickLoad(schema).quick(line)
    assert loaded == schema.load(line)
    assert loaded["first_name"] == "Anna"
    assert loaded["newsletters"]["copernica"]["consent_text"] == "form\nv2"
    assert QuickLoad(schema).quick({**line, "first_name": "An\x00na"}) is None
    assert QuickLoad(schema).quick([line]) is None


class _WithPreLoad(ma.Schema):
    name = fields.String()

    @pre_load
    def trim(self, data, **kwargs):
        return data


class _WithPostLoad(ma.Schema):
    name = fields.String()

    @post_load
    def make(self, data, **kwargs):
        return data


class _WithFieldValidator(ma.Schema):
    name = fields.String()

    @validates("name")
    def check(self, value, **kwargs):
        pass


class _Renamed(ma.Schema):
    name = fields.String(data_key="Name")


@pytest.mark.parametrize("schema", [_WithPreLoad, _WithPostLoad, _WithFieldValidator, _Renamed])
def test_a_schema_that_loads_by_more_than_its_fields_is_refused(schema):
    with pytest.raises(TypeError, match="loads by more than its fields"):
        QuickLoad(schema())
    with pytest.raises(TypeError):
        QuickLoad(ImportLineSchema(unknown=ma.EXCLUDE))
