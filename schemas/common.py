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
