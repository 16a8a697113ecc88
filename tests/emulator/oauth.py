"""OAuth 2.0 server of the emulator (Bitbucket's `/site/oauth2/authorize` and `/access_token`).

Bitbucket behaviour (docs/bitbucket-api-notes.md section 5):

* authorize: `GET /site/oauth2/authorize?client_id=..&response_type=code[&state=..]
  [&redirect_uri=..]`. Consent is automatic: 302 to the consumer's registered callback URL
  with `code` and `state`. An unknown `client_id` or a `redirect_uri` other than the
  registered callback gives a 400 HTML page.
* token: `POST /site/oauth2/access_token`, form-encoded; the client authenticates with HTTP
  Basic `client_id:secret` (client_id / client_secret in the body are accepted too). Grants
  `authorization_code` (single-use code, valid CODE_LIFETIME_S), `refresh_token`,
  `client_credentials`. Response: `{"access_token", "token_type": "bearer", "expires_in",
  "refresh_token", "scopes", "state": <grant name>}`; client_credentials has no refresh token.
* refresh tokens rotate: every refresh returns a new refresh token and the used one "stops
  working shortly afterwards" (notes §5): it is accepted ONE more time within
  `refresh_grace_s` seconds of its rotation (so a client whose refresh answer was lost can
  retry), and rejected (`invalid_grant`) after that or on a further reuse.
  `refresh_grace_s=0` is strict rotation (rejected at once). Access tokens issued before
  stay valid until expiry.
* errors: `{"error": ..., "error_description": ...}`; 400 for bad codes/refresh tokens/grants,
  401 `invalid_client` for a wrong client id or secret.

All state is guarded by one lock, so concurrent refreshes are safe: with strict rotation
exactly one of two concurrent refreshes with the same refresh token succeeds (with a grace
period, at most two do).
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import random
import secrets
import string
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CODE_LIFETIME_S",
    "SCOPES",
    "Credentials",
    "OAuthServer",
    "TokenCheck",
    "make_credentials",
]

SCOPES = "account repository pullrequest pipeline webhook project"
CODE_LIFETIME_S = 60.0
EXPIRED_MESSAGE = "Access token expired. Use your refresh token to obtain a new access token."

_ALNUM = string.ascii_letters + string.digits
_TOKEN_CHARS = _ALNUM + "-_"


@dataclass(frozen=True)
class Credentials:
    """Credentials the emulator accepts. Deterministic per seed."""

    email: str  # Basic username for API tokens (the Atlassian account e-mail)
    api_token: str  # Basic password
    access_token: str  # workspace access token (Bearer)
    oauth_client_id: str  # OAuth consumer key
    oauth_client_secret: str  # OAuth consumer secret
    callback_url: str  # the consumer's registered callback URL
    nickname: str = ""  # the Bitbucket nickname: NOT accepted as Basic username (401)

    def basic_auth(self) -> tuple[str, str]:
        """(email, api_token), e.g. for `requests`' `auth=`."""
        return (self.email, self.api_token)

    def to_dict(self) -> dict[str, str]:
        return {
            "email": self.email,
            "api_token": self.api_token,
            "access_token": self.access_token,
            "oauth_client_id": self.oauth_client_id,
            "oauth_client_secret": self.oauth_client_secret,
            "callback_url": self.callback_url,
            "nickname": self.nickname,
        }


def make_credentials(seed: int, email: str, nickname: str, callback_url: str) -> Credentials:
    rng = random.Random(f"tap-bitbucket-emulator-credentials:{seed}")

    def pick(chars: str, n: int) -> str:
        return "".join(rng.choice(chars) for _ in range(n))

    return Credentials(
        email=email,
        api_token="ATATT3x" + pick(_TOKEN_CHARS, 40),
        access_token="ATCTT3x" + pick(_TOKEN_CHARS, 40),
        oauth_client_id=pick(_ALNUM, 18),
        oauth_client_secret=pick(_ALNUM, 32),
        callback_url=callback_url,
        nickname=nickname,
    )


