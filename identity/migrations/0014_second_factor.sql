-- A second factor (TOTP, RFC 6238) with single-use recovery codes; the second step of a
-- login; how each sign-in was made (RFC 8176 `amr`); and the undo of a change of address.

-- One TOTP secret per account, sealed with AES-256-GCM under a key derived from
-- IDENTITY_SECRET_KEY (its nonce first, the user id as associated data), so neither a copy
-- of the database nor of a backup gives anyone the codes. Set up (confirmed_at null), it
-- is not on yet: the first right code turns it on. last_step is the time step of the last
-- code taken: a code is taken once, and none of an earlier step after it.
create table second_factors (
    user_id        uuid primary key references users (id) on delete cascade,
    secret_sealed  bytea not null,
    created_at     timestamptz not null default now(),
    confirmed_at   timestamptz,
    last_step      bigint
);

-- Ten codes given when the second factor is turned on, shown once; kept as an HMAC-SHA256
-- under a derived key (they are random, so a fast keyed hash is enough), spent on use.
create table recovery_codes (
    user_id    uuid not null references users (id) on delete cascade,
    code_hash  bytea not null,
    used_at    timestamptz,
    primary key (user_id, code_hash)
);

-- A login whose password was right, waiting for its second factor: the mfa_token handed
-- out (kept as its SHA-256), good for one sign-in through the same site, for minutes,
-- and for a few wrong codes.
create table login_challenges (
    token_hash  bytea primary key,
    user_id     uuid not null references users (id) on delete cascade,
    site_id     uuid,
    site_name   text not null,
    client_ip   inet,
    user_agent  text,
    failures    integer not null default 0,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    used_at     timestamptz
);
create index login_challenges_user on login_challenges (user_id) where used_at is null;

-- How the person signed in, as the access tokens say it (RFC 8176): a password alone, or
-- with a code of the authenticator app or a recovery code. Every sign-in before was a
-- password's.
alter table sessions add column amr text[] not null default '{pwd}';

-- The second step's attempts: a right password waiting for its code, and a wrong code.
alter table login_attempts drop constraint login_attempts_outcome_check,
    add constraint login_attempts_outcome_check check (
        outcome in ('success', 'wrong_password', 'no_account', 'throttled',
                    'second_factor_required', 'wrong_code')
    );

-- The link in the notices to the old address that puts it back (7 days).
alter table account_tokens drop constraint account_tokens_purpose_check,
    add constraint account_tokens_purpose_check check (
        purpose in ('verify_email', 'password_reset', 'email_change', 'email_change_notice',
                    'email_change_undo')
    );
