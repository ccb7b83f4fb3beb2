"""The health answers."""

import marshmallow as ma
from marshmallow import fields


class HealthSchema(ma.Schema):
    status = fields.String(metadata={"description": "`ok`", "example": "ok"})


class MailDeliverySchema(ma.Schema):
    status = fields.String(
        metadata={
            "description": "`ok`, or `late`: a due mail has waited longer than"
            " IDENTITY_MAIL_LATE_SECONDS for a delivery worker, or mail is due and no worker"
            " is alive. Mail being late never makes readiness fail: no replica can fix it.",
            "example": "ok",
        }
    )
    oldest_queued_seconds = fields.Integer(
        metadata={
            "description": "how long the mail that has waited longest for a delivery worker"
            " has been due (0: none waits)",
            "example": 0,
        }
    )
    couriers = fields.Integer(
        metadata={
            "description": "delivery workers alive, on any replica (each beats a row in the"
            " database while it runs)",
            "example": 1,
        }
    )


class ReadySchema(HealthSchema):
    mail = fields.Nested(MailDeliverySchema, metadata={"description": "whether mail goes out"})
