"""Security events (ASVS 16.2, 16.3): one JSON log line for each authentication decision
and each sensitive change, named from a small fixed vocabulary (docs/events.md).

A line says who and from where: the site, its key's prefix, the person, their sign-in,
the client IP and (added by identity.logs) the request id. It never holds an address, a
password, a token or a code: callers pass ids, counts and fixed words only. It costs no
query; with INFO off, not even the dict of its fields.
"""

import logging

from identity.metrics import SECURITY_EVENTS
from identity.services import trail
from identity.services.principal import Principal

log = logging.getLogger("identity.security")

# The vocabulary, as docs/events.md lists it (a test holds the table, this and every
# call in the code to one another). Names are dotted, `subject.what_happened`, and stable:
# alerting is written against them.
EVENTS = frozenset(
    {
        "login.succeeded",
        "login.failed",
        "login.throttled",
        "second_factor.required",
        "second_factor.succeeded",
        "second_factor.failed",
        "second_factor.enabled",
        "second_factor.disabled",
        "reauthentication.failed",
        "refresh_token.refused",
        "refresh_token.reused",
        "access_token.refused",
        "site_key.refused",
        "site_key.issued",
        "site_key.revoked",
        "signing_key.rotated",
        "password.changed",
        "password_reset.requested",
        "password_reset.completed",
        "email_change.requested",
        "email.changed",
        "email_change.undone",
        "registration.requested",
        "registration.proven",
        "session.logged_out",
        "session.revoked",
        "sessions.revoked",
        "social.signed_in",
        "social.joined",
        "social.proof_requested",
        "social.refused",
        "social.left",
        "staff.refused",
        "impersonation.started",
        "impersonation.refused",
        "person.erased",
        "erasure.refused",
    }
)

# What every line carries, null where it is not known (an operator's command has no site).
WHO = ("site", "key_prefix", "user_id", "session_id", "client_ip")
_NOBODY = dict.fromkeys(WHO)


def security_event(event: str, principal: Principal | None = None, /, **fields) -> None:
    """Log `event` (one of EVENTS, written out where it is called, so the vocabulary can
    be checked) for the caller `principal` (none for an operator's command), with
    `fields`: ids, counts and fixed words only. A field given overrides what the principal
    says (the `user_id` of a login, whose caller is the site). Counted by name for
    `GET /metrics` whether or not the line is logged, and a row of the audit trail."""
    SECURITY_EVENTS.labels(event).inc()
    trail.security(event, principal, fields)
    if not log.isEnabledFor(logging.INFO):
        return
    log.info(event, extra={"event": event, **_who(principal), **fields})


def _who(principal: Principal | None) -> dict:
    if principal is None:
        return _NOBODY
    site, user = principal.site, principal.user
    return {
        "site": principal.site_name,
        "key_prefix": site.key_prefix if site else None,
        "user_id": user.user_id if user else None,
        "session_id": user.session_id if user else None,
        "client_ip": principal.browser.client_ip,
    }
