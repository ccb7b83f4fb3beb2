-- The keys that sign access tokens, second form:
-- * ES256 (ECDSA P-256) beside EdDSA (Ed25519): new keys are ES256, which RFC 9864 leaves
--   standing and every JWT library of the sites knows; the EdDSA keys made before stay
--   until the tokens they signed have expired. A key's algorithm is the only one its
--   tokens are checked with.
-- * signs_from: a new key is published at once and signs from this time on, once every
--   site's cached copy of the key set holds it; every replica reads the same time here.
--   The key before it is retired at that same time (retired_at may lie in the future).
-- * revoked_at: withdrawn at once (a leaked key): no longer published, its tokens refused.

alter table signing_keys drop constraint signing_keys_algorithm_check;
alter table signing_keys
    add constraint signing_keys_algorithm_check check (algorithm in ('EdDSA', 'ES256'));

alter table signing_keys add column signs_from timestamptz;
-- Every key made before signed from the moment it was made.
update signing_keys set signs_from = created_at;
alter table signing_keys
    alter column signs_from set not null,
    alter column signs_from set default now(),
    add column revoked_at timestamptz;
