-- Staff: people of the service's own team, by role. A staff member signs in as any person
-- does; their token works as staff only while they have a second factor on and signed in
-- with it (identity.store.sessions.signed_in_user).
create table staff_roles (
    user_id     uuid primary key references users (id) on delete cascade,
    role        text not null check (role in ('support', 'dpo', 'admin')),
    granted_at  timestamptz not null default now()
);
