-- Companies (business to business): their profiles, the people who belong to them, the
-- invitations that bring people in, and the partner model.

create table companies (
    id                    uuid primary key default gen_random_uuid(),
    name                  text not null check (length(name) between 1 and 200),
    -- For staff only: never shown to or changed by members.
    internal_description  text,
    street                text,
    house_number          text,
    postal_code           text,
    city                  text,
    province              text,
    -- ISO 3166-1 alpha-2.
    country               text check (country ~ '^[A-Z]{2}$'),
    attention_of          text,
    email                 text,
    -- E.164, validated by phonenumbers before it gets here.
    phone                 text check (phone ~ '^\+[1-9][0-9]{1,14}$'),
    -- Compact forms, validated by python-stdnum (VAT number with its country prefix; IBAN).
    vat_number            text,
    bank_account          text,
    -- A partner company may be chosen as partner by customer companies.
    is_partner            boolean not null default false,
    -- The partner this company (a customer) chose: its members read this company's data
    -- and its people's contact data, nothing else.
    partner_id            uuid references companies (id) on delete set null
                          check (partner_id <> id),
    -- Who changed each field, through which site, when: {"name": {"by", "site", "at"}}.
    field_sources         jsonb not null default '{}',
    created_at            timestamptz not null default now(),
    updated_at            timestamptz not null default now()
);
create index companies_partner on companies (partner_id, id) where partner_id is not null;

create table company_members (
    company_id  uuid not null references companies (id) on delete cascade,
    user_id     uuid not null references users (id) on delete cascade,
    role        text not null check (role in ('admin', 'member')),
    joined_at   timestamptz not null default now(),
    primary key (company_id, user_id)
);
create index company_members_user on company_members (user_id);

-- An admin's invitation of an address: the record it names (a minimal profile made for a
-- new address, source `invitation`), its mailed token (account_tokens, purpose
-- company_invitation, payload {"invitation": id}); one open invitation per company and
-- record: inviting again mails a new link and voids the old one.
create table company_invitations (
    id           uuid primary key default gen_random_uuid(),
    company_id   uuid not null references companies (id) on delete cascade,
    user_id      uuid not null references users (id) on delete cascade,
    email_key    text not null,
    role         text not null default 'member' check (role in ('admin', 'member')),
    invited_by   uuid references users (id) on delete set null,
    created_at   timestamptz not null default now(),
    expires_at   timestamptz not null,
    accepted_at  timestamptz,
    withdrawn_at timestamptz
);
create unique index company_invitations_open on company_invitations (company_id, user_id)
    where accepted_at is null and withdrawn_at is null;
create index company_invitations_user on company_invitations (user_id);

alter table account_tokens drop constraint account_tokens_purpose_check,
    add constraint account_tokens_purpose_check check (
        purpose in ('verify_email', 'password_reset', 'email_change', 'email_change_notice',
                    'email_change_undo', 'social_join', 'company_invitation')
    );
