"""The authenticators: one per tap, shared by every stream and thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import requests
from singer_sdk.authenticators import (
    APIAuthenticatorBase,
    BasicAuthenticator,
    BearerTokenAuthenticator,
)

from tap_bitbucket.auth.constants import LOGGER
from tap_bitbucket.auth.properties import SECRET_SETTINGS
from tap_bitbucket.auth.settings import (
    OAuthOptions,
    str_setting,
)
from tap_bitbucket.auth.store import TokenSet
from tap_bitbucket.auth.token_endpoint import TokenEndpoint
from tap_bitbucket.redact import basic_auth_value

# --------------------------------------------------------------------------------------
# The authenticator
# --------------------------------------------------------------------------------------


def bearer_of(response: requests.Response | None) -> str | None:
    request = getattr(response, "request", None)
    header = request.headers.get("Authorization") if request is not None else None
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    if isinstance(header, str) and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


class BitbucketAuth(APIAuthenticatorBase):
    """The tap's single authenticator; safe to share between streams and threads."""

    def __init__(self, scheme: str, *, logger: logging.Logger | None = None) -> None:
        super().__init__()
        self._scheme = scheme
        self.logger = logger or LOGGER
        self._lock = threading.RLock()
        self._secret_values: tuple[str, ...] = ()

    @property
    def scheme(self) -> str:
        return self._scheme

    def prepare(self) -> None:
        """Acquire usable credentials up front (no-op for static credentials)."""

    def handle_unauthorized(self, response: requests.Response) -> bool:
        """A 401 arrived: refresh once if this scheme can; True means "retry the request"."""
        return False

    def unauthorized_message(self) -> str:
        """One line for a 401 that :meth:`handle_unauthorized` could not fix."""
        return "Bitbucket rejected the credentials (HTTP 401); check the auth settings."

    def secret_values(self) -> list[str]:
        """Every secret known now (config secrets and live tokens), for redaction."""
        return list(self._secret_values)

    def _remember(self, *values: str | None) -> None:
        new = [v for v in values if v and v not in self._secret_values]
        if new:
            with self._lock:
                self._secret_values = (*self._secret_values, *new)

    def _authorization(self) -> str:
        raise NotImplementedError

    def authenticate_request(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        value = self._authorization()
        self.auth_headers["Authorization"] = value
        request.headers["Authorization"] = value
        return request

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return self.authenticate_request(r)


class StaticAuth(BitbucketAuth):
    """API token (Basic email:token) or access token (Bearer): nothing to refresh."""

    def __init__(
        self, scheme: str, config: Mapping[str, Any], *, logger: logging.Logger | None = None
    ) -> None:
        super().__init__(scheme, logger=logger)
        inner: APIAuthenticatorBase
        if scheme == "api_token":
            username = str_setting(config, "username") or ""
            api_token = str_setting(config, "api_token") or ""
            inner = BasicAuthenticator(username=username, password=api_token)
            self._remember(api_token, basic_auth_value(username, api_token))
        else:
            token = str_setting(config, "access_token") or ""
            inner = BearerTokenAuthenticator(token=token)
            self._remember(token)
        self._header = str(inner.auth_headers["Authorization"])
        self._remember(*_config_secrets(config))

    def _authorization(self) -> str:
        return self._header

    def unauthorized_message(self) -> str:
        if self.scheme == "api_token":
            return (
                "Bitbucket rejected the API token (HTTP 401); check that username is the "
                "Atlassian account email and that api_token is valid, not expired, and has "
                "the Bitbucket read scopes."
            )
        return (
            "Bitbucket rejected the access token (HTTP 401); it may be expired or revoked: "
            "create a new one and set access_token."
        )


def _config_secrets(config: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for name in SECRET_SETTINGS:
        value = config.get(name)
        if isinstance(value, str) and value.strip():
            out.extend({value, value.strip()})
    return out


class OAuthAuth(BitbucketAuth):
    """What both OAuth grants share: the options, the token endpoint, the secrets."""

    #: The auth scheme this grant implements (see SCHEMES).
    grant: str

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        session: requests.Session | None,
        logger: logging.Logger | None,
    ) -> None:
        super().__init__(self.grant, logger=logger)
        self.options = OAuthOptions.from_config(config)
        self.endpoint = TokenEndpoint(
            self.options, session=session, logger=self.logger
        ).apply_retry_settings(config)
        self._tokens: TokenSet | None = None
        self._remember(*_config_secrets(config), *self.options.secrets())


class OAuthClientAuth(OAuthAuth):
    """Client-credentials grant: a new token whenever the current one (in memory) expires."""

    grant = "oauth_client"

    def _fetch(self) -> None:
        tokens = self.endpoint.client_credentials()
        self._remember(*tokens.secrets())
        self._tokens = tokens
        self.logger.info(
            "Obtained an OAuth access token (client credentials), valid %g s",
            tokens.expires_in or 0,
        )

    def prepare(self) -> None:
        with self._lock:
            if self._tokens is None or not self._tokens.is_fresh(self.options.refresh_margin):
                self._fetch()

    def _authorization(self) -> str:
        tokens = self._tokens
        if tokens is None or not tokens.is_fresh(self.options.refresh_margin):
            self.prepare()
            tokens = self._tokens
        assert tokens is not None and tokens.access_token
        return f"Bearer {tokens.access_token}"

    def handle_unauthorized(self, response: requests.Response) -> bool:
        failed = bearer_of(response)
        with self._lock:
            current = self._tokens
            if (
                current is not None
                and current.access_token != failed
                and current.is_fresh(self.options.refresh_margin)
            ):
                return True
            self._fetch()
            return True

    def unauthorized_message(self) -> str:
        return (
            "Bitbucket rejected the client-credentials OAuth token even after requesting a "
            "new one (HTTP 401); check the consumer's permissions and that it is private."
        )
