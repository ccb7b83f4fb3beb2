-- Mail budgets per asking network (issue 21): a token says whether its mail went out
-- (a registration over the limit is kept, not mailed) and from which network it was
-- asked, so that a stranger spends the budget of the networks they ask from, not the
-- owner's. The tokens made before were counted as mails, and still are; they name no
-- network.
alter table account_tokens
    add column mailed boolean not null default true,
    add column requested_from cidr;
alter table account_tokens alter column mailed drop default;

-- Counting an hour's mails reads them alone, however many registrations were kept
-- unmailed meanwhile: all of a record's, and those asked from one network.
create index account_tokens_mailed on account_tokens (user_id, purpose, created_at desc)
    where mailed;
create index account_tokens_mailed_from
    on account_tokens (user_id, purpose, requested_from, created_at desc)
    where mailed and requested_from is not null;

-- A registration reads the newest few pending ones of its address: past the used ones,
-- however many a stranger's registrations were voided when the address was proven.
create index account_tokens_pending on account_tokens (user_id, created_at desc)
    where purpose = 'verify_email' and used_at is null;
