"""The numbers an operator watches: GET /metrics, for Prometheus, with a `metrics` key."""

from http import HTTPStatus

import psycopg
from flask import Response, current_app
from flask.views import MethodView

from identity.api.guards import Blueprint
from identity.db import EXTENSION, unit_of_work
from identity.errors import DatabaseUnavailable
from identity.metrics import CONTENT_TYPE, exposition, record_pool
from identity.services.health import mail_backlog

blp = Blueprint("metrics", __name__, description="The service's numbers, for Prometheus.")

_EXAMPLE = """\
# HELP identity_http_request_duration_seconds Requests by route pattern, method and status...
# TYPE identity_http_request_duration_seconds histogram
identity_http_request_duration_seconds_bucket{le="0.01",method="GET",route="/v1/me",status="200"} 41
identity_http_request_duration_seconds_count{method="GET",route="/v1/me",status="200"} 42
identity_security_events_total{event="login.succeeded"} 7
identity_outbox_queued 3
"""

_TEXT = {
    CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}, "example": _EXAMPLE},
}


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.site_key("metrics")
    @blp.doc(
        responses={
            HTTPStatus.OK: {
                "description": "Prometheus' text format (version 0.0.4).",
                "content": _TEXT,
            }
        }
    )
    def get(self):
        """The service's numbers

        In Prometheus' text exposition format, for a scrape with a site key of scope
        `metrics` (`identity sites create prometheus --scope metrics`): requests by
        route pattern, method and status with their latency; the database pools'
        connections open, in use and waited for; the outbox (read now: mails queued and
        being sent, the longest a due mail has waited, the delivery workers alive) and
        the mails delivered by template and outcome; security events (login outcomes,
        registrations, ...), throttle refusals, one-click unsubscribes and import lines
        by outcome. Every worker process of the server counts, whichever answers; no
        label holds an address, a token or an id. The list: README, "Metrics".
        """
        # This worker's pool as it is now; the others' as they last recorded it.
        record_pool(current_app.extensions[EXTENSION].pool_stats())
        try:
            backlog = mail_backlog(unit_of_work())
        except (DatabaseUnavailable, psycopg.OperationalError):
            # The database gone: what this process counted still answers (the 5xx and
            # the pool's waiting are what an outage shows), the outbox does not.
            return Response(exposition(_UNREACHABLE), content_type=CONTENT_TYPE)
        snapshot = _REACHABLE | {
            "identity_outbox_queued": (
                "Mails queued: due, or waiting for a retry.",
                backlog["queued"],
            ),
            "identity_outbox_sending": (
                "Mails claimed by a delivery worker and not yet done.",
                backlog["sending"],
            ),
            "identity_outbox_oldest_queued_seconds": (
                "The longest a due mail has waited for a delivery worker (0: none waits).",
                backlog["oldest_due_seconds"],
            ),
            "identity_mail_couriers": (
                "Delivery workers alive, on any host.",
                backlog["couriers"],
            ),
        }
        return Response(exposition(snapshot), content_type=CONTENT_TYPE)


_DATABASE = "identity_database_reachable"
_HELP = "Whether the scrape could read the database (the outbox's numbers come from it)."
_REACHABLE = {_DATABASE: (_HELP, 1)}
_UNREACHABLE = {_DATABASE: (_HELP, 0)}
