-- A company's logo, kept as the person's picture is (identity.images: PNG, JPEG or WebP,
-- re-encoded from its pixels, at most 1024 px a side); one per company, replaced whole.
create table company_logos (
    company_id    uuid primary key references companies (id) on delete cascade,
    content_type  text not null check (content_type in ('image/png', 'image/jpeg', 'image/webp')),
    data          bytea not null,
    etag          text not null,
    width         integer not null check (width > 0),
    height        integer not null check (height > 0),
    updated_at    timestamptz not null default now()
);
