"""The JWK Set of the keys that sign access tokens (RFC 7517, RFC 7518, RFC 8037)."""

import marshmallow as ma
from marshmallow import fields


class JwkSchema(ma.Schema):
    kty = fields.String(metadata={"description": "key type: `EC` (ES256), `OKP` (EdDSA)"})
    crv = fields.String(metadata={"description": "curve: `P-256` (ES256), `Ed25519` (EdDSA)"})
    x = fields.String(
        metadata={"description": "the public key (its x coordinate for EC), base64url"}
    )
    y = fields.String(metadata={"description": "EC only: the public key's y coordinate, base64url"})
    kid = fields.String(
        metadata={"description": "the key's id (its RFC 7638 thumbprint), as in a token's header"}
    )
    alg = fields.String(
        metadata={
            "description": "the one algorithm its tokens are signed with: `ES256`, or `EdDSA`"
            " for the keys made before ES256"
        }
    )
    use = fields.String(metadata={"description": "`sig`"})


class JwksSchema(ma.Schema):
    keys = fields.List(
        fields.Nested(JwkSchema),
        metadata={
            "description": "the key that signs now, one that will sign after a rotation, and"
            " the retired ones whose tokens may still be live"
        },
    )
