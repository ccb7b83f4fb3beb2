-- The audit trail, impersonation, and erasure: its ledger and the suppression list.

-- The trail (append-only): every security event, every staff read of a person's data and
-- every change of a record by anyone other than its person. Who acted (`actor`: what kind
-- of caller; `actor_id`: the person or staff member, when one), on whose record
-- (`subject_id`), what (`event` and `details`: ids, counts and fixed words, never an
-- address or a secret), when, from where, and why (`reason`, which staff must give).
-- Erasing a person removes the events about them (their data) and keeps those they did to
-- others without their id; the erasure itself is an event naming only its ledger entry.
create table audit_events (
    id          bigint generated always as identity primary key,
    at          timestamptz not null default now(),
    event       text not null,
    actor       text not null
                check (actor in ('person', 'staff', 'impersonation', 'site', 'link',
                                 'operator', 'anyone')),
    actor_id    uuid references users (id) on delete set null,
    subject_id  uuid references users (id) on delete cascade,
    site        text,
    key_prefix  text,
    client_ip   inet,
    reason      text,
    details     jsonb not null default '{}'
);
create index audit_events_subject on audit_events (subject_id, id) where subject_id is not null;
create index audit_events_actor on audit_events (actor_id, id) where actor_id is not null;
create index audit_events_at on audit_events (at);

-- Never changed; the one change allowed is the erasure of its actor (`on delete set null`,
-- a foreign key's action: a trigger within a trigger). Never deleted but with the person
-- it is about (`on delete cascade`, likewise) or by retention (`identity prune`, through the
-- owner's function prune_audit_events of 0030, which says so: identity.prune_trail).
create function audit_events_append_only() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        if pg_trigger_depth() > 1
           or current_setting('identity.prune_trail', true) = 'on' then
            return old;
        end if;
        raise exception 'audit events are append-only';
    end if;
    if pg_trigger_depth() > 1 and new.actor_id is null and old.actor_id is not null
       and (new.id, new.at, new.event, new.actor, new.subject_id, new.site, new.key_prefix,
            new.client_ip, new.reason, new.details)
           is not distinct from
           (old.id, old.at, old.event, old.actor, old.subject_id, old.site, old.key_prefix,
            old.client_ip, old.reason, old.details) then
        return new;
    end if;
    raise exception 'audit events are append-only';
end $$;
create trigger audit_events_append_only before update or delete on audit_events
    for each row execute function audit_events_append_only();

-- A staff member acting as a person: a sign-in of that person with no refresh token,
-- naming the staff member (the access token's `act` claim).
alter table sessions add column impersonated_by uuid references users (id) on delete cascade;

-- The erasure ledger: who was erased and when, by id only, so that `identity erasures
-- reapply` removes them again from a restored backup. `identity backup` leaves it (and the
-- suppression list) out of the dump, so a restore does not roll it back.
create table erasures (
    id         bigint generated always as identity primary key,
    user_id    uuid not null unique,
    erased_at  timestamptz not null default now()
);

-- Addresses that must not be subscribed to a list again without fresh, confirmed consent
-- (an erased person's): a keyed hash of the address's key, nothing else. A confirmed
-- subscription lifts it.
create table suppressed_addresses (
    address_hash  bytea primary key,
    since         timestamptz not null default now()
);

-- Staff search records by the beginning of an address, a name or a company's name: each
-- a prefix search of an index, whatever the database's collation.
create index users_email_key_prefix on users (email_key text_pattern_ops);
create index users_first_name_prefix on users (lower(first_name) text_pattern_ops);
create index users_last_name_prefix on users (lower(last_name) text_pattern_ops);
create index companies_name_prefix on companies (lower(name) text_pattern_ops);
