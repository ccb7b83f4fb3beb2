-- Newsletters: the five lists, each person's flag per list, the consent events that
-- prove every change of a flag, the double opt-in confirmations, and (kept apart from
-- newsletters) the signed-in person's notification settings per product dashboard.

-- The catalog. `id` is the number unsubscribe tokens carry (one byte): never reused,
-- never renumbered, or the links in old mails would name another list.
create table newsletters (
    id             smallint primary key check (id between 1 and 255),
    key            text not null unique check (key ~ '^[a-z][a-z0-9-]{0,39}$'),
    name           text not null,
    product        text not null check (product in ('copernica', 'smtpeter', 'mailerq')),
    description    text not null,
    double_opt_in  boolean not null
);
insert into newsletters (id, key, name, product, description, double_opt_in) values
    (1, 'copernica', 'Copernica newsletter', 'copernica',
     'Copernica''s regular newsletter: product news, cases and events.', true),
    (2, 'copernica-updates', 'Copernica software updates', 'copernica',
     'Announcements of software updates, for the people who use Copernica.', false),
    (3, 'copernica-partners', 'Copernica partner newsletter', 'copernica',
     'Pre-announcements and news for Copernica''s partner companies.', true),
    (4, 'smtpeter', 'SMTPeter newsletter', 'smtpeter',
     'SMTPeter''s regular newsletter.', true),
    (5, 'mailerq', 'MailerQ newsletter', 'mailerq',
     'MailerQ''s regular newsletter.', true);

-- One flag per person and list; no row: never subscribed.
create table subscriptions (
    user_id     uuid not null references users (id) on delete cascade,
    newsletter  smallint not null references newsletters (id),
    state       text not null check (state in ('pending', 'subscribed', 'unsubscribed')),
    changed_at  timestamptz not null default now(),
    primary key (user_id, newsletter)
);
-- The export walks one list's subscribers in user id order (its keyset cursor).
create index subscriptions_subscribed on subscriptions (newsletter, user_id)
    where state = 'subscribed';

-- Every change of a flag, as proof of consent (GDPR Art. 7(1)) and of its withdrawal.
-- Append-only: a row is never changed (erasing a person deletes theirs with them).
create table consent_events (
    id            bigint generated always as identity primary key,
    user_id       uuid not null references users (id) on delete cascade,
    newsletter    smallint not null references newsletters (id),
    -- request: double opt-in asked (pending); subscribe, confirm: subscribed;
    -- unsubscribe: unsubscribed.
    action        text not null check (action in ('request', 'subscribe', 'confirm', 'unsubscribe')),
    state         text not null check (state in ('pending', 'subscribed', 'unsubscribed')),
    -- When the person acted: now, or for an import the time the old list recorded.
    at            timestamptz not null default now(),
    recorded_at   timestamptz not null default now(),
    -- The site whose key made the change; null for the person's own token or session.
    site          text,
    client_ip     inet,
    user_agent    text,
    -- The consent text the person was shown (or its version).
    consent_text  text,
    channel       text not null
                  check (channel in ('form', 'api', 'one-click', 'preference-page', 'staff', 'import'))
);
create index consent_events_user on consent_events (user_id, newsletter, id);

create function consent_events_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'consent events are append-only';
end $$;
create trigger consent_events_append_only before update on consent_events
    for each row execute function consent_events_append_only();

-- Double opt-in: the mailed token, kept as its SHA-256 only; single-use and expiring.
-- `consent` is what the subscription request showed and came from, recorded again
-- with the confirmation.
create table newsletter_confirmations (
    token_hash   bytea primary key,
    user_id      uuid not null references users (id) on delete cascade,
    newsletter   smallint not null references newsletters (id),
    consent      jsonb not null default '{}',
    created_at   timestamptz not null default now(),
    expires_at   timestamptz not null,
    used_at      timestamptz
);
create index newsletter_confirmations_user on newsletter_confirmations (user_id, newsletter);

-- Notification settings (in-app, push, email per product dashboard and event): a
-- separate system from the newsletters. Only what the person changed is stored;
-- the rest is the defaults in code.
create table notification_settings (
    user_id     uuid not null references users (id) on delete cascade,
    dashboard   text not null check (dashboard in ('marketing-suite', 'smtpeter', 'mailerq')),
    event       text not null,
    channels    text[] not null check (channels <@ array['in-app', 'push', 'email']),
    changed_at  timestamptz not null default now(),
    primary key (user_id, dashboard, event)
);
