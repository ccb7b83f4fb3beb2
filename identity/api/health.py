"""Liveness and readiness, for load balancers and orchestrators."""

from http import HTTPStatus

from flask import current_app
from flask.views import MethodView

from identity.api.guards import Blueprint
from identity.db import unit_of_work
from identity.errors import ServiceStopping
from identity.lifecycle import draining
from identity.services.health import check_ready, mail_delivery
from schemas.health import HealthSchema, ReadySchema

blp = Blueprint("health", __name__, url_prefix="/health", description="Is the service up.")


# No credentials: load balancers and orchestrators call these.
PUBLIC = {"security": []}

READY_EXAMPLE = {
    "status": "ok",
    "mail": {"status": "ok", "oldest_queued_seconds": 0, "couriers": 1},
}


@blp.route("/live")
class Live(MethodView):
    @blp.doc(**PUBLIC)
    @blp.response(HTTPStatus.OK, HealthSchema, example={"status": "ok"})
    def get(self):
        """The process is up

        Answers 200 while the process can serve requests at all; it does not touch the
        database, so a database outage does not get healthy replicas restarted.
        """
        return {"status": "ok"}


@blp.route("/ready")
class Ready(MethodView):
    @blp.doc(**PUBLIC)
    @blp.response(HTTPStatus.OK, ReadySchema, example=READY_EXAMPLE)
    @blp.alt_response(HTTPStatus.SERVICE_UNAVAILABLE, response="SERVICE_UNAVAILABLE")
    def get(self):
        """The service can do its work

        200 when the database answers and every migration is applied; otherwise 503, so a
        load balancer sends no traffic to this replica yet.

        `mail` says whether mail goes out: how many delivery workers are alive, on any
        replica, and how long the longest-waiting due mail has waited; `late` when that is
        past IDENTITY_MAIL_LATE_SECONDS, or mail is due and no worker is alive. Late mail
        leaves the answer 200: no replica can fix it by being taken out of the load
        balancer, so a monitor should alert on `mail.status` instead.
        """
        if draining():
            raise ServiceStopping("this replica is stopping; send requests to another")
        uow = unit_of_work()
        check_ready(uow)
        late_seconds = current_app.config["IDENTITY"]["MAIL_LATE_SECONDS"]
        return {"status": "ok", "mail": mail_delivery(uow, late_seconds)}
