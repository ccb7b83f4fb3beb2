-- Each site its own: the brand and sender its mails go out in, the pages its links lead
-- to, the redirect URIs it may use for social sign-in, its default language and the
-- newsletter lists it manages. Set with `identity sites create|update`; nothing about any
-- one site is written in the code.

alter table sites
    -- The name mails use ("Copernica"); null: the site's name.
    add column brand          text check (brand <> ''),
    -- The From of its mails, "Name <address>"; null: IDENTITY_MAIL_FROM's address, with
    -- the brand as its name.
    add column sender         text check (sender <> ''),
    -- The base URL of its pages: {pages}/verify-email?token=... and the other paths the
    -- contract names. Null: a request that would mail a person of this site is refused.
    add column pages_url      text check (pages_url ~ '^https?://'),
    -- Exact URLs it may send people back to after a social sign-in.
    add column redirect_uris  text[] not null default '{}',
    -- The language of its mails to people who have not chosen one.
    add column language       text not null default 'en' check (language in ('en', 'nl')),
    add column updated_at     timestamptz not null default now();

-- The site that manages a list: its pages hold the list's preference page. A list is
-- managed by at most one site; none yet for the five lists until an operator says so.
-- No foreign key (sites are revoked, never deleted): a TRUNCATE of sites would cascade
-- into the catalog, whose ids the links in old mails carry.
alter table newsletters
    add column site_id uuid;

-- The site whose key (or whose signed-in person) started a mail: the courier sends it in
-- that site's brand, from its sender, with links on its pages. No foreign key: the outbox
-- is written in every mailing request, and a key check would lock the site's row each
-- time. Null: the service's own mail (`identity mail test`).
alter table outbox
    add column site_id uuid;

-- A key has exactly the scopes it was given, and at least one. Keys made before this
-- migration keep exactly what they held: a key made without --scope was stored with every
-- scope there was then, written out (profiles:write, users:read, auth, newsletters), and
-- `newsletters` alone still means every list. No row is changed; the check holds for
-- every key ever made (an empty list was never stored).
alter table site_keys
    add constraint site_keys_some_scope check (cardinality(scopes) > 0);
