"""Looking records up, for the sites."""

from http import HTTPStatus

from flask.views import MethodView
from marshmallow import RAISE

from identity.api.guards import Blueprint
from identity.db import unit_of_work
from identity.services.profiles import find_user_by_email, get_user
from schemas.profiles import USER_EXAMPLE, UserQuerySchema, UserSchema

blp = Blueprint(
    "users", __name__, url_prefix="/v1/users", description="Look up the record of an address."
)


@blp.route("")
class UserByEmail(MethodView):
    @blp.site_key("users:read")
    @blp.arguments(UserQuerySchema, location="query", unknown=RAISE)
    @blp.response(HTTPStatus.OK, UserSchema, example=USER_EXAMPLE)
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    def get(self, query):
        """Find the record of an address

        The address is normalised as on submission, so any case of it finds the same
        record. 404 when no record has this address.
        """
        return find_user_by_email(unit_of_work(), query["email"])


@blp.route("/<uuid:user_id>")
class UserById(MethodView):
    @blp.site_key("users:read")
    @blp.response(HTTPStatus.OK, UserSchema, example=USER_EXAMPLE)
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    def get(self, user_id):
        """Get a record by its id

        Ids are random UUIDs: they cannot be guessed or counted. 404 when there is no
        record with this id.
        """
        return get_user(unit_of_work(), user_id)
