-- The trail's retention. The serving role may not delete from audit_events (it is
-- insert-only: identity.store.roles.INSERT_ONLY), so its retention goes through this
-- function, the owner's: it removes one batch of rows older than the days asked, and never
-- any younger than a year, whatever it is asked (the trail answers for a year of what was
-- done to whom). Erasure needs no door: its cascade runs as the owner.
create function prune_audit_events(older_than_days integer, batch integer) returns bigint
language sql security definer set search_path = public, pg_temp as $$
    with gone as (
        delete from audit_events where ctid in (
            select ctid from audit_events
            where at < now() - make_interval(days => greatest(older_than_days, 365))
            limit batch)
        returning 1)
    select count(*) from gone
$$;
revoke execute on function prune_audit_events(integer, integer) from public;
