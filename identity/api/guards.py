"""The Blueprint every resource is made of, with the guards that say who may call: each
sets the request's `Principal` and runs the view in the request's unit of work."""

import functools
from http import HTTPStatus

import flask_smorest
from flask import current_app, g, request
from werkzeug.exceptions import HTTPException, UnsupportedMediaType

from identity.api.forwarded import browser_address
from identity.api.parsing import Parser
from identity.composition import Services
from identity.db import unit_of_work
from identity.errors import Forbidden, Unauthenticated
from identity.logs import CALLER
from identity.security.access_tokens import EXPIRED
from identity.security.site_keys import looks_like_site_key, site_key_label
from identity.services import trail
from identity.services.accounts.proofs import Proof
from identity.services.accounts.sessions import SIGN_IN_ENDED
from identity.services.principal import Browser, LinkHolder, Principal
from identity.services.security_events import security_event
from identity.services.sites import authenticate_site
from identity.services.staff import staff_may
from schemas.accounts import USER_AGENT_LENGTH
from schemas.text import from_header

JSON = "application/json"
SERVICES = "identity.services"
# The networks of IDENTITY_TRUSTED_PROXIES, read once when the app is made.
TRUSTED_PROXIES = "identity.trusted_proxies"


def services() -> Services:
    """This app's services, as `identity.composition.build` made them."""
    return current_app.extensions[SERVICES]


def principal() -> Principal:
    """Who is calling this request, as its guard found."""
    return g.principal


def caller(body: dict) -> Principal:
    """The caller, with the browser the site speaks for (`client_ip` and `user_agent` in
    the body): the one place a request's browser facts are read from a body."""
    browser = Browser(client_ip=body.get("client_ip"), user_agent=body.get("user_agent"))
    return principal().with_browser(browser)


def proof(body: dict) -> Proof:
    """The second factor's code a body carries (`code`, `recovery_code`), if any."""
    return Proof(code=body.get("code") or None, recovery_code=body.get("recovery_code") or None)


def _in_unit_of_work(view):
    """The view in the request's unit of work: committed when it answers, rolled back when
    it raises, run again after a deadlock."""

    @functools.wraps(view)
    def run(*args, **kwargs):
        return unit_of_work().run(lambda: view(*args, **kwargs))

    return run


