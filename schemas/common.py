"""Pieces every schema shares: the problem document, UTC timestamps, small dicts, and a
quick way to load plainly right input in a hot loop."""

import json
import re
from collections.abc import Callable
from datetime import UTC

import marshmallow as ma
from marshmallow import RAISE, ValidationError, fields, missing, validate
from marshmallow.decorators import VALIDATES_SCHEMA


class UtcDateTime(fields.DateTime):
    """An RFC 3339 timestamp in UTC, written with a Z."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details: every error the service answers has this shape."""

    type = fields.String(metadata={"description": "URI naming the kind of problem"})
    title = fields.String(metadata={"description": "short summary of the kind of problem"})
    status = fields.Integer(metadata={"description": "the HTTP status code"})
    detail = fields.String(metadata={"description": "what went wrong with this request"})
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "for bad fields: {field: [messages]}"},
    )
    request_id = fields.String(
        metadata={
            "description": "a fault of the server's own (500): the id of the request, as in"
            " its X-Request-ID header, to quote when reporting it; what went wrong is logged"
            " under it, never told in the answer"
        }
    )
    lines_done = fields.Integer(
        metadata={
            "description": "an import that stopped part-way: input lines 1 to this one are"
            " done (written or rejected) and stay so"
        }
    )


class QueryInteger(fields.Integer):
    """An integer in a query string: ASCII digits, perhaps after a minus sign (so that
    `-1` hears what range it is out of). Python's `int()` also takes a plus sign, spaces,
    underscores and other scripts' digits (`1_0`, ` 5`, Arabic-Indic 5)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            digits = value.removeprefix("-")
            if not (digits.isascii() and digits.isdigit()):
                raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


def page_limit(items: str) -> QueryInteger:
    """A paged list's `limit`: 1 to 100, 50 when left out."""
    return QueryInteger(
        load_default=50,
        validate=validate.Range(min=1, max=100),
        metadata={"description": f"at most this many {items} (1 to 100; 50 when left out)"},
    )


def older_than(item: str) -> QueryInteger:
    """A newest-first list's `after`: the (bigint) id of the last `item` received."""
    return QueryInteger(
        load_default=None,
        validate=validate.Range(min=1, max=2**63 - 1),
        metadata={"description": f"the `id` of the last {item} received: the older ones"},
    )


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class Uuid(fields.UUID):
    """A UUID written as the service writes one (`8-4-4-4-12` hexadecimal digits, either
    case), as the paths take them. Python's `UUID()` also takes braces, `urn:uuid:`
    prefixes, dashes anywhere or none, and other scripts' digits: one id in many
    spellings, each of which a path refuses."""

    def _validated(self, value):
        if isinstance(value, str) and not _UUID.fullmatch(value):
            raise self.make_error("invalid_uuid")
        return super()._validated(value)


class SmallDict(fields.Dict):
    """A Dict of at most `max_items` entries, refused whole beyond that before any entry
    is checked: a body of a megabyte holds a hundred thousand keys, each a check."""

    default_error_messages = {"too_many": "More than {max_items} entries."}

    def __init__(self, *, max_items: int, **kwargs):
        super().__init__(**kwargs)
        self.max_items = max_items
        self.metadata.setdefault("maxProperties", max_items)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, dict) and len(value) > self.max_items:
            raise self.make_error("too_many", max_items=self.max_items)
        try:
            return super()._deserialize(value, attr, data, **kwargs)
        except ValidationError as exc:
            raise ValidationError(_by_key(exc.messages), valid_data=exc.valid_data) from None


def _by_key(messages):
    """marshmallow's errors of a Dict, `{key: {"key": [...], "value": ...}}`, as paths
    read: a key the Dict does not take is named in a message about the Dict as a whole
    (`newsletters: ["\"nope\": Must be one of: ..."]`), so no key a client makes up
    (`a.b`, an empty one, `_schema`) reads as a path it is not; what is wrong with the
    value of a key it takes is that key's (`newsletters.copernica.consented_at`), with
    no `value` level in between."""
    if not isinstance(messages, dict):
        return messages
    errors: dict = {}
    for key, found in messages.items():
        if not isinstance(found, dict):
            errors[key] = found
        elif found.get("key"):
            named = json.dumps(key if len(key) <= 64 else key[:64] + "…")
            errors.setdefault("_schema", []).extend(f"{named}: {m}" for m in found["key"])
        else:
            errors[key] = found.get("value")
    return errors


class QuickLoad:
    """`schema.load(data)` for input that is plainly right, without marshmallow's
    machinery around every field (an error store, a closure per field, the hooks it
    looks for): the schema's own fields load each value and its own `@validates_schema`
    methods run, so what comes out is what `load` gives. Whatever is not plainly right
    (not a dict, a key the schema does not know, a value a field or validator refuses)
    goes to `schema.load` itself, so errors read exactly as they always do.

    For a hot loop: the bulk import checks a line in two thirds of the time. Only for
    a schema whose load is its fields and its schema validators: one with other hooks
    (pre_load, post_load, @validates), renamed fields or another `unknown` is refused
    when the loader is made, so a hook added later cannot be skipped without notice.
    """

    def __init__(self, schema: ma.Schema):
        hooks = {name for name, found in schema._hooks.items() if found}
        renamed = [n for n, f in schema.load_fields.items() if f.data_key or f.attribute]
        if (
            hooks - {VALIDATES_SCHEMA}
            or renamed
            or schema.unknown != RAISE
            or schema.many
            or schema.partial
            or any(options["pass_original"] for _, _, options in schema._hooks[VALIDATES_SCHEMA])
        ):
            raise TypeError(f"{type(schema).__name__} loads by more than its fields")
        self.schema = schema
        self._fields = dict(schema.load_fields)
        # The fields that say something when absent: "required", or a default.
        self._when_absent = {
            name
            for name, field in self._fields.items()
            if field.required or field.load_default is not missing
        }
        self._validators = [getattr(schema, name) for name, _, _ in schema._hooks[VALIDATES_SCHEMA]]

    def __call__(self, data) -> dict:
        loaded = self.quick(data)
        return self.schema.load(data) if loaded is None else loaded

    def quick(self, data) -> dict | None:
        """What `schema.load(data)` gives, or None when `data` is not plainly right."""
        if type(data) is not dict or not data.keys() <= self._fields.keys():
            return None
        loaded = {}
        try:
            # In the schema's order of fields, as load gives them.
            for name, field in self._fields.items():
                if name in data:
                    loaded[name] = field.deserialize(data[name], name, data)
                elif name in self._when_absent:
                    loaded[name] = field.deserialize(missing, name, data)
            for validator in self._validators:
                validator(loaded, partial=None, many=False, unknown=RAISE)
        except ValidationError:
            return None
        return loaded


class QuickNested(fields.Nested):
    """A Nested field that loads plainly right input through QuickLoad; anything else,
    and every error, as Nested does."""

    def __init__(self, nested: type[ma.Schema], **kwargs):
        super().__init__(nested, **kwargs)
        self._quick: Callable[[object], dict | None] | None = None

    def _deserialize(self, value, attr, data, partial=None, **kwargs):
        plain = not (partial or self.unknown or self.only or self.exclude or self.many)
        if plain:
            if self._quick is None:
                self._quick = QuickLoad(self.schema).quick
            loaded = self._quick(value)
            if loaded is not None:
                return loaded
        return super()._deserialize(value, attr, data, partial=partial, **kwargs)
