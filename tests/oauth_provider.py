"""A real OAuth 2 / OpenID Connect provider on loopback, in a thread, for the tests of social
login: Google's and LinkedIn's OpenID Connect and Facebook's OAuth 2 with the Graph API's
`me`, each under its own path on one server."""

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from html import escape
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

import requests
from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

OIDC_SHAPES = ("google", "linkedin")
SHAPES = (*OIDC_SHAPES, "facebook")
KNOBS = frozenset(
    {
        "id_token_claims",
        "alg_none",
        "bad_signature",
        "other_key",
        "token_status",
        "token_garbage",
        "userinfo_status",
        "delay",
        "discovery_status",
    }
)
# The Graph API's fields of a user that `me` may be asked for; others are an error there.
GRAPH_FIELDS = frozenset(
    {"id", "name", "first_name", "last_name", "middle_name", "short_name", "email", "picture"}
)
VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")
TOKEN_SECONDS = 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _s256(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode()).digest())


def _json(body: dict, status: int = 200, **headers) -> Response:
    return Response(
        json.dumps(body),
        status,
        {"Cache-Control": "no-store", "Pragma": "no-cache", **headers},
        content_type="application/json",
    )


def _html(status: int, text: str) -> Response:
    page = f"<!DOCTYPE html><html><head><title>Error {status}</title></head>"
    page += f"<body><h1>Error {status}</h1><p>{escape(text)}</p></body></html>"
    return Response(page, status, content_type="text/html; charset=utf-8")


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


class _Refused(Exception):
    """An answer that ends the handling of a request early."""

    def __init__(self, response: Response):
        self.response = response


def _oauth_error(status: int, error: str, description: str, **headers) -> _Refused:
    return _Refused(_json({"error": error, "error_description": description}, status, **headers))


