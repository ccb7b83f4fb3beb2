-- The person's picture: the re-encoded image itself (identity.images: PNG, JPEG or WebP,
-- at most 1024 px a side, nothing but pixels), kept in PostgreSQL so every replica serves
-- it. One per person, replaced whole; etag is a hash of the bytes.
create table pictures (
    user_id       uuid primary key references users (id) on delete cascade,
    content_type  text not null check (content_type in ('image/png', 'image/jpeg', 'image/webp')),
    data          bytea not null,
    etag          text not null,
    width         integer not null check (width > 0),
    height        integer not null check (height > 0),
    updated_at    timestamptz not null default now()
);