@dataclass
class _Code:
    expires_at: float
    redirect_uri: str | None
    used: bool = False


@dataclass
class _Access:
    expires_at: float
    grant: str


class TokenCheck:
    OK = "ok"
    EXPIRED = "expired"
    INVALID = "invalid"


@dataclass
class OAuthResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def _json_response(
    status: int, payload: dict[str, Any], extra: dict[str, str] | None = None
) -> OAuthResponse:
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    headers.update(extra or {})
    return OAuthResponse(status, headers, json.dumps(payload).encode())


def _oauth_error(status: int, error: str, description: str) -> OAuthResponse:
    extra = {"WWW-Authenticate": 'Basic realm="Bitbucket.org HTTP"'} if status == 401 else {}
    return _json_response(status, {"error": error, "error_description": description}, extra)


def _html_page(status: int, title: str, message: str) -> OAuthResponse:
    t, m = html.escape(title), html.escape(message)
    body = (
        f"<!DOCTYPE html>\n<html><head><title>{t} - Bitbucket</title></head>"
        f"<body><h1>{t}</h1><p>{m}</p></body></html>\n"
    )
    return OAuthResponse(status, {"Content-Type": "text/html; charset=utf-8"}, body.encode())


class OAuthServer:
    def __init__(
        self,
        credentials: Credentials,
        token_lifetime_s: float,
        clock: Callable[[], float] = time.monotonic,
        refresh_grace_s: float = 0.0,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.client_id = credentials.oauth_client_id
        self.client_secret = credentials.oauth_client_secret
        self.callback_url = credentials.callback_url
        self.token_lifetime_s = float(token_lifetime_s)
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _Access] = {}
        self._refresh: set[str] = set()
        self.refresh_grace_s = float(refresh_grace_s)
        # rotated refresh tokens -> until when their one extra use is accepted
        self._grace: dict[str, float] = {}
        self._revoked: set[str] = set()
        self._issued: list[str] = []  # every code, access and refresh token ever issued

    # ---------------------------------------------------------------- configuration
    def set_callback_url(self, url: str) -> None:
        with self._lock:
            self.callback_url = url

    def set_token_lifetime(self, seconds: float) -> None:
        with self._lock:
            self.token_lifetime_s = float(seconds)

    def set_refresh_grace(self, seconds: float) -> None:
        with self._lock:
            self.refresh_grace_s = float(seconds)

    # ---------------------------------------------------------------- token checks
    def check_access_token(self, token: str) -> str:
        with self._lock:
            entry = self._access.get(token)
            if entry is None or token in self._revoked:
                return TokenCheck.INVALID
            if self._clock() >= entry.expires_at:
                return TokenCheck.EXPIRED
            return TokenCheck.OK

    def revoke(self, token: str) -> bool:
        """Invalidate an access or refresh token; True if the server knew it."""
        with self._lock:
            known = token in self._access or token in self._refresh or token in self._grace
            self._refresh.discard(token)
            self._grace.pop(token, None)
            self._revoked.add(token)
            return known

    def is_revoked(self, token: str) -> bool:
        with self._lock:
            return token in self._revoked

    # ---------------------------------------------------------------- authorize
    def authorize(self, params: dict[str, str]) -> OAuthResponse:
        client_id = params.get("client_id", "")
        if client_id != self.client_id:
            return _html_page(400, "Invalid client", "Invalid client_id: no such OAuth consumer.")
        redirect_uri = params.get("redirect_uri")
        with self._lock:
            callback = self.callback_url
        if redirect_uri is not None and redirect_uri != callback:
            return _html_page(
                400,
                "Invalid redirect_uri",
                "redirect_uri does not match the callback URL registered for this consumer.",
            )
        state = params.get("state")
        if params.get("response_type") != "code":
            query = {"error": "unsupported_response_type"}
        else:
            code = "".join(secrets.choice(_ALNUM) for _ in range(18))
            with self._lock:
                self._codes[code] = _Code(self._clock() + CODE_LIFETIME_S, redirect_uri)
                self._issued.append(code)
            query = {"code": code}
        if state is not None:
            query["state"] = state
        sep = "&" if urllib.parse.urlsplit(callback).query else "?"
        location = callback + sep + urllib.parse.urlencode(query)
        return OAuthResponse(
            302, {"Location": location, "Content-Type": "text/html; charset=utf-8"}, b""
        )

    # ---------------------------------------------------------------- token endpoint
    def _client_ok(self, auth_header: str | None, form: dict[str, str]) -> bool | None:
        """True: authenticated; False: wrong credentials; None: none given."""
        client_id = client_secret = None
        if auth_header and auth_header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(auth_header[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            client_id, _, client_secret = decoded.partition(":")
        elif "client_id" in form:
            client_id = form.get("client_id")
            client_secret = form.get("client_secret", "")
        if client_id is None:
            return None
        return secrets.compare_digest(str(client_id), self.client_id) and secrets.compare_digest(
            str(client_secret), self.client_secret
        )

    def _issue(self, grant: str, with_refresh: bool) -> dict[str, Any]:
        # caller holds the lock
        access = secrets.token_urlsafe(66)
        self._access[access] = _Access(self._clock() + self.token_lifetime_s, grant)
        self._issued.append(access)
        lifetime = self.token_lifetime_s
        payload: dict[str, Any] = {
            "access_token": access,
            "scopes": SCOPES,
            "expires_in": int(lifetime) if lifetime == int(lifetime) else lifetime,
            "token_type": "bearer",
            "state": grant,
        }
        if with_refresh:
            refresh = "".join(secrets.choice(_ALNUM) for _ in range(18))
            self._refresh.add(refresh)
            self._issued.append(refresh)
            payload["refresh_token"] = refresh
        return payload

    def token(self, auth_header: str | None, form: dict[str, str]) -> OAuthResponse:
        client = self._client_ok(auth_header, form)
        if client is None:
            return _oauth_error(401, "invalid_client", "Client credentials missing")
        if client is False:
            return _oauth_error(401, "invalid_client", "Invalid OAuth client credentials")
        grant = form.get("grant_type", "")
        with self._lock:
            if grant == "authorization_code":
                code = form.get("code", "")
                entry = self._codes.get(code)
                if entry is None or entry.used or self._clock() >= entry.expires_at:
                    if entry is not None:
                        entry.used = True
                    return _oauth_error(400, "invalid_grant", "The specified code is not valid.")
                entry.used = True
                redirect_uri = form.get("redirect_uri")
                if entry.redirect_uri is not None and redirect_uri != entry.redirect_uri:
                    return _oauth_error(400, "invalid_grant", "redirect_uri mismatch")
                return _json_response(200, self._issue("authorization_code", True))
            if grant == "refresh_token":
                refresh = form.get("refresh_token", "")
                if refresh in self._revoked:
                    return _oauth_error(400, "invalid_grant", "Invalid refresh_token")
                if refresh in self._refresh:
                    # rotation: the used token is spent, but for one retry within the grace
                    self._refresh.discard(refresh)
                    if self.refresh_grace_s > 0:
                        self._grace[refresh] = self._clock() + self.refresh_grace_s
                elif self._clock() >= self._grace.pop(refresh, float("-inf")):
                    return _oauth_error(400, "invalid_grant", "Invalid refresh_token")
                return _json_response(200, self._issue("refresh_token", True))
            if grant == "client_credentials":
                return _json_response(200, self._issue("client_credentials", False))
        if not grant:
            return _oauth_error(400, "invalid_request", "Missing grant_type parameter")
        return _oauth_error(400, "unsupported_grant_type", f"Unsupported grant type: {grant}")

    # ---------------------------------------------------------------- helpers for tests
    def issued(self) -> list[str]:
        """Every authorization code, access token and refresh token issued so far."""
        with self._lock:
            return list(self._issued)

    def issue_tokens(self) -> dict[str, Any]:
        """Tokens as after a completed authorization-code flow (no HTTP involved)."""
        with self._lock:
            return self._issue("authorization_code", True)
