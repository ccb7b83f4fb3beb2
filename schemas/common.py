"""Pieces every schema shares: the problem document and UTC timestamps."""

from datetime import UTC

import marshmallow as ma
from marshmallow import fields


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
    lines_done = fields.Integer(
        metadata={
            "description": "an import that stopped part-way: input lines 1 to this one are"
            " done (written or rejected) and stay so"
        }
    )


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
        return super()._deserialize(value, attr, data, **kwargs)
