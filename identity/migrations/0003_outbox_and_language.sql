-- The mail outbox, written in the same transaction as the change that causes a mail, and
-- the language the person gets mail in.

alter table users add column language text check (language in ('en', 'nl'));
comment on column users.language is 'the language of mails to this person; null: en';

create table outbox (
    id               bigint generated always as identity primary key,
    -- Names the mail in Message-ID, so retries of one mail carry the same id.
    message_uuid     uuid not null default gen_random_uuid(),
    template         text not null,
    recipient        text not null,
    language         text not null check (language in ('en', 'nl')),
    -- What the template is filled with; links in it carry single-use tokens, so it is
    -- cleared once the mail is delivered. Recipient, template, times and outcome stay.
    mail_values      jsonb,
    status           text not null default 'queued'
                     check (status in ('queued', 'sent', 'failed')),
    attempts         integer not null default 0,
    next_attempt_at  timestamptz not null default now(),
    -- The relay's answer to the last failed attempt.
    last_error       text,
    created_at       timestamptz not null default now(),
    sent_at          timestamptz,
    failed_at        timestamptz
);
create index outbox_due on outbox (next_attempt_at) where status = 'queued';

-- Wakes the delivery workers (LISTEN identity_outbox) when a transaction that queued
-- mail commits; a notification of a rolled-back transaction is never delivered.
create function outbox_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('identity_outbox', '');
    return null;
end $$;
create trigger outbox_notify after insert on outbox
    for each statement execute function outbox_notify();
