-- Couriers claim mail with a lease instead of holding a transaction open while they send
-- it, and say that they are alive.
--
-- A claimed mail is `sending`, by courier `claimed_by`, and its `next_attempt_at` is when
-- the claim runs out: should its courier die or freeze with it, any courier takes it again
-- then. The courier records each mail's outcome as soon as the relay has answered, in a
-- statement of its own, so a crash repeats at most the mails it had in flight.
alter table outbox drop constraint outbox_status_check,
    add constraint outbox_status_check
        check (status in ('queued', 'sending', 'sent', 'failed')),
    add column claimed_by uuid;
comment on column outbox.claimed_by is
    'the courier (couriers.id) that claimed a sending mail; its lease ends at next_attempt_at';

drop index outbox_due;
create index outbox_due on outbox (next_attempt_at) where status in ('queued', 'sending');
-- What one courier holds, to hand back when it stops or loses its connection.
create index outbox_claimed on outbox (claimed_by) where status = 'sending';

-- One row a running courier, on any replica, beaten while it runs: a courier is alive while
-- alive_until is ahead. Any replica's /health/ready counts them. A row whose courier died
-- stays a while (pid, host, last beat) for an operator to see, then the next courier to
-- start deletes it.
create table couriers (
    id          uuid primary key,
    pid         integer not null,
    host        text not null,
    started_at  timestamptz not null default now(),
    beat_at     timestamptz not null default now(),
    alive_until timestamptz not null
);
