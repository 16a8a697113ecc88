"""Settings: the auth part of the config schema, its validation and OAuthOptions."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tap_bitbucket.auth.constants import (
    DEFAULT_CALLBACK_TIMEOUT,
    DEFAULT_CALLBACK_URL,
    DEFAULT_OAUTH_URL,
    DEFAULT_REFRESH_MARGIN,
    INITIATE_MODES,
    LOOPBACK_HOSTS,
    SCHEMES,
)
from tap_bitbucket.auth.properties import SECRET_SETTINGS
from tap_bitbucket.errors import ConfigError
from tap_bitbucket.redact import basic_auth_value


def default_settings_location() -> str:
    """The per-user default path of the OAuth settings file."""
    if os.name == "nt":
        base = os.environ.get("APPDATA") or os.path.join(os.path.expanduser("~"), "AppData")
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "tap-bitbucket", "oauth-settings.json")


def str_setting(config: Mapping[str, Any], name: str) -> str | None:
    value = config.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(name, f"must be a string, got {type(value).__name__}")
    value = value.strip()
    return value or None


def _num_setting(
    config: Mapping[str, Any], name: str, default: float, *, minimum: float, positive: bool
) -> float:
    value = config.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ConfigError(name, "must be a number of seconds")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(name, "must be a number of seconds") from None
    if not isinstance(value, (int, float)) or value != value:  # noqa: PLR0124 - NaN check
        raise ConfigError(name, "must be a number of seconds")
    number = float(value)
    if number < minimum or (positive and number <= 0):
        bound = "greater than 0" if positive else f"at least {minimum:g}"
        raise ConfigError(name, f"must be {bound}, got {number:g}")
    return number


def _bool_setting(config: Mapping[str, Any], name: str, default: bool) -> bool:
    value = config.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "0", "no", "off"}:
        return False
    raise ConfigError(name, "must be true or false")


def _check_url(name: str, url: str, *, require_tls_off_loopback: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(name, "must be an absolute http(s) URL")
    try:
        _ = parts.port
    except ValueError:
        raise ConfigError(name, "has an invalid port") from None
    if (
        require_tls_off_loopback
        and parts.scheme != "https"
        and parts.hostname.lower() not in LOOPBACK_HOSTS
    ):
        raise ConfigError(
            name, "must use https (plain http is allowed only for localhost/127.0.0.1/::1)"
        )


def _normalise_initiate(config: Mapping[str, Any]) -> str | None:
    raw = str_setting(config, "initiate_oauth")
    if raw is None:
        return None
    value = raw.upper()
    if value not in INITIATE_MODES:
        raise ConfigError(
            "initiate_oauth", f"unknown value '{raw}'; use one of OFF, REFRESH, GETANDREFRESH"
        )
    return value


def infer_auth_scheme(config: Mapping[str, Any]) -> str:
    """Return the auth scheme: ``auth_scheme`` when set, else inferred from the credentials.

    Raises ConfigError for an unknown scheme or when no credentials are present.
    """
    explicit = str_setting(config, "auth_scheme")
    if explicit is not None:
        scheme = explicit.lower()
        if scheme not in SCHEMES:
            raise ConfigError(
                "auth_scheme", f"unknown value '{explicit}'; use one of {', '.join(SCHEMES)}"
            )
        return scheme
    has = {name: str_setting(config, name) is not None for name in _CREDENTIAL_SETTINGS}
    if has["access_token"]:
        return "access_token"
    if has["username"] and has["api_token"]:
        return "api_token"
    if (
        has["oauth_access_token"]
        or has["oauth_refresh_token"]
        or has["oauth_verifier"]
        or has["initiate_oauth"]
    ):
        return "oauth_code"
    if has["oauth_client_id"] and has["oauth_client_secret"]:
        if has["oauth_settings_location"] or os.path.exists(default_settings_location()):
            return "oauth_code"
        return "oauth_client"
    if has["username"]:
        raise ConfigError("api_token", "is required with username (API token authentication)")
    if has["api_token"]:
        raise ConfigError(
            "username", "is required with api_token: set it to the Atlassian account email"
        )
    if has["oauth_client_id"]:
        raise ConfigError("oauth_client_secret", "is required with oauth_client_id")
    if has["oauth_client_secret"]:
        raise ConfigError("oauth_client_id", "is required with oauth_client_secret")
    raise ConfigError(
        "auth_scheme",
        "no credentials found; set username (account email) + api_token, or access_token, "
        "or oauth_client_id + oauth_client_secret (with a settings file, verifier or "
        "refresh token for the authorization-code flow)",
    )


_CREDENTIAL_SETTINGS = (
    "access_token",
    "username",
    "api_token",
    "oauth_access_token",
    "oauth_refresh_token",
    "oauth_verifier",
    "initiate_oauth",
    "oauth_client_id",
    "oauth_client_secret",
    "oauth_settings_location",
)


@dataclass(frozen=True)
class OAuthOptions:
    """The OAuth settings, parsed and checked."""

    client_id: str | None
    client_secret: str | None
    access_token: str | None
    refresh_token: str | None
    verifier: str | None
    initiate: str
    settings_location: str
    settings_location_explicit: bool
    settings_key: str | None
    callback_url: str
    oauth_url: str
    callback_timeout: float
    open_browser: bool
    refresh_margin: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> OAuthOptions:
        location = str_setting(config, "oauth_settings_location")
        oauth_url = (str_setting(config, "oauth_url") or DEFAULT_OAUTH_URL).rstrip("/")
        _check_url("oauth_url", oauth_url, require_tls_off_loopback=True)
        callback_url = str_setting(config, "callback_url") or DEFAULT_CALLBACK_URL
        _check_url("callback_url", callback_url, require_tls_off_loopback=False)
        verifier = str_setting(config, "oauth_verifier")
        return cls(
            client_id=str_setting(config, "oauth_client_id"),
            client_secret=str_setting(config, "oauth_client_secret"),
            access_token=str_setting(config, "oauth_access_token"),
            refresh_token=str_setting(config, "oauth_refresh_token"),
            verifier=extract_code(verifier) if verifier else None,
            initiate=_normalise_initiate(config) or "REFRESH",
            settings_location=os.path.abspath(
                os.path.expanduser(location or default_settings_location())
            ),
            settings_location_explicit=location is not None,
            settings_key=str_setting(config, "oauth_settings_key"),
            callback_url=callback_url,
            oauth_url=oauth_url,
            callback_timeout=_num_setting(
                config,
                "oauth_callback_timeout",
                DEFAULT_CALLBACK_TIMEOUT,
                minimum=0,
                positive=True,
            ),
            open_browser=_bool_setting(config, "oauth_open_browser", True),
            refresh_margin=_num_setting(
                config,
                "oauth_refresh_margin",
                DEFAULT_REFRESH_MARGIN,
                minimum=0,
                positive=False,
            ),
        )

    @property
    def token_url(self) -> str:
        return f"{self.oauth_url}/access_token"

    @property
    def redirect_uri(self) -> str | None:
        """``callback_url`` when it differs from the default (then it is sent explicitly)."""
        if self.callback_url.rstrip("/") == DEFAULT_CALLBACK_URL:
            return None
        return self.callback_url

    def with_callback(self, callback_url: str | None) -> OAuthOptions:
        if not callback_url:
            return self
        _check_url("callback_url", callback_url, require_tls_off_loopback=False)
        return replace(self, callback_url=callback_url)

    def require_client(self) -> tuple[str, str]:
        if not self.client_id:
            raise ConfigError("oauth_client_id", "is required for OAuth (the consumer key)")
        if not self.client_secret:
            raise ConfigError("oauth_client_secret", "is required for OAuth (the consumer secret)")
        return self.client_id, self.client_secret

    def secrets(self) -> list[str]:
        values = [self.client_secret, self.access_token, self.refresh_token, self.verifier]
        values.append(self.settings_key)
        if self.client_id and self.client_secret:
            values.append(basic_auth_value(self.client_id, self.client_secret))
        return [v for v in values if v]


def check_loopback_callback(callback_url: str) -> tuple[str, int, str]:
    """Return (host, port, path) of a callback URL the desktop flow may listen on."""
    parts = urlsplit(callback_url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "http":
        raise ConfigError(
            "callback_url",
            "the browser flow needs a plain http://localhost:PORT callback (the tap runs the "
            "callback server itself)",
        )
    if host not in LOOPBACK_HOSTS:
        raise ConfigError(
            "callback_url",
            f"host '{host}' is not loopback; the browser flow only listens on localhost, "
            "127.0.0.1 or ::1 (use `tap-bitbucket-oauth get-authorization-url` for a web flow)",
        )
    return host, parts.port or 80, parts.path or "/"


def validate_auth_config(config: Mapping[str, Any]) -> None:
    """Raise ConfigError when the auth settings cannot work. Makes no network call."""
    scheme = infer_auth_scheme(config)
    # Parse every auth setting, whichever scheme: a malformed value is an error anyway.
    for name in ("username", *SECRET_SETTINGS, "oauth_client_id", "callback_url", "oauth_url"):
        str_setting(config, name)
    options = OAuthOptions.from_config(config)
    if scheme == "api_token":
        username = str_setting(config, "username")
        if not username:
            raise ConfigError(
                "username", "is required for api_token: set it to the Atlassian account email"
            )
        if "@" not in username:
            raise ConfigError(
                "username",
                "must be the Atlassian account EMAIL address: Bitbucket API tokens "
                "authenticate with the account email, not the Bitbucket username",
            )
        if not str_setting(config, "api_token"):
            raise ConfigError("api_token", "is required for auth_scheme api_token")
    elif scheme == "access_token":
        if not str_setting(config, "access_token"):
            raise ConfigError("access_token", "is required for auth_scheme access_token")
    elif scheme == "oauth_client":
        options.require_client()
    else:  # oauth_code
        if options.initiate == "OFF":
            if not options.access_token:
                raise ConfigError(
                    "oauth_access_token",
                    "is required when initiate_oauth is OFF (the token is used as is)",
                )
            return
        options.require_client()
        if options.initiate == "GETANDREFRESH":
            check_loopback_callback(options.callback_url)
        elif not (
            options.verifier
            or options.refresh_token
            or options.access_token
            or os.path.exists(options.settings_location)
        ):
            raise ConfigError(
                "oauth_settings_location",
                f"no OAuth tokens: {options.settings_location} does not exist and neither "
                "oauth_verifier nor oauth_refresh_token is set; run `tap-bitbucket-oauth "
                "login`, set oauth_verifier, or set initiate_oauth to GETANDREFRESH",
            )


def extract_code(value: str) -> str:
    """Accept a bare authorization code or the whole callback URL that carries it."""
    value = value.strip()
    if "://" in value or value.startswith("?"):
        query = urlsplit(value).query if "://" in value else value[1:]
        codes = parse_qs(query).get("code")
        if codes and codes[0]:
            return codes[0]
    return value


def authorization_url(options: OAuthOptions, state: str) -> str:
    """The URL where the user authorizes the consumer (no secret in it)."""
    client_id = options.client_id
    if not client_id:
        raise ConfigError("oauth_client_id", "is required to build the authorization URL")
    params = {"client_id": client_id, "response_type": "code", "state": state}
    if options.redirect_uri:
        params["redirect_uri"] = options.redirect_uri
    return f"{options.oauth_url}/authorize?{urlencode(params)}"
