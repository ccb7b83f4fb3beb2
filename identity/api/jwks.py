"""The public keys that check access tokens: /.well-known/jwks.json."""

from http import HTTPStatus

from flask.views import MethodView

from identity.api.guards import Blueprint, services
from identity.security.access_tokens import JWKS_MAX_AGE_SECONDS
from schemas.jwks import JwksSchema

blp = Blueprint(
    "jwks",
    __name__,
    url_prefix="/.well-known",
    description="The public keys that check the access tokens this service signs.",
)

# A site may keep the set this long: a new key is published at once and signs only once
# every set a site may hold has it (but after `identity keys rotate --now`).
CACHE_CONTROL = f"public, max-age={JWKS_MAX_AGE_SECONDS}"

_EXAMPLE = {
    "keys": [
        {
            "kty": "EC",
            "crv": "P-256",
            "x": "xiAU97xZ-WOxQNmtD786zGXxeYz2pa5YOf5t__QKQPw",
            "y": "LBZgTEDCDVJDll8ExdEIkFzlS8HoXIO-JHVasr6dUeA",
            "kid": "EEt7TBOXAtvFE-gAFeyzq40GGB1IFU5SR7gMxAlGrCM",
            "alg": "ES256",
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

        A JWK Set (RFC 7517) in which every key says its algorithm (`alg`) and `use`
        (`sig`): ES256 keys (EC, P-256), and, until the tokens they signed have expired,
        the EdDSA keys (OKP, Ed25519, RFC 8037) of before. An access token names its key in
        the `kid` of its header; check it with the key of that `kid` and with that key's
        `alg` only (never the algorithm the token's header asks for), and accept only
        `typ` `JWT`.

        A new key is in the set a while (the set's max-age and a little more) before it
        signs, and a retired key stays until every token it signed has expired; so a token
        with a `kid` you do not have means a key made in an emergency: fetch the set again
        (not more than once a minute) and refuse the token if the `kid` is still not in it.
        A key that leaves the set before its time was revoked: refuse its tokens. Public:
        no credentials needed.
        """
        return services().key_ring.jwks(), {"Cache-Control": CACHE_CONTROL}
