-- The sites that call the service and their keys, and the email-keyed user record.

create table sites (
    id          uuid primary key default gen_random_uuid(),
    name        text not null unique check (name ~ '^[a-z0-9][a-z0-9.-]{0,62}$'),
    created_at  timestamptz not null default now()
);

-- A key is shown once; only its SHA-256 is kept. A key carries 256 random bits, so a
-- fast hash is enough: there is nothing to guess that a slow hash would protect.
create table site_keys (
    id            uuid primary key default gen_random_uuid(),
    site_id       uuid not null references sites (id) on delete cascade,
    key_hash      bytea not null unique,
    -- The first characters of the key, to tell keys apart in listings and logs.
    key_prefix    text not null,
    scopes        text[] not null,
    created_at    timestamptz not null default now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
create index site_keys_site on site_keys (site_id);

create table users (
    id             uuid primary key default gen_random_uuid(),
    -- Normalised by email-validator (domain in Unicode, lower-cased); unique whatever the case.
    email          text not null check (email like '%_@_%'),
    first_name     text,
    infix          text,
    last_name      text,
    suffix         text,
    gender         text not null default 'unspecified'
                   check (gender in ('female', 'male', 'non_binary', 'unspecified')),
    -- E.164, validated by phonenumbers before they get here.
    phone          text check (phone ~ '^\+[1-9][0-9]{1,14}$'),
    mobile         text check (mobile ~ '^\+[1-9][0-9]{1,14}$'),
    fax            text check (fax ~ '^\+[1-9][0-9]{1,14}$'),
    -- minimal: made by a site before the person registered.
    status         text not null default 'minimal' check (status in ('minimal', 'registered')),
    -- Where each field's value came from: {"first_name": {"source", "site", "at"}, ...}.
    -- The person's right to know where we got their data rests on it.
    field_sources  jsonb not null default '{}',
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    registered_at  timestamptz
);
create unique index users_email_unique on users (lower(email));
