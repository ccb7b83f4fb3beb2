-- A notice to a record's address that another account asked to move onto it is counted
-- per record (a token of its own purpose, expired at birth), so that no number of
-- accounts can send one mailbox more than a few an hour.
alter table account_tokens drop constraint account_tokens_purpose_check,
    add constraint account_tokens_purpose_check check (
        purpose in ('verify_email', 'password_reset', 'email_change', 'email_change_notice')
    );
