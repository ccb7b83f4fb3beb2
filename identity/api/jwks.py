"""The public keys that check access tokens: /.well-known/jwks.json."""

from http import HTTPStatus

from flask.views import MethodView

from identity.api.guards import Blueprint, services
from schemas.jwks import JwksSchema

blp = Blueprint(
    "jwks",
    __name__,
    url_prefix="/.well-known",
    description="The public keys that check the access tokens this service signs.",
)

# A site may keep the set this long. A key signs from the moment it is made, so a site
# holding an older set meets a kid it lacks, and fetches the set again (see below).
CACHE_CONTROL = "public, max-age=300"

_EXAMPLE = {
    "keys": [
        {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": "nB3Bru29BMEQun7MdEwSl7zSYdmjo0ddzXrWPCb6u-c",
            "kid": "l5O32bELPOPOjCHsCkqzq6M7TpEPEn5K1fZmqTzLfdk",
            "alg": "EdDSA",
            "use": "sig",
        }
    ]
}


@blp.route("/jwks.json")
class Jwks(MethodView):
    # No credentials: whoever checks an access token needs these keys.
    @blp.doc(security=[])
    @blp.response(
        HTTPStatus.OK,
        JwksSchema,
        example=_EXAMPLE,
        headers={
            "Cache-Control": {
                "description": f"`{CACHE_CONTROL}`",
                "schema": {"type": "string"},
            }
        },
    )
    @blp.alt_response(HTTPStatus.SERVICE_UNAVAILABLE, response="SERVICE_UNAVAILABLE")
    def get(self):
        """The keys that sign access tokens

        A JWK Set (RFC 7517) of Ed25519 public keys (RFC 8037). An access token names its
        key in the `kid` of its header and is signed with `EdDSA`; check it with the key of
        that `kid`, and accept only `alg` `EdDSA` and `typ` `JWT`. After a rotation, the
        retired key stays in the set until every token it signed has expired, so a token
        with a `kid` you do not have means the set you hold is older than the key: fetch
        it again (not more than once a minute), and refuse the token if the `kid` is
        still not in it. Public: no credentials needed.
        """
        return services().key_ring.jwks(), {"Cache-Control": CACHE_CONTROL}
