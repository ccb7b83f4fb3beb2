-- The trail's retention. The serving role may not delete from audit_events (it is
-- insert-only: identity.store.roles.INSERT_ONLY), so its retention goes through this
-- function, the owner's: it removes one batch of rows older than the days asked, and never
-- any younger than a year, whatever it is asked (the trail answers for a year of what was
-- done to whom). Erasure needs no door: its cascade runs as the owner.
create function prune_audit_events(older_than_days integer, batch integer) returns bigint
language plpgsql security definer set search_path = public, pg_temp as $$
declare
    gone bigint;
begin
    -- The trail's trigger lets a delete through only with this said (or in an erasure's
    -- cascade); said for this transaction, and unsaid once done.
    perform set_config('identity.prune_trail', 'on', true);
    delete from audit_events where ctid in (
        select ctid from audit_events
        where at < now() - make_interval(days => greatest(older_than_days, 365))
        limit batch);
    get diagnostics gone = row_count;
    perform set_config('identity.prune_trail', 'off', true);
    return gone;
end $$;
revoke execute on function prune_audit_events(integer, integer) from public;