class Provider:
    """Three providers' shapes on one loopback server."""

    def __init__(self):
        kid = secrets.token_hex(8)
        params = {"kid": kid, "use": "sig", "alg": "RS256"}
        self._key = RSAKey.generate_key(2048, parameters=params)
        # Same kid, not in the JWKS: what a forger signs with.
        self._other_key = RSAKey.generate_key(2048, parameters=params)
        self._secrets = {shape: f"{shape}-secret-{secrets.token_urlsafe(16)}" for shape in SHAPES}
        # Seconds a code may wait for the token endpoint; a test of expiry may shorten it.
        self.code_lifetime = 60.0
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None
        self.url = ""
        self.reset()

    def __enter__(self) -> "Provider":
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        # shutdown() waits for the loop's next look at its flag: half a second by default.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.01,), daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()

    def discovery_url(self, shape: str) -> str:
        assert shape in OIDC_SHAPES, shape
        return f"{self.url}/{shape}/.well-known/openid-configuration"

    def issuer(self, shape: str) -> str:
        assert shape in OIDC_SHAPES, shape
        return f"{self.url}/{shape}"

    def client(self, shape: str) -> tuple[str, str]:
        return f"{shape}-client", self._secrets[shape]

    @property
    def facebook_authorize_url(self) -> str:
        return f"{self.url}/facebook/dialog/oauth"

    @property
    def facebook_token_url(self) -> str:
        return f"{self.url}/facebook/oauth/access_token"

    @property
    def facebook_userinfo_url(self) -> str:
        return f"{self.url}/facebook/me"

    def settings(self) -> dict[str, str]:
        """The service's environment for signing in with all three."""
        env = {}
        for shape in SHAPES:
            client_id, secret = self.client(shape)
            env[f"IDENTITY_{shape.upper()}_CLIENT_ID"] = client_id
            env[f"IDENTITY_{shape.upper()}_CLIENT_SECRET"] = secret
        for shape in OIDC_SHAPES:
            env[f"IDENTITY_{shape.upper()}_DISCOVERY_URL"] = self.discovery_url(shape)
        env["IDENTITY_FACEBOOK_AUTHORIZE_URL"] = self.facebook_authorize_url
        env["IDENTITY_FACEBOOK_TOKEN_URL"] = self.facebook_token_url
        env["IDENTITY_FACEBOOK_USERINFO_URL"] = self.facebook_userinfo_url
        return env

    def next_person(self, shape: str, sub: str, **claims) -> None:
        """Who signs in at `shape` from now on: OpenID claims, or for facebook the Graph
        API's fields (first_name, last_name, email), `sub` being its `id`."""
        assert shape in SHAPES, shape
        with self._lock:
            self._people[shape] = (sub, claims)

    def deny_next(self, shape: str) -> None:
        """The person refuses the service at the next authorize of `shape`."""
        assert shape in SHAPES, shape
        with self._lock:
            self._denials.add(shape)

    def misbehave(self, shape: str, **knobs) -> None:
        """How `shape` goes wrong until reset(); see KNOBS."""
        assert shape in SHAPES, shape
        unknown = set(knobs) - KNOBS
        if unknown:
            raise TypeError(f"no such knob: {', '.join(sorted(unknown))}")
        with self._lock:
            self._knobs[shape].update(knobs)

    def reset(self) -> None:
        """Forget people, denials, knobs, codes, tokens and the requests seen."""
        with self._lock:
            self._people: dict[str, tuple[str, dict]] = {}
            self._denials: set[str] = set()
            self._knobs: dict[str, dict] = {shape: {} for shape in SHAPES}
            self._codes: dict[str, dict] = {}
            self._tokens: dict[str, dict] = {}
            self.requests.clear()

    def authorize(self, authorization_url: str) -> dict[str, str]:
        """Play the browser: the query of the provider's redirect back to the service."""
        answer = requests.get(authorization_url, allow_redirects=False, timeout=10)
        assert answer.status_code == 302, f"{answer.status_code}: {answer.text}"
        location = urlsplit(answer.headers["Location"])
        asked = dict(parse_qsl(urlsplit(authorization_url).query))
        expected = urlsplit(asked["redirect_uri"])
        assert location[:3] == expected[:3], f"redirected to {answer.headers['Location']}"
        return dict(parse_qsl(location.query))

    @Request.application
    def _wsgi(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.args.to_dict(),
                    "form": request.form.to_dict(),
                    "headers": dict(request.headers),
                }
            )
        shape, _, rest = request.path.lstrip("/").partition("/")
        routes = {
            "google": self._OIDC_ROUTES,
            "linkedin": self._OIDC_ROUTES,
            "facebook": self._FACEBOOK_ROUTES,
        }
        route = routes.get(shape, {}).get(rest)
        if route is None:
            return _html(404, "Not found.")
        methods, handler = route
        if request.method not in methods:
            return Response("Method not allowed.", 405, {"Allow": ", ".join(methods)})
        with self._lock:
            knobs = dict(self._knobs[shape])
        try:
            return handler(self, shape, request, knobs)
        except _Refused as refused:
            return refused.response

    def _discovery(self, shape: str, request: Request, knobs: dict) -> Response:
        if "discovery_status" in knobs:
            return _html(knobs["discovery_status"], "The server had a problem.")
        issuer = self.issuer(shape)
        return _json(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "userinfo_endpoint": f"{issuer}/userinfo",
                "jwks_uri": f"{issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "grant_types_supported": ["authorization_code"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                ],
                "scopes_supported": ["openid", "email", "profile"],
                "claims_supported": [
                    "iss",
                    "aud",
                    "sub",
                    "iat",
                    "exp",
                    "nonce",
                    "email",
                    "email_verified",
                    "name",
                    "given_name",
                    "family_name",
                    "picture",
                    "locale",
                ],
            }
        )

    def _jwks(self, shape: str, request: Request, knobs: dict) -> Response:
        return _json({"keys": [self._key.as_dict(private=False)]})

    def _authorize(self, shape: str, request: Request, knobs: dict) -> Response:
        args = request.args
        oidc = shape in OIDC_SHAPES
        redirect_uri = args.get("redirect_uri", "")
        target = urlsplit(redirect_uri)
        problem = None
        if args.get("client_id") != self.client(shape)[0]:
            problem = "The OAuth client was not found."
        elif target.scheme not in ("http", "https") or not target.netloc or target.fragment:
            problem = "Missing or invalid redirect_uri."
        elif args.get("response_type") != "code":
            problem = "Unsupported response_type: only code."
        elif oidc and "openid" not in args.get("scope", "").split():
            problem = "The scope must contain openid."
        elif oidc and "code_challenge" not in args:
            problem = "PKCE is required: code_challenge is missing."
        elif "code_challenge" in args and args.get("code_challenge_method") != "S256":
            problem = "code_challenge_method must be S256."
        elif "code_challenge" in args and not CHALLENGE.fullmatch(args["code_challenge"]):
            problem = "code_challenge is not a base64url SHA-256."
        if problem:
            return _html(400, f"invalid_request: {problem}")
        state = {"state": args["state"]} if "state" in args else {}
        with self._lock:
            denied = shape in self._denials
            self._denials.discard(shape)
            person = self._people.get(shape, (f"{shape}-person", {}))
            if denied:
                error = {"error": "access_denied", "error_description": "The user refused."}
                return Response(
                    status=302, headers={"Location": _with_query(redirect_uri, {**error, **state})}
                )
            code = secrets.token_urlsafe(32)
            self._codes[code] = {
                "shape": shape,
                "client_id": args["client_id"],
                "redirect_uri": redirect_uri,
                "challenge": args.get("code_challenge"),
                "nonce": args.get("nonce"),
                "scope": args.get("scope", ""),
                "person": person,
                "expires": time.monotonic() + self.code_lifetime,
                "used": False,
            }
        location = _with_query(redirect_uri, {"code": code, **state})
        return Response(status=302, headers={"Location": location})

    def _client_of(self, shape: str, request: Request) -> str:
        """The client the token request authenticates as (client_secret_basic or _post)."""
        form = request.form
        header = request.headers.get("Authorization", "")
        if header[:6].lower() == "basic ":
            if "client_secret" in form:
                raise _oauth_error(400, "invalid_request", "More than one client authentication.")
            try:
                pair = base64.b64decode(header[6:].strip(), validate=True).decode()
            except ValueError:
                pair = ""
            client_id, colon, secret = pair.partition(":")
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
            if not colon or form.get("client_id", client_id) != client_id:
                client_id = secret = ""
            challenge = {"WWW-Authenticate": 'Basic realm="token"'}
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
            challenge = {}
        expected_id, expected_secret = self.client(shape)
        if not (
            secrets.compare_digest(client_id, expected_id)
            and secrets.compare_digest(secret, expected_secret)
        ):
            raise _oauth_error(401, "invalid_client", "Client authentication failed.", **challenge)
        return client_id

    def _token(self, shape: str, request: Request, knobs: dict) -> Response:
        time.sleep(knobs.get("delay", 0))
        if "token_status" in knobs:
            return _html(knobs["token_status"], "The server had a problem.")
        if knobs.get("token_garbage"):
            return Response("<html>Try again later</html>", 200, content_type="application/json")
        client_id = self._client_of(shape, request)
        form = request.form
        if form.get("grant_type") != "authorization_code":
            raise _oauth_error(400, "unsupported_grant_type", "Only authorization_code.")
        with self._lock:
            grant = self._codes.get(form.get("code", ""))
            if grant is None or grant["shape"] != shape or grant["client_id"] != client_id:
                raise _oauth_error(400, "invalid_grant", "Unknown code.")
            if grant["used"]:
                # RFC 6749 10.5: a code used twice revokes what it gave.
                for token in [t for t, g in self._tokens.items() if g["code"] is grant]:
                    del self._tokens[token]
                raise _oauth_error(400, "invalid_grant", "The code was already used.")
            grant["used"] = True
        if time.monotonic() > grant["expires"]:
            raise _oauth_error(400, "invalid_grant", "The code has expired.")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            raise _oauth_error(400, "invalid_grant", "redirect_uri does not match.")
        verifier = form.get("code_verifier")
        if grant["challenge"] is None:
            if verifier is not None:
                raise _oauth_error(400, "invalid_grant", "code_verifier without a challenge.")
        elif verifier is None or not VERIFIER.fullmatch(verifier):
            raise _oauth_error(400, "invalid_grant", "Missing or malformed code_verifier.")
        elif not secrets.compare_digest(_s256(verifier), grant["challenge"]):
            raise _oauth_error(400, "invalid_grant", "code_verifier does not match.")
        access_token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[access_token] = {"shape": shape, "code": grant}
        body = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_SECONDS,
            "scope": grant["scope"],
        }
        if shape in OIDC_SHAPES:
            body["id_token"] = self._id_token(shape, grant, knobs)
        return _json(body)

    def _id_token(self, shape: str, grant: dict, knobs: dict) -> str:
        sub, person = grant["person"]
        now = int(time.time())
        claims = {
            "iss": self.issuer(shape),
            "aud": grant["client_id"],
            "azp": grant["client_id"],
            "sub": sub,
            "iat": now,
            "exp": now + 300,
            **({"nonce": grant["nonce"]} if grant["nonce"] is not None else {}),
            **person,
        }
        for name, value in knobs.get("id_token_claims", {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        if knobs.get("alg_none"):
            header = json.dumps({"alg": "none", "typ": "JWT"}).encode()
            return f"{_b64(header)}.{_b64(json.dumps(claims).encode())}."
        key = self._other_key if knobs.get("other_key") else self._key
        header = {"alg": "RS256", "kid": key.kid, "typ": "JWT"}
        token = jwt.encode(header, claims, key, algorithms=["RS256"])
        if knobs.get("bad_signature"):
            head, payload, signature = token.split(".")
            raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
            for i in range(0, len(raw), 16):
                raw[i] ^= 0xFF
            token = f"{head}.{payload}.{_b64(bytes(raw))}"
        return token

    def _bearer(self, shape: str, request: Request, allow_query: bool) -> dict:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        if token is None and allow_query:
            token = request.args.get("access_token")
        with self._lock:
            grant = self._tokens.get(token or "")
        if grant is None or grant["shape"] != shape:
            if shape == "facebook":
                error = {
                    "message": "Invalid OAuth access token.",
                    "type": "OAuthException",
                    "code": 190,
                }
                raise _Refused(_json({"error": error}, 401))
            raise _oauth_error(
                401,
                "invalid_token",
                "The access token is unknown or revoked.",
                **{"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return grant["code"]

    def _userinfo(self, shape: str, request: Request, knobs: dict) -> Response:
        time.sleep(knobs.get("delay", 0))
        if "userinfo_status" in knobs:
            return _html(knobs["userinfo_status"], "The server had a problem.")
        sub, person = self._bearer(shape, request, allow_query=False)["person"]
        return _json({"sub": sub, **person})

    def _me(self, shape: str, request: Request, knobs: dict) -> Response:
        time.sleep(knobs.get("delay", 0))
        if "userinfo_status" in knobs:
            return _html(knobs["userinfo_status"], "The server had a problem.")
        sub, person = self._bearer(shape, request, allow_query=True)["person"]
        fields = [f for f in request.args.get("fields", "id,name").split(",") if f]
        unknown = [f for f in fields if f not in GRAPH_FIELDS and f not in person]
        if unknown:
            error = {
                "message": f"(#100) Tried accessing nonexisting field ({unknown[0]})",
                "type": "OAuthException",
                "code": 100,
            }
            return _json({"error": error}, 400)
        user = {"id": str(sub), **person}
        if "name" not in user and ("first_name" in user or "last_name" in user):
            user["name"] = " ".join(user[f] for f in ("first_name", "last_name") if f in user)
        return _json({f: user[f] for f in fields if f in user})

    _OIDC_ROUTES = {
        ".well-known/openid-configuration": (("GET",), _discovery),
        "authorize": (("GET",), _authorize),
        "token": (("POST",), _token),
        "userinfo": (("GET", "POST"), _userinfo),
        "jwks": (("GET",), _jwks),
    }
    _FACEBOOK_ROUTES = {
        "dialog/oauth": (("GET",), _authorize),
        "oauth/access_token": (("POST",), _token),
        "me": (("GET",), _me),
    }
