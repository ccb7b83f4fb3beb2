"""The health answers."""

import marshmallow as ma
from marshmallow import fields


class HealthSchema(ma.Schema):
    status = fields.String(metadata={"description": "`ok`", "example": "ok"})
