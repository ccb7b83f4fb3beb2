-- Accounts: a password on the record once its address is proven, the tokens mailed to
-- prove things, every login attempt, throttles, and the sign-ins (refresh-token families).

alter table users
    add column password_hash text,
    add column email_verified_at timestamptz;

-- The account's earlier passwords (argon2 hashes), so none of the last five is used again.
create table password_history (
    id             bigint generated always as identity primary key,
    user_id        uuid not null references users (id) on delete cascade,
    password_hash  text not null,
    created_at     timestamptz not null default now()
);
create index password_history_user on password_history (user_id, id desc);

-- Single-use tokens sent by mail; only their SHA-256 is kept.
create table account_tokens (
    token_hash  bytea primary key,
    purpose     text not null check (purpose in ('verify_email', 'password_reset', 'email_change')),
    user_id     uuid not null references users (id) on delete cascade,
    -- verify_email: the password hash and the fields given at registration, applied only
    -- once the address is proven; email_change: the new address.
    payload     jsonb not null default '{}',
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    used_at     timestamptz
);
create index account_tokens_user on account_tokens (user_id, purpose, created_at desc);

-- Every login attempt: the person may see their own; kept only as long as the retention.
create table login_attempts (
    id          bigint generated always as identity primary key,
    at          timestamptz not null default now(),
    user_id     uuid references users (id) on delete cascade,
    site_id     uuid references sites (id) on delete set null,
    client_ip   inet,
    user_agent  text,
    outcome     text not null
                check (outcome in ('success', 'wrong_password', 'no_account', 'throttled'))
);
create index login_attempts_user on login_attempts (user_id, at desc);

-- Failed logins per account (a keyed hash of the address, so an unknown address counts
-- like a known one) and per client IP; past a number of failures, logins wait.
create table login_throttles (
    key              text primary key,
    failures         integer not null,
    last_failure_at  timestamptz not null,
    blocked_until    timestamptz
);

-- A sign-in: one family of refresh tokens, each spent on use for the next. Its access
-- tokens name it (`sid`), so ending it ends them too.
create table sessions (
    id            uuid primary key default gen_random_uuid(),
    user_id       uuid not null references users (id) on delete cascade,
    site_id       uuid references sites (id) on delete cascade,
    site_name     text not null,
    user_agent    text,
    client_ip     inet,
    created_at    timestamptz not null default now(),
    last_used_at  timestamptz not null default now(),
    expires_at    timestamptz not null,
    revoked_at    timestamptz
);
create index sessions_user on sessions (user_id) where revoked_at is null;

create table refresh_tokens (
    token_hash       bytea primary key,
    session_id       uuid not null references sessions (id) on delete cascade,
    created_at       timestamptz not null default now(),
    idle_expires_at  timestamptz not null,
    spent_at         timestamptz
);
create index refresh_tokens_session on refresh_tokens (session_id);
