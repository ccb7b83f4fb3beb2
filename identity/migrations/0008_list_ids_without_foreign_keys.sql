-- A flag, a consent event and a confirmation name their list by its number, checked by
-- the service against the catalog (a token for a list not in it is a 404), not by a
-- foreign key. The key's check took a share lock on the list's one catalog row for
-- every flag and event written: every one-click and every imported consent of a list
-- queued on that row (PostgreSQL's multixacts). And a list can now be retired (its
-- catalog row deleted) while its consent events stay, as the proof they are.
alter table subscriptions drop constraint subscriptions_newsletter_fkey,
    add constraint subscriptions_newsletter_check check (newsletter between 1 and 255);
alter table consent_events drop constraint consent_events_newsletter_fkey,
    add constraint consent_events_newsletter_check check (newsletter between 1 and 255);
alter table newsletter_confirmations drop constraint newsletter_confirmations_newsletter_fkey,
    add constraint newsletter_confirmations_newsletter_check
        check (newsletter between 1 and 255);
