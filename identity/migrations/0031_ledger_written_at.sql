-- When a row of the consent ledger or of the trail was written is the database's own
-- clock, whatever an insert says: what it says happened (`at`) may come from elsewhere (an
-- import's original consent, a join's copy with its times), so `recorded_at` is what no
-- writer, the service's role included, can backdate.
alter table audit_events add column recorded_at timestamptz not null default now();

create function ledger_written_now() returns trigger language plpgsql as $$
begin
    new.recorded_at := now();
    return new;
end $$;
create trigger consent_events_written_now before insert on consent_events
    for each row execute function ledger_written_now();
create trigger audit_events_written_now before insert on audit_events
    for each row execute function ledger_written_now();

-- The trail's own guard, its new column among those no update may touch.
create or replace function audit_events_append_only() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        if pg_trigger_depth() > 1
           or current_setting('identity.prune_trail', true) = 'on' then
            return old;
        end if;
        raise exception 'audit events are append-only';
    end if;
    if pg_trigger_depth() > 1 and new.actor_id is null and old.actor_id is not null
       and (new.id, new.at, new.recorded_at, new.event, new.actor, new.subject_id, new.site,
            new.key_prefix, new.client_ip, new.reason, new.details)
           is not distinct from
           (old.id, old.at, old.recorded_at, old.event, old.actor, old.subject_id, old.site,
            old.key_prefix, old.client_ip, old.reason, old.details) then
        return new;
    end if;
    raise exception 'audit events are append-only';
end $$;
