"""The OAuth token endpoint: code exchange, refresh, client credentials."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from tap_bitbucket.auth.constants import LOGGER, LOGIN_HINT
from tap_bitbucket.auth.settings import OAuthOptions
from tap_bitbucket.auth.store import TokenSet
from tap_bitbucket.errors import AuthError
from tap_bitbucket.redact import redact

# --------------------------------------------------------------------------------------
# The token endpoint
# --------------------------------------------------------------------------------------


class OAuthGrantError(AuthError):
    """The OAuth server refused a grant (``error`` is the OAuth error code)."""

    def __init__(self, message: str, error: str) -> None:
        super().__init__(message)
        self.error = error


_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


class TokenEndpoint:
    """``POST {oauth_url}/access_token`` with HTTP Basic client authentication."""

    attempts = 5
    backoff_base = 0.5
    backoff_cap = 8.0
    max_retry_after = 60.0
    timeout: tuple[float, float] = (10.0, 60.0)

    def __init__(
        self,
        options: OAuthOptions,
        *,
        session: requests.Session | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.options = options
        self.session = session or requests.Session()
        self.logger = logger or LOGGER

    def apply_retry_settings(self, config: Mapping[str, Any]) -> TokenEndpoint:
        """Use the tap's retry settings when the config has them (``max_retries``,
        ``backoff_base_seconds``, ``backoff_max_seconds``, ``request_timeout_seconds``)."""

        def number(name: str) -> float | None:
            value = config.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                return None
            return float(value)

        if (tries := number("max_retries")) is not None:
            self.attempts = max(1, int(tries))
        if (base := number("backoff_base_seconds")) is not None:
            self.backoff_base = base
        if (cap := number("backoff_max_seconds")) is not None:
            self.backoff_cap = cap
        if (timeout := number("request_timeout_seconds")) is not None:
            self.timeout = (min(10.0, timeout), timeout)
        return self

    def exchange_code(self, code: str, redirect_uri: str | None) -> TokenSet:
        data = {"grant_type": "authorization_code", "code": code}
        if redirect_uri:
            data["redirect_uri"] = redirect_uri
        return self._request(data, "authorization_code")

    def refresh(self, refresh_token: str) -> TokenSet:
        return self._request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}, "refresh_token"
        )

    def client_credentials(self) -> TokenSet:
        return self._request({"grant_type": "client_credentials"}, "client_credentials")

    def _secrets(self, data: Mapping[str, str]) -> list[str]:
        return [*self.options.secrets(), *(v for k, v in data.items() if k != "grant_type")]

    def _request(self, data: dict[str, str], grant: str) -> TokenSet:
        client_id, client_secret = self.options.require_client()
        url = self.options.token_url
        last_problem = "no attempt made"
        lost: str | None = None  # a response lost after the server may have acted on it
        for attempt in range(1, self.attempts + 1):
            requested_at = time.time()
            wait: float | None = None
            try:
                response = self.session.post(
                    url,
                    data=data,
                    auth=(client_id, client_secret),
                    headers={"Accept": "application/json"},
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                last_problem = exc.__class__.__name__
                if not _never_sent(exc):
                    lost = last_problem
            else:
                if response.status_code in _TRANSIENT_STATUS:
                    last_problem = f"HTTP {response.status_code}"
                    wait = _retry_after(response)
                elif response.status_code >= 300:
                    raise self._refusal(response, grant, data, lost=lost)
                else:
                    try:
                        body = response.json()
                    except ValueError:
                        body = None
                    if isinstance(body, dict) and body.get("access_token"):
                        return TokenSet.from_response(
                            body, requested_at=requested_at, client_id=client_id
                        )
                    last_problem = "the response carried no access token"
                    lost = last_problem
            if attempt == self.attempts:
                break
            delay = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
            delay = delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not crypto
            if wait is not None:
                delay = min(max(wait, delay), self.max_retry_after)
            resume = datetime.now(timezone.utc) + timedelta(seconds=delay)
            self.logger.warning(
                "OAuth token request (%s) failed (%s); retrying in %.1f s "
                "(resuming at %s, attempt %d of %d)",
                grant,
                last_problem,
                delay,
                resume.strftime("%H:%M:%S"),
                attempt + 1,
                self.attempts,
            )
            time.sleep(delay)
        raise AuthError(
            f"Could not get an OAuth token from {url} ({last_problem} after {self.attempts} "
            "attempts); check oauth_url and the network connection, then run again."
        )

    def _refusal(
        self,
        response: requests.Response,
        grant: str,
        data: Mapping[str, str],
        *,
        lost: str | None = None,
    ) -> AuthError:
        error = ""
        description = ""
        with contextlib.suppress(ValueError):
            body = response.json()
            if isinstance(body, dict):
                error = str(body.get("error") or "")
                description = str(body.get("error_description") or "")
                if not error and isinstance(body.get("error"), dict):  # pragma: no cover
                    description = str(body["error"].get("message") or "")
        description = redact(description, self._secrets(data))[:200]
        status = response.status_code
        if error == "invalid_client" or (status == 401 and not error):
            return OAuthGrantError(
                f"The OAuth server rejected the consumer credentials (invalid_client, HTTP "
                f"{status}); check oauth_client_id and oauth_client_secret.",
                "invalid_client",
            )
        if error == "invalid_grant":
            if grant == "refresh_token" and lost:
                return OAuthGrantError(
                    f"The answer to an OAuth refresh was lost ({lost}) after the server had "
                    "probably rotated the refresh token, so the saved one is no longer valid; "
                    f"{LOGIN_HINT}, then run again.",
                    error,
                )
            if grant == "refresh_token":
                return OAuthGrantError(
                    "The OAuth refresh token was rejected (invalid_grant: revoked, expired or "
                    f"already rotated); {LOGIN_HINT}, then run again.",
                    error,
                )
            if grant == "authorization_code":
                return OAuthGrantError(
                    "The OAuth verifier (authorization code) was rejected (invalid_grant: "
                    "already used, expired, or issued for another callback_url); get a new "
                    "one with `tap-bitbucket-oauth get-authorization-url` or run "
                    "`tap-bitbucket-oauth login`.",
                    error,
                )
        if error == "unauthorized_client" and grant == "client_credentials":
            return OAuthGrantError(
                "The OAuth consumer may not use the client-credentials grant "
                "(unauthorized_client); mark the consumer as private in Bitbucket, or use "
                "auth_scheme oauth_code.",
                error,
            )
        detail = f": {description}" if description else ""
        return OAuthGrantError(
            f"The OAuth server refused the {grant} grant (HTTP {status}"
            f"{', ' + error if error else ''}){detail}; check the OAuth settings "
            "(oauth_client_id, oauth_client_secret, callback_url, oauth_url).",
            error or f"http_{status}",
        )


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request certainly did not reach the server (safe to repeat)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason: Any = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)
        return (
            "NewConnectionError" in type(reason).__name__
            or (isinstance(reason, OSError) and isinstance(reason, ConnectionRefusedError))
            or "Connection refused" in str(reason)
        )
    return False


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
