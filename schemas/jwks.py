"""The JWK Set of the keys that sign access tokens (RFC 7517, RFC 8037)."""

import marshmallow as ma
from marshmallow import fields


class JwkSchema(ma.Schema):
    kty = fields.String(metadata={"description": "key type: `OKP`"})
    crv = fields.String(metadata={"description": "curve: `Ed25519`"})
    x = fields.String(metadata={"description": "the public key, base64url"})
    kid = fields.String(
        metadata={"description": "the key's id (its RFC 7638 thumbprint), as in a token's header"}
    )
    alg = fields.String(metadata={"description": "`EdDSA`"})
    use = fields.String(metadata={"description": "`sig`"})


class JwksSchema(ma.Schema):
    keys = fields.List(
        fields.Nested(JwkSchema),
        metadata={
            "description": "the key that signs now and the retired ones whose tokens may"
            " still be live"
        },
    )