class Blueprint(flask_smorest.Blueprint):
    """A resource: MethodViews plus the guards that say who may call them.

    A guard goes above @arguments. It decides who is calling (the `Principal`, then
    `g.principal`) before anything else happens: before the body's type is checked or
    the body read, so a stranger learns nothing about what a valid request looks like and
    costs next to nothing. Then the view runs in the request's unit of work.
    """

    ARGUMENTS_PARSER = Parser()
    # What any operation that reads a body may answer before its schema sees it.
    BODY_PROBLEMS = (
        HTTPStatus.BAD_REQUEST,
        HTTPStatus.REQUEST_TIMEOUT,
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    )

    def arguments(self, schema, *, location="json", **kwargs):
        """flask-smorest's, and for a body also the problems of reading one: malformed
        (400), too slow (408), too large (413), of another type (415). A schema class is
        made into its instance here, once: webargs would make one for every request."""
        if isinstance(schema, type):
            schema = schema()
        decorator = super().arguments(schema, location=location, **kwargs)
        if location not in ("json", "form", "json_or_form", "files"):
            return decorator

        def documented(view):
            return self.body_problems(decorator(view))

        return documented

    def body_problems(self, view):
        """Document the problems of reading a body, for a view that reads its own."""
        for status in self.BODY_PROBLEMS:
            view = self.alt_response(status, response=status.name)(view)
        return view

    def alt_response(self, status_code, **kwargs):
        """flask-smorest's, documenting only. Its own wraps the view in one more call for
        every answer it documents (an operation documents seven or more), to run
        coroutine views that this service does not have."""
        document = super().alt_response(status_code, **kwargs)

        def decorator(view):
            view._apidoc = document(view)._apidoc
            return view

        return decorator

    def _guarded(self, view, identify, problems, security):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            g.principal = identify(kwargs)
            # For the access log: which site called, and for a user token, who.
            user = g.principal.user
            request.environ[CALLER] = (g.principal.site_name, user.user_id if user else None)
            # What identifying read (a key, a sign-in) stands alone: the connection goes
            # back before the body is read, however slowly it comes; the view borrows
            # again when it needs one.
            unit_of_work().release()
            check_media_type()
            return view(*args, **kwargs)

        guarded = _in_unit_of_work(guarded)
        for status in problems:
            guarded = self.alt_response(status, response=status.name)(guarded)
        return self.doc(**security)(guarded)

    def site_key(self, scope: str):
        """Let a request through only with a valid, active site key that has `scope`."""

        def identify(_):
            key = None
            try:
                key = bearer_token()
                found = services().recent_site_keys
                return authenticate_site(unit_of_work(), key, scope, found)
            except (Unauthenticated, Forbidden) as refused:
                security_event("site_key.refused", **_key_refusal(key, refused))
                raise

        def decorator(view):
            problems = (
                HTTPStatus.UNAUTHORIZED,
                HTTPStatus.FORBIDDEN,
                HTTPStatus.SERVICE_UNAVAILABLE,
            )
            security = {"security": [{"siteKey": []}], "x-scope": scope}
            return self._guarded(view, identify, problems, security)

        return decorator

    def user_token(self, *, impersonated: bool = True):
        """Let a request through only with a valid access token of a signed-in person
        whose sign-in still holds (not logged out, no password change since): the
        accounts' sessions decide, and the Principal carries the person's record.

        A staff member acting as the person (an impersonation's token) gets through where
        `impersonated` (and every request of theirs goes into the trail, with both
        people); not where it is False: what takes an account over or away (password,
        address, second factor, social identities, erasure) is the person's alone (403)."""

        def identify(_):
            signed_in = _signed_in()
            if signed_in.user.acting_staff_id is not None:
                _impersonation(signed_in, impersonated)
            return signed_in

        def decorator(view):
            problems = (HTTPStatus.UNAUTHORIZED, HTTPStatus.SERVICE_UNAVAILABLE)
            if not impersonated:
                problems = (*problems, HTTPStatus.FORBIDDEN)
            return self._guarded(view, identify, problems, {"security": [{"userToken": []}]})

        return decorator

    def staff(self, right: str):
        """Let a request through only with the access token of a staff member whose role
        has `right` (identity.services.staff.STAFF_RIGHTS), signed in with their second
        factor. A refusal, and a request staff send without its reason, go into the
        trail."""

        def identify(_):
            signed_in = _signed_in()
            signed_in = signed_in.with_browser(Browser(client_ip=connecting_address()))
            role = signed_in.user.staff_role
            if not staff_may(role, right):
                refusal = "not_staff" if role is None else "role"
                security_event("staff.refused", signed_in, reason=refusal, right=right)
                raise Forbidden(
                    f"this is staff work ({right}): a staff role that allows it, and a sign-in"
                    " made with the second factor's app, are needed"
                )
            return signed_in

        def decorator(view):
            problems = (
                HTTPStatus.UNAUTHORIZED,
                HTTPStatus.FORBIDDEN,
                HTTPStatus.SERVICE_UNAVAILABLE,
            )
            security = {"security": [{"staff": []}], "x-staff-right": right}
            return self._guarded(_recording_refusals(view, right), identify, problems, security)

        return decorator

    def unsubscribe_link(self):
        """Let a request through only with a genuine unsubscribe token in its path (the
        view's `token`): no other credential, no cookie. The token is checked here, in
        memory, before anything else; the view gets the `Principal` holding the link,
        with the client that used it as the browser: its address as the connection or
        the trusted proxies in front say (`identity.api.forwarded`)."""

        def identify(kwargs):
            user_id, list_id = services().newsletters.link_of(kwargs.pop("token"))
            agent = from_header(request.headers.get("User-Agent"), USER_AGENT_LENGTH)
            browser = Browser(client_ip=connecting_address(), user_agent=agent)
            return Principal(link=LinkHolder(user_id, list_id), browser=browser)

        def decorator(view):
            problems = (HTTPStatus.NOT_FOUND, HTTPStatus.SERVICE_UNAVAILABLE)
            return self._guarded(view, identify, problems, {"security": []})

        return decorator


