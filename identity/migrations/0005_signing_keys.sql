-- The keys that sign access tokens (EdDSA, Ed25519): the public half as a JWK, published
-- at /.well-known/jwks.json; the private half sealed with AES-256-GCM under a key derived
-- from IDENTITY_SECRET_KEY (its nonce first, the kid as associated data), so neither a
-- copy of the database nor of a backup signs anything without the secret.

create table signing_keys (
    kid            text primary key,
    algorithm      text not null check (algorithm = 'EdDSA'),
    public_jwk     jsonb not null,
    private_key    bytea not null,
    created_at     timestamptz not null default now(),
    -- Signs no more; its public half stays published until publish_until, so the tokens
    -- it signed can be checked until they expire.
    retired_at     timestamptz,
    publish_until  timestamptz,
    check ((retired_at is null) = (publish_until is null))
);

-- One key signs at a time: the one not retired.
create unique index signing_keys_one_signing on signing_keys ((true)) where retired_at is null;
