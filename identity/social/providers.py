"""One provider over the wire, through authlib's OAuth 2 client (the authorization URL
with PKCE, the code's exchange) and joserfc (the ID token's signature, against the
provider's published keys): Google and LinkedIn as OpenID Connect providers found by
their discovery document, Facebook as OAuth 2 with the Graph API's `me`.

What comes back is a `Person`: the provider's subject id, the address, whether the
provider vouches for it, and the names; nothing else a provider says is read.

requests and authlib are imported where they are used, not with this module: gunicorn's
master loads the app before its gevent workers patch ssl and sockets, and a urllib3
loaded before that would hold the unpatched ones."""

import base64
import hashlib
import hmac
import json
import re
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

PROVIDERS = ("google", "linkedin", "facebook")

# The provider's name as the person knows it, for mails and messages.
TITLES = {"google": "Google", "linkedin": "LinkedIn", "facebook": "Facebook"}

# What an ID token may be signed with: the asymmetric algorithms the providers use; "none"
# and the HMAC ones (keyed with the client secret, which this service shares) never.
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")
# An ID token issued longer ago than this is old: the code it came with was just made.
ID_TOKEN_MAX_AGE_SECONDS = 600
# Clocks differ: a token this many seconds from its times still counts.
LEEWAY_SECONDS = 60
# Discovery documents and key sets are kept this long; an unknown key id reads the key
# set again, at most once in this many seconds (a stranger's tokens cannot make the
# service ask the provider at every request).
METADATA_SECONDS = 3600
KEYS_REREAD_SECONDS = 60
# What is read of a provider's answer, at most: discovery, keys, tokens and `me` are small.
MAX_ANSWER_BYTES = 256 * 1024
# Subject ids: Google's are 21 digits, LinkedIn's and Facebook's shorter.
MAX_SUBJECT = 255
# The record's names hold this many characters at most.
MAX_NAME = 100


# An OAuth error code as RFC 6749 writes them (invalid_grant): all of a provider's error
# that is repeated to the caller.
_ERROR_CODE = re.compile(r"[a-z_]{1,40}")


class ProviderDown(Exception):
    """The provider cannot be reached, answers too slowly, fails, or answers garbage."""


class ProviderRefused(Exception):
    """The provider refused the code, or its answer does not hold (another client's
    token, a bad signature, a wrong nonce, an old or expired token)."""


@dataclass(frozen=True)
class ProviderSettings:
    """One provider's client: OpenID Connect from `discovery_url`, or plain OAuth 2 from
    the three endpoints (Facebook's)."""

    name: str
    client_id: str
    client_secret: str
    discovery_url: str | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    userinfo_url: str | None = None

    @property
    def openid(self) -> bool:
        return self.discovery_url is not None


@dataclass(frozen=True)
class Person:
    """Who signed in at the provider, as far as this service reads it."""

    subject: str
    email: str | None
    email_verified: bool
    first_name: str | None
    last_name: str | None


def provider_settings(config: dict) -> dict[str, ProviderSettings]:
    """The providers turned on in `config` (identity.config's): those with a client id."""
    found = {}
    for name in PROVIDERS:
        upper = name.upper()
        client_id = config[f"{upper}_CLIENT_ID"]
        if not client_id:
            continue
        if name == "facebook":
            found[name] = ProviderSettings(
                name,
                client_id,
                config["FACEBOOK_CLIENT_SECRET"],
                authorize_url=config["FACEBOOK_AUTHORIZE_URL"],
                token_url=config["FACEBOOK_TOKEN_URL"],
                userinfo_url=config["FACEBOOK_USERINFO_URL"],
            )
        else:
            found[name] = ProviderSettings(
                name,
                client_id,
                config[f"{upper}_CLIENT_SECRET"],
                discovery_url=config[f"{upper}_DISCOVERY_URL"],
            )
    return found


