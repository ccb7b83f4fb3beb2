"""SQL for the person's export: everything stored about them, as one JSON document built
by PostgreSQL in one statement (one snapshot, one round trip).

`EXPORTED` says where each table that names a user goes; a test holds it against every
foreign key to `users`, so a new table cannot slip out of the export. Secrets stay out
(password hashes, the second factor's sealed secret, mailed tokens' hashes and payloads,
recovery codes' hashes): the export says they exist, when, and how many. A list retired
from the catalog keeps its flags and consent events here (as "list N"): they are the
proof of consent. Nothing is left out for size: retention bounds what is kept."""

from uuid import UUID

import psycopg

EXPORTED = {
    "users": "profile",
    "password_history": "earlier_passwords",
    "account_tokens": "mailed_links",
    "login_attempts": "login_attempts",
    "sessions": "sign_ins",
    "subscriptions": "newsletters",
    "consent_events": "consent_events",
    "newsletter_confirmations": "pending_confirmations",
    "notification_settings": "notification_settings",
    "second_factors": "second_factor",
    "recovery_codes": "recovery_codes",
    "login_challenges": "second_steps",
    "social_identities": "social_identities",
    "company_members": "companies",
    "company_invitations": "invitations",
    "pictures": "picture",
    "staff_roles": "staff_role",
    "audit_events": "audit_trail",
}

_LIST = "coalesce((select jsonb_agg(to_jsonb(x)) from ({}) x), '[]'::jsonb)"
_ONE = "(select to_jsonb(x) from ({}) x)"

_SECTIONS = {
    "profile": _ONE.format(
        """
        select id, email, first_name, infix, last_name, suffix, gender, phone, mobile, fax,
               language, status, field_sources, email_verified_at, created_at, updated_at,
               registered_at, password_hash is not null as has_password
        from users where id = %(id)s
        """
    ),
    "earlier_passwords": _ONE.format(
        """
        select count(*) as kept, min(created_at) as oldest,
               'their hashes are kept to refuse them again, and not exported' as note
        from password_history where user_id = %(id)s
        """
    ),
    "mailed_links": _LIST.format(
        """
        select purpose, created_at, expires_at, used_at from account_tokens
        where user_id = %(id)s order by created_at
        """
    ),
    "login_attempts": _LIST.format(
        """
        select a.at, s.name as site, host(a.client_ip) as client_ip, a.user_agent, a.outcome
        from login_attempts a left join sites s on s.id = a.site_id
        where a.user_id = %(id)s order by a.id
        """
    ),
    "sign_ins": _LIST.format(
        """
        select id, site_name as site, created_at, last_used_at, expires_at, revoked_at,
               user_agent, host(client_ip) as client_ip, amr,
               impersonated_by is not null as by_staff
        from sessions where user_id = %(id)s order by created_at
        """
    ),
    "newsletters": _LIST.format(
        """
        select coalesce(n.key, 'list ' || s.newsletter) as newsletter, s.state, s.changed_at
        from subscriptions s left join newsletters n on n.id = s.newsletter
        where s.user_id = %(id)s order by s.newsletter
        """
    ),
    "consent_events": _LIST.format(
        """
        select coalesce(n.key, 'list ' || e.newsletter) as newsletter, e.action, e.state,
               e.at, e.recorded_at, e.site, host(e.client_ip) as client_ip, e.user_agent,
               e.consent_text, e.channel
        from consent_events e left join newsletters n on n.id = e.newsletter
        where e.user_id = %(id)s order by e.id
        """
    ),
    "pending_confirmations": _LIST.format(
        """
        select coalesce(n.key, 'list ' || c.newsletter) as newsletter, c.created_at,
               c.expires_at, c.used_at
        from newsletter_confirmations c left join newsletters n on n.id = c.newsletter
        where c.user_id = %(id)s order by c.created_at
        """
    ),
    "notification_settings": _LIST.format(
        """
        select dashboard, event, channels, changed_at from notification_settings
        where user_id = %(id)s order by dashboard, event
        """
    ),
    "second_factor": _ONE.format(
        """
        select 'totp' as kind, created_at as set_up_at, confirmed_at as turned_on_at,
               'its secret is kept sealed, and not exported' as note
        from second_factors where user_id = %(id)s
        """
    ),
    "recovery_codes": _ONE.format(
        """
        select count(*) filter (where used_at is null) as left,
               count(*) filter (where used_at is not null) as used
        from recovery_codes where user_id = %(id)s
        """
    ),
    "second_steps": _LIST.format(
        """
        select site_name as site, created_at, expires_at, used_at, failures,
               host(client_ip) as client_ip, user_agent
        from login_challenges where user_id = %(id)s order by created_at
        """
    ),
    "social_identities": _LIST.format(
        """
        select provider, subject, joined_at, joined_site, last_used_at
        from social_identities where user_id = %(id)s order by joined_at
        """
    ),
    "companies": _LIST.format(
        """
        select c.id, c.name, m.role, m.joined_at
        from company_members m join companies c on c.id = m.company_id
        where m.user_id = %(id)s order by m.joined_at
        """
    ),
    "invitations": _LIST.format(
        """
        select c.id as company_id, c.name as company, i.role, i.created_at, i.expires_at,
               i.accepted_at, i.withdrawn_at,
               case when i.user_id = %(id)s then 'received' else 'sent' end as direction
        from company_invitations i join companies c on c.id = i.company_id
        where i.user_id = %(id)s or i.invited_by = %(id)s order by i.created_at
        """
    ),
    "picture": _ONE.format(
        """
        select content_type, width, height, etag, updated_at,
               translate(encode(data, 'base64'), E'\n', '') as data_base64
        from pictures where user_id = %(id)s
        """
    ),
    "staff_role": _ONE.format("select role, granted_at from staff_roles where user_id = %(id)s"),
    # What was done on their record and by whom (of staff: that it was staff, and why);
    # where from only when it was them or a site speaking for their browser.
    "audit_trail": _LIST.format(
        """
        select at, recorded_at, event, actor, site, reason, details,
               case when actor in ('person', 'site', 'link', 'anyone')
                    then host(client_ip) end as client_ip
        from audit_events where subject_id = %(id)s order by id
        """
    ),
}


def document(conn: psycopg.Connection, user_id: UUID) -> str | None:
    """The person's export as JSON text (None: no such record): a key for each of
    EXPORTED's sections, and when it was made."""
    pairs = ", ".join(f"'{name}', {query}" for name, query in _SECTIONS.items())
    row = conn.execute(
        f"""
        select case when exists (select 1 from users where id = %(id)s) then
            jsonb_build_object('exported_at', now(), {pairs})::text end as document
        """,  # noqa: S608 - fixed queries
        {"id": user_id},
    ).fetchone()
    return row["document"]
