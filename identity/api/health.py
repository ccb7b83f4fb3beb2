"""Liveness and readiness, for load balancers and orchestrators."""

from http import HTTPStatus

from flask.views import MethodView

from identity.api.guards import Blueprint
from identity.db import unit_of_work
from identity.services.health import check_ready
from schemas.health import HealthSchema

blp = Blueprint("health", __name__, url_prefix="/health", description="Is the service up.")


# No credentials: load balancers and orchestrators call these.
PUBLIC = {"security": []}


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
    @blp.response(HTTPStatus.OK, HealthSchema, example={"status": "ok"})
    @blp.alt_response(HTTPStatus.SERVICE_UNAVAILABLE, response="SERVICE_UNAVAILABLE")
    def get(self):
        """The service can do its work

        200 when the database answers and every migration is applied; otherwise 503, so a
        load balancer sends no traffic to this replica yet.
        """
        check_ready(unit_of_work())
        return {"status": "ok"}
