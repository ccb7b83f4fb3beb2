-- Social sign-in (Google, LinkedIn, Facebook): the flows begun and not yet finished, and
-- the identities joined to records.

-- A flow begun at `authorize`: its state (kept as its SHA-256), the nonce the ID token must
-- carry and the PKCE verifier the code is exchanged with, bound to the site that began it,
-- the provider and the redirect URI. Kept here, not in a process, so any replica finishes
-- a flow another began; single-use (deleted when taken) and short-lived.
create table social_flows (
    state_hash     bytea primary key,
    provider       text not null check (provider in ('google', 'linkedin', 'facebook')),
    site_id        uuid not null references sites (id) on delete cascade,
    redirect_uri   text not null,
    nonce          text not null,
    code_verifier  text not null,
    created_at     timestamptz not null default now(),
    expires_at     timestamptz not null
);
create index social_flows_expiry on social_flows (expires_at);

-- A person's account at a provider, keyed by the provider's subject id (never by an
-- address, which providers let people change). Nothing else of the provider is kept:
-- the names and address it gave went to the record when the identity was joined.
create table social_identities (
    provider      text not null check (provider in ('google', 'linkedin', 'facebook')),
    subject       text not null check (length(subject) between 1 and 255),
    user_id       uuid not null references users (id) on delete cascade,
    -- The join: when and through which site (the site's name, kept if the site goes).
    joined_at     timestamptz not null default now(),
    joined_site   text not null,
    last_used_at  timestamptz,
    primary key (provider, subject),
    unique (user_id, provider)
);

-- Proving the address by mail before a provider that did not vouch for it joins.
alter table account_tokens drop constraint account_tokens_purpose_check,
    add constraint account_tokens_purpose_check check (
        purpose in ('verify_email', 'password_reset', 'email_change', 'email_change_notice',
                    'email_change_undo', 'social_join')
    );

-- A second step begun by a provider's sign-in rather than a password: the access token's
-- `amr` says so ("fed" where a password's says "pwd").
alter table login_challenges add column first_factor text not null default 'pwd'
    check (first_factor in ('pwd', 'fed'));