def _signed_in() -> Principal:
    token = None
    try:
        token = bearer_token()
        return services().accounts.sessions.signed_in(unit_of_work(), token)
    except Unauthenticated as refused:
        security_event("access_token.refused", **_token_refusal(token, refused))
        raise


def _impersonation(signed_in: Principal, allowed: bool) -> None:
    """A staff member acting as the person: each request of theirs into the trail, and
    refused where only the person may act."""
    route = request.url_rule.rule if request.url_rule else None
    if not allowed:
        security_event(
            "impersonation.refused",
            signed_in,
            reason="personal",
            method=request.method,
            route=route,
        )
        raise Forbidden("a staff member acting as the person may not do this: only they may")
    trail.record(
        unit_of_work(),
        "impersonation.request",
        signed_in,
        survives=True,
        method=request.method,
        route=route,
    )


def _recording_refusals(view, right: str):
    """The staff view, with the request it refuses as malformed (a missing reason, most
    often) recorded as a refused attempt."""

    @functools.wraps(view)
    def recorded(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except HTTPException as refused:
            if refused.code in (HTTPStatus.BAD_REQUEST, HTTPStatus.UNPROCESSABLE_ENTITY):
                security_event("staff.refused", principal(), reason="invalid_request", right=right)
            raise

    return recorded


def connecting_address() -> str | None:
    """The address the request came from: the connection's, or behind the proxies of
    IDENTITY_TRUSTED_PROXIES the client they name (`identity.api.forwarded`)."""
    return browser_address(
        request.remote_addr,
        request.headers.get("X-Forwarded-For"),
        current_app.extensions[TRUSTED_PROXIES],
    )


def _key_refusal(key: str | None, refused: Exception) -> dict:
    """What `site_key.refused` says: why, the key's prefix when it has a key's shape (a
    credential of another kind sent by mistake shows nothing of itself), and where the
    request came from (no site vouches for a browser here). No query: the refusal and
    its line cost a stranger's request nothing more."""
    shaped = key is not None and looks_like_site_key(key)
    if key is None:
        reason = "missing"
    elif isinstance(refused, Forbidden):
        reason = "scope"
    else:
        reason = "unknown" if shaped else "malformed"
    return {
        "reason": reason,
        "key_prefix": site_key_label(key) if shaped else None,
        "client_ip": connecting_address(),
    }


# Why an access token is refused, by what the refusal says; anything else is "invalid".
_TOKEN_REASONS = {EXPIRED: "expired", SIGN_IN_ENDED: "sign_in_ended"}


def _token_refusal(token: str | None, refused: Unauthenticated) -> dict:
    """What `access_token.refused` says: why (missing, invalid, expired, sign_in_ended)
    and where the request came from; never the token."""
    reason = "missing" if token is None else _TOKEN_REASONS.get(refused.detail, "invalid")
    return {"reason": reason, "client_ip": connecting_address()}


def bearer_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send the key or token as Authorization: Bearer <it>")
    return token.strip()


def accepts(*media_types: str):
    """The body types a view method takes (application/json when not marked)."""

    def decorator(view):
        view.accepted_media_types = media_types
        return view

    return decorator


def check_media_type() -> None:
    """415 for a body of a type the operation does not take, before anything reads it."""
    req = request._get_current_object()  # one look-up of the proxy, not eight
    if req.method not in ("POST", "PUT", "PATCH") or req.endpoint is None:
        return
    headers = req.headers
    if not req.content_length and "chunked" not in headers.get("Transfer-Encoding", ""):
        return
    if headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        raise UnsupportedMediaType("send the body without a Content-Encoding (no gzip)")
    view = current_app.view_functions[req.endpoint]
    method = getattr(getattr(view, "view_class", None), req.method.lower(), view)
    media_types = getattr(method, "accepted_media_types", (JSON,))
    if req.mimetype not in media_types:
        raise UnsupportedMediaType(f"send the body as {' or '.join(media_types)}")