class Provider:
    """One provider's client, shared by a process's threads: discovery and keys are read
    once and kept (`METADATA_SECONDS`)."""

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.timeout = timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._metadata: tuple[float, dict] | None = None
        self._keys: tuple[float, KeySet] | None = None

    @property
    def name(self) -> str:
        return self.settings.name

    def authorization_url(
        self, redirect_uri: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        """Where the person's browser goes to sign in at the provider: the code comes back
        to `redirect_uri` with `state`; PKCE's challenge (S256) of `code_verifier`."""
        endpoint = self._endpoints()["authorization_endpoint"]
        extra = {"nonce": nonce} if self.settings.openid else {}
        url, _ = self._session(redirect_uri).create_authorization_url(
            endpoint, state=state, code_verifier=code_verifier, **extra
        )
        return url

    def person(self, code: str, redirect_uri: str, code_verifier: str, nonce: str) -> Person:
        """Exchange `code` (with the verifier and redirect URI it was asked with) and read
        who signed in: from the checked ID token (OpenID Connect), or from the Graph API's
        `me` (Facebook)."""
        import requests
        from authlib.common.errors import AuthlibBaseError

        endpoints = self._endpoints()
        session = self._session(redirect_uri)
        try:
            token = session.fetch_token(
                endpoints["token_endpoint"],
                code=code,
                code_verifier=code_verifier,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except AuthlibBaseError as error:  # the provider's own refusal (invalid_grant, ...)
            said = error.error if _ERROR_CODE.fullmatch(str(error.error)) else "an error"
            raise ProviderRefused(f"the provider refused the code ({said})") from None
        except (requests.RequestException, ValueError) as error:
            raise ProviderDown(_why(error)) from None
        if not isinstance(token, dict) or not isinstance(token.get("access_token"), str):
            raise ProviderDown("the provider's token answer holds no access token")
        if self.settings.openid:
            if not isinstance(token.get("id_token"), str):
                raise ProviderRefused("the provider's answer holds no ID token")
            return self._from_id_token(token["id_token"], nonce)
        return self._from_graph(session, token["access_token"])

    # --- OpenID Connect ---------------------------------------------------------------

    def _from_id_token(self, id_token: str, nonce: str) -> Person:
        """The ID token's claims, once its signature (the provider's keys, an asymmetric
        algorithm), issuer, audience, nonce and times hold (OpenID Connect Core 3.1.3.7)."""
        claims = self._verified_claims(id_token)
        now = self.clock()
        issuer = self._endpoints()["issuer"]
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        checks = [
            (claims.get("iss") == issuer, "another issuer"),
            (
                isinstance(audiences, list) and self.settings.client_id in audiences,
                "another client's token",
            ),
            (
                len(audiences or []) < 2 or claims.get("azp") == self.settings.client_id,
                "a token authorised for another client",
            ),
            (
                isinstance(claims.get("nonce"), str)
                and hmac.compare_digest(claims["nonce"].encode(), nonce.encode()),
                "a token of another sign-in (its nonce)",
            ),
            (
                _number(claims.get("exp")) and claims["exp"] > now - LEEWAY_SECONDS,
                "an expired token",
            ),
            (
                _number(claims.get("iat"))
                and now - ID_TOKEN_MAX_AGE_SECONDS <= claims["iat"] <= now + LEEWAY_SECONDS,
                "a token issued too long ago, or in the future",
            ),
        ]
        for holds, what in checks:
            if not holds:
                raise ProviderRefused(f"the provider's ID token does not hold: {what}")
        verified = claims.get("email_verified")
        return _person(
            claims.get("sub"),
            claims.get("email"),
            verified is True or verified == "true",  # some providers write it as a string
            claims.get("given_name"),
            claims.get("family_name"),
        )

    def _verified_claims(self, id_token: str) -> dict:
        """The claims of an ID token signed with one of the provider's keys (picked by its
        `kid`) in one of ID_TOKEN_ALGORITHMS."""
        header = _header_of(id_token)
        if header.get("alg") not in ID_TOKEN_ALGORITHMS:
            raise ProviderRefused("the provider's ID token is not signed as it must be")
        keys = self._key_set(header.get("kid"))
        try:
            token = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS)
        except (JoseError, ValueError, TypeError):
            raise ProviderRefused("the provider's ID token does not hold: its signature") from None
        if not isinstance(token.claims, dict):
            raise ProviderRefused("the provider's ID token holds no claims")
        return token.claims

    def _key_set(self, kid: str | None) -> KeySet:
        """The provider's keys; read again when `kid` is not among them (it rotated), at
        most once in KEYS_REREAD_SECONDS."""
        now = self.clock()
        with self._lock:
            kept = self._keys
        if kept is not None:
            read_at, keys = kept
            known = kid is None or any(key.kid == kid for key in keys.keys)
            if (known and now - read_at < METADATA_SECONDS) or now - read_at < KEYS_REREAD_SECONDS:
                return keys
        document = _get_json(self._endpoints()["jwks_uri"], self.timeout)
        try:
            keys = KeySet.import_key_set(document)
        except (JoseError, ValueError, TypeError, KeyError):
            raise ProviderDown("the provider's key set is not one") from None
        with self._lock:
            self._keys = (now, keys)
        return keys

    def _endpoints(self) -> dict:
        """Where to send the person and the code: the discovery document's (read once an
        hour), or Facebook's settings."""
        s = self.settings
        if not s.openid:
            return {"authorization_endpoint": s.authorize_url, "token_endpoint": s.token_url}
        now = self.clock()
        with self._lock:
            kept = self._metadata
        if kept is not None and now - kept[0] < METADATA_SECONDS:
            return kept[1]
        document = _get_json(s.discovery_url, self.timeout)
        needed = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
        if not all(isinstance(document.get(name), str) for name in needed):
            raise ProviderDown("the provider's discovery document lacks its endpoints")
        with self._lock:
            self._metadata = (now, document)
        return document

    # --- Facebook ------------------------------------------------------------------------

    def _from_graph(self, session, access_token: str) -> Person:
        """The Graph API's `me`, with the fields this service takes and the proof that the
        call comes from the app (`appsecret_proof`, as Facebook asks of servers)."""
        import requests

        proof = hmac.new(
            self.settings.client_secret.encode(), access_token.encode(), hashlib.sha256
        ).hexdigest()
        params = {"fields": "id,first_name,last_name,email", "appsecret_proof": proof}
        try:
            answer = session.get(
                self.settings.userinfo_url,
                params=params,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            )
            document = _json_of(answer)
        except requests.RequestException as error:
            raise ProviderDown(_why(error)) from None
        # Facebook documents no "verified" for the address it gives: it does not vouch.
        return _person(
            document.get("id"),
            document.get("email"),
            False,
            document.get("first_name"),
            document.get("last_name"),
        )

    def _session(self, redirect_uri: str):
        """authlib's OAuth 2 client (requests underneath) for one flow."""
        from authlib.integrations.requests_client import OAuth2Session

        scope = "openid email profile" if self.settings.openid else "email public_profile"
        return OAuth2Session(
            self.settings.client_id,
            self.settings.client_secret,
            scope=scope,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_post",  # noqa: S106 - a method's name
        )


def _header_of(id_token: str) -> dict:
    """The header of a compact JWS, read without checking anything (to pick its key)."""
    try:
        part = id_token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise ProviderRefused("the provider's ID token is not a signed JWT") from None
    if not isinstance(header, dict):
        raise ProviderRefused("the provider's ID token is not a signed JWT")
    return header


def _person(subject, email, verified: bool, first, last) -> Person:
    if isinstance(subject, int) and not isinstance(subject, bool):
        subject = str(subject)
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT:
        raise ProviderDown("the provider named nobody (no subject id)")
    if any(unicodedata.category(c)[0] == "C" for c in subject):  # NUL, lone surrogates...
        raise ProviderDown("the provider's subject id is not text")
    return Person(
        subject=subject,
        email=email if isinstance(email, str) else None,
        email_verified=verified,
        first_name=_name(first),
        last_name=_name(last),
    )


def _name(value) -> str | None:
    """A name as the record keeps one (NFC, trimmed, at most MAX_NAME characters, plain
    text), or None: a provider's odd value is left out, not a reason to fail the sign-in."""
    if not isinstance(value, str):
        return None
    value = unicodedata.normalize("NFC", value).strip()
    plain = all(unicodedata.category(c)[0] != "C" for c in value)
    return value if value and plain and len(value) <= MAX_NAME else None


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _get_json(url: str, timeout: float) -> dict:
    import requests

    try:
        return _json_of(requests.get(url, timeout=timeout, allow_redirects=False, stream=True))
    except requests.RequestException as error:
        raise ProviderDown(_why(error)) from None


def _json_of(answer) -> dict:
    """A provider's answer as a JSON object, read up to MAX_ANSWER_BYTES."""
    with answer:
        if answer.status_code != 200:
            raise ProviderDown(f"the provider answered {answer.status_code}")
        body = answer.raw.read(MAX_ANSWER_BYTES + 1, decode_content=True)
    if len(body) > MAX_ANSWER_BYTES:
        raise ProviderDown("the provider's answer is too large")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ProviderDown("the provider's answer is not JSON") from None
    if not isinstance(document, dict):
        raise ProviderDown("the provider's answer is not a JSON object")
    return document


def _why(error: Exception) -> str:
    """What went wrong on the wire, without the URL (it may carry a code or a token)."""
    import requests

    if isinstance(error, requests.Timeout):
        return "the provider did not answer in time"
    if isinstance(error, requests.ConnectionError):
        return "the provider cannot be reached"
    if isinstance(error, ValueError):
        return "the provider's answer is not JSON"
    return "the provider's answer could not be read"
