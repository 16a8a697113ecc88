"""Authentication for tap-bitbucket: API tokens, access tokens and OAuth 2.0 consumers.

One :class:`BitbucketAuth` instance serves the whole tap (every stream and thread). Build it
with :func:`build_authenticator`, call :meth:`BitbucketAuth.prepare` once before a sync (or
``--test``), pass it as ``auth=`` / call it on each prepared request, and on a 401 call
:meth:`BitbucketAuth.handle_unauthorized`: when it returns True, retry the request once.

OAuth tokens live in the *settings file* (``oauth_settings_location``): JSON written
atomically (temp file, fsync, rename) with mode 0600 under a file lock, optionally encrypted
with a key derived (scrypt) from ``oauth_settings_key``. Before a refresh the file is re-read
under the lock, so processes that share a file never burn each other's rotated refresh token,
and a rotated refresh token is written to the file before the new access token is used.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import http.server
import json
import logging
import os
import random
import secrets
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import filelock
import requests
from singer_sdk import typing as th
from singer_sdk.authenticators import (
    APIAuthenticatorBase,
    BasicAuthenticator,
    BearerTokenAuthenticator,
)

from tap_bitbucket.errors import AuthError, ConfigError
from tap_bitbucket.redact import basic_auth_value, redact

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

__all__ = [
    "AUTH_PROPERTIES",
    "DEFAULT_CALLBACK_URL",
    "DEFAULT_OAUTH_URL",
    "SCHEMES",
    "BitbucketAuth",
    "OAuthGrantError",
    "OAuthOptions",
    "OAuthSettingsStore",
    "TokenEndpoint",
    "TokenSet",
    "authorization_url",
    "build_authenticator",
    "default_settings_location",
    "infer_auth_scheme",
    "run_browser_flow",
    "validate_auth_config",
]

SCHEMES = ("oauth_code", "oauth_client", "api_token", "access_token")
INITIATE_MODES = ("OFF", "REFRESH", "GETANDREFRESH")
DEFAULT_CALLBACK_URL = "http://localhost:33333"
DEFAULT_OAUTH_URL = "https://bitbucket.org/site/oauth2"
DEFAULT_CALLBACK_TIMEOUT = 300.0
DEFAULT_REFRESH_MARGIN = 300.0
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
SETTINGS_FORMAT = "tap-bitbucket-oauth/1"
LOGIN_HINT = "run `tap-bitbucket-oauth login` (or supply a new oauth_verifier)"

_LOGGER = logging.getLogger("tap_bitbucket.auth")

# --------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------

AUTH_PROPERTIES: list[th.Property[Any]] = [
    th.Property(
        "auth_scheme",
        th.StringType,
        allowed_values=list(SCHEMES),
        description=(
            "How the tap authenticates: `api_token` (HTTP Basic with `username` = Atlassian "
            "account email and `api_token`), `access_token` (Bearer workspace, project or "
            "repository access token), `oauth_code` (OAuth consumer, authorization-code grant, "
            "tokens kept in the OAuth settings file and refreshed) or `oauth_client` (OAuth "
            "consumer, client-credentials grant). When unset it is inferred, first match wins: "
            "`access_token` set -> access_token; `username` and `api_token` set -> api_token; "
            "any of `oauth_access_token`, `oauth_refresh_token`, `oauth_verifier`, "
            "`initiate_oauth` set -> oauth_code; `oauth_client_id` and `oauth_client_secret` "
            "set -> oauth_code when `oauth_settings_location` is set or the default settings "
            "file exists, else oauth_client."
        ),
    ),
    th.Property(
        "username",
        th.StringType,
        description=(
            "For `api_token`: the EMAIL address of the Atlassian account that owns the API "
            "token (not the Bitbucket username)."
        ),
    ),
    th.Property(
        "api_token",
        th.StringType,
        secret=True,
        description="Atlassian API token with Bitbucket read scopes (used with `username`).",
    ),
    th.Property(
        "access_token",
        th.StringType,
        secret=True,
        description="Bitbucket workspace, project or repository access token (sent as Bearer).",
    ),
    th.Property(
        "oauth_client_id",
        th.StringType,
        description="OAuth consumer key (Bitbucket workspace settings > OAuth consumers).",
    ),
    th.Property(
        "oauth_client_secret",
        th.StringType,
        secret=True,
        description="OAuth consumer secret.",
    ),
    th.Property(
        "oauth_access_token",
        th.StringType,
        secret=True,
        description=(
            "OAuth access token. With `initiate_oauth=OFF` it is used as is and never "
            "refreshed; otherwise it is only a starting point when the settings file has no "
            "tokens."
        ),
    ),
    th.Property(
        "oauth_refresh_token",
        th.StringType,
        secret=True,
        description=(
            "OAuth refresh token, used when the settings file has no tokens yet. Bitbucket "
            "rotates it on every refresh; the new one is kept in the settings file."
        ),
    ),
    th.Property(
        "oauth_verifier",
        th.StringType,
        secret=True,
        description=(
            "The `code` from the OAuth callback URL (the whole callback URL is accepted too). "
            "Exchanged once for tokens, which are written to the settings file; later runs "
            "only need the client credentials and the file."
        ),
    ),
    th.Property(
        "initiate_oauth",
        th.StringType,
        allowed_values=list(INITIATE_MODES),
        description=(
            "OFF: use `oauth_access_token` as is, never refresh. REFRESH (the default for "
            "oauth_code): use the tokens of the settings file (or the verifier / tokens given) "
            "and refresh them when needed. GETANDREFRESH: like REFRESH, but when there are no "
            "usable tokens run the browser flow (callback server on `callback_url`)."
        ),
    ),
    th.Property(
        "oauth_settings_location",
        th.StringType,
        description=(
            "Path of the OAuth settings file (tokens, written atomically with mode 0600). "
            "Default: $XDG_CONFIG_HOME/tap-bitbucket/oauth-settings.json (~/.config/... when "
            "XDG_CONFIG_HOME is unset; %APPDATA%\\tap-bitbucket\\oauth-settings.json on "
            "Windows). A file made on one machine works on another."
        ),
    ),
    th.Property(
        "oauth_settings_key",
        th.StringType,
        secret=True,
        description=(
            "Optional passphrase; when set, the settings file is encrypted at rest (Fernet, "
            "key derived with scrypt and a random salt kept in the file). Move the same key "
            "with the file."
        ),
    ),
    th.Property(
        "callback_url",
        th.StringType,
        default=DEFAULT_CALLBACK_URL,
        description=(
            "The consumer's callback URL. The browser flow listens on its host and port, "
            "which must be loopback (localhost, 127.0.0.1 or ::1). When it differs from the "
            "default it is sent as `redirect_uri`."
        ),
    ),
    th.Property(
        "oauth_url",
        th.StringType,
        default=DEFAULT_OAUTH_URL,
        description=(
            "Base URL of the OAuth server, where /authorize and /access_token live. Change it "
            "only for a proxy or the emulator; it must use https unless it is loopback."
        ),
    ),
    th.Property(
        "oauth_callback_timeout",
        th.NumberType,
        default=DEFAULT_CALLBACK_TIMEOUT,
        description="Seconds the browser flow waits for the OAuth callback.",
    ),
    th.Property(
        "oauth_open_browser",
        th.BooleanType,
        default=True,
        description=(
            "Open the authorization URL in the default browser. When false (or no browser is "
            "available) the URL is only printed to stderr."
        ),
    ),
    th.Property(
        "oauth_refresh_margin",
        th.NumberType,
        default=DEFAULT_REFRESH_MARGIN,
        description=(
            "Refresh an OAuth access token this many seconds before it expires (capped at "
            "half of the token's lifetime)."
        ),
    ),
]

SECRET_SETTINGS = tuple(p.name for p in AUTH_PROPERTIES if p.secret)


def default_settings_location() -> str:
    """The per-user default path of the OAuth settings file."""
    if os.name == "nt":
        base = os.environ.get("APPDATA") or os.path.join(os.path.expanduser("~"), "AppData")
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "tap-bitbucket", "oauth-settings.json")


def _str_setting(config: Mapping[str, Any], name: str) -> str | None:
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
    raw = _str_setting(config, "initiate_oauth")
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
    explicit = _str_setting(config, "auth_scheme")
    if explicit is not None:
        scheme = explicit.lower()
        if scheme not in SCHEMES:
            raise ConfigError(
                "auth_scheme", f"unknown value '{explicit}'; use one of {', '.join(SCHEMES)}"
            )
        return scheme
    has = {name: _str_setting(config, name) is not None for name in _CREDENTIAL_SETTINGS}
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
        location = _str_setting(config, "oauth_settings_location")
        oauth_url = (_str_setting(config, "oauth_url") or DEFAULT_OAUTH_URL).rstrip("/")
        _check_url("oauth_url", oauth_url, require_tls_off_loopback=True)
        callback_url = _str_setting(config, "callback_url") or DEFAULT_CALLBACK_URL
        _check_url("callback_url", callback_url, require_tls_off_loopback=False)
        verifier = _str_setting(config, "oauth_verifier")
        return cls(
            client_id=_str_setting(config, "oauth_client_id"),
            client_secret=_str_setting(config, "oauth_client_secret"),
            access_token=_str_setting(config, "oauth_access_token"),
            refresh_token=_str_setting(config, "oauth_refresh_token"),
            verifier=extract_code(verifier) if verifier else None,
            initiate=_normalise_initiate(config) or "REFRESH",
            settings_location=os.path.abspath(
                os.path.expanduser(location or default_settings_location())
            ),
            settings_location_explicit=location is not None,
            settings_key=_str_setting(config, "oauth_settings_key"),
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
        _str_setting(config, name)
    options = OAuthOptions.from_config(config)
    if scheme == "api_token":
        username = _str_setting(config, "username")
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
        if not _str_setting(config, "api_token"):
            raise ConfigError("api_token", "is required for auth_scheme api_token")
    elif scheme == "access_token":
        if not _str_setting(config, "access_token"):
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


# --------------------------------------------------------------------------------------
# Tokens and the settings file
# --------------------------------------------------------------------------------------


def _utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def verifier_digest(verifier: str) -> str:
    """A one-way fingerprint of a verifier, to recognise one that was already exchanged."""
    return hashlib.sha256(verifier.encode()).hexdigest()


@dataclass(frozen=True)
class TokenSet:
    """OAuth tokens as kept in memory and in the settings file."""

    access_token: str | None
    refresh_token: str | None = None
    expires_at: float | None = None  # epoch seconds
    expires_in: float | None = None  # lifetime granted by the server, seconds
    token_type: str = "bearer"  # noqa: S105 - an OAuth token type, not a password
    scopes: str | None = None
    client_id: str | None = None
    updated_at: str | None = None
    verifier_sha256: str | None = None

    @property
    def has_tokens(self) -> bool:
        return bool(self.access_token or self.refresh_token)

    def margin(self, configured: float) -> float:
        lifetime = self.expires_in
        if lifetime is None and self.expires_at is not None and self.updated_at:
            with contextlib.suppress(ValueError):
                lifetime = self.expires_at - datetime.fromisoformat(self.updated_at).timestamp()
        if lifetime is not None and lifetime > 0:
            return min(configured, lifetime / 2)
        return configured

    def is_fresh(self, configured_margin: float, now: float | None = None) -> bool:
        """True when the access token may be used without refreshing it first."""
        if not self.access_token:
            return False
        if self.expires_at is None:
            return True  # unknown expiry (a token given in config): use it until a 401
        now = time.time() if now is None else now
        return self.expires_at - now > self.margin(configured_margin)

    def to_json(self) -> dict[str, Any]:
        return {"format": SETTINGS_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: Any, problem: Callable[[str], AuthError]) -> TokenSet:
        if not isinstance(data, dict):
            raise problem("the content is not a JSON object")
        fields: dict[str, Any] = {}
        for name in (
            "access_token",
            "refresh_token",
            "scopes",
            "client_id",
            "updated_at",
            "verifier_sha256",
        ):
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise problem(f"'{name}' is not a string")
            fields[name] = value or None
        for name in ("expires_at", "expires_in"):
            value = data.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise problem(f"'{name}' is not a number")
            fields[name] = float(value) if value is not None else None
        token_type = data.get("token_type") or "bearer"
        if not isinstance(token_type, str):
            raise problem("'token_type' is not a string")
        return cls(token_type=token_type, **fields)

    @classmethod
    def from_response(
        cls, body: Mapping[str, Any], *, requested_at: float, client_id: str | None
    ) -> TokenSet:
        expires_in_raw = body.get("expires_in")
        expires_in: float | None
        try:
            expires_in = float(expires_in_raw) if expires_in_raw is not None else None
        except (TypeError, ValueError):
            expires_in = None
        if expires_in is None or expires_in <= 0:
            expires_in = 3600.0  # Bitbucket's documented lifetime
        scopes = body.get("scopes")
        if isinstance(scopes, list):
            scopes = " ".join(str(s) for s in scopes)
        refresh = body.get("refresh_token")
        return cls(
            access_token=str(body["access_token"]),
            refresh_token=str(refresh) if refresh else None,
            expires_at=requested_at + expires_in,
            expires_in=expires_in,
            token_type=str(body.get("token_type") or "bearer"),
            scopes=str(scopes) if scopes else None,
            client_id=client_id,
            updated_at=_utc_now_iso(),
        )

    def secrets(self) -> list[str]:
        return [v for v in (self.access_token, self.refresh_token) if v]


_SCRYPT_PARAMS = {"n": 2**14, "r": 8, "p": 1}


class OAuthSettingsStore:
    """The OAuth settings file: atomic, locked, mode 0600, optionally encrypted."""

    def __init__(
        self,
        path: str,
        key: str | None = None,
        *,
        lock_timeout: float = 120.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self.path = os.path.abspath(os.path.expanduser(path))
        self.key = key
        self.lock_timeout = lock_timeout
        self.logger = logger or _LOGGER
        self._fernets: dict[bytes, Fernet] = {}
        self._salt: bytes | None = None
        self._thread_lock = threading.RLock()
        self._file_lock: filelock.BaseFileLock | None = None

    # -- helpers ---------------------------------------------------------------------

    def _problem(self, reason: str) -> AuthError:
        return AuthError(
            f"The OAuth settings file {self.path} is not usable ({reason}); delete it and run "
            "`tap-bitbucket-oauth login` (or supply a new oauth_verifier) to create it again."
        )

    def _fernet(self, salt: bytes, params: Mapping[str, int]) -> Fernet:
        # Imported here: only an encrypted settings file needs it, and loading the
        # library costs every run of the tap ~30 ms.
        from cryptography.fernet import Fernet  # noqa: PLC0415
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt  # noqa: PLC0415

        cached = self._fernets.get(salt)
        if cached is not None:
            return cached
        if not self.key:
            raise RuntimeError("no key")  # pragma: no cover - guarded by callers
        kdf = Scrypt(salt=salt, length=32, n=params["n"], r=params["r"], p=params["p"])
        fernet = Fernet(base64.urlsafe_b64encode(kdf.derive(self.key.encode())))
        self._fernets[salt] = fernet
        return fernet

    def exists(self) -> bool:
        return os.path.exists(self.path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the settings-file lock (threads of this process and other processes)."""
        with self._thread_lock:
            folder = os.path.dirname(self.path)
            try:
                os.makedirs(folder, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise AuthError(
                    f"Cannot create the folder of the OAuth settings file {self.path} "
                    f"({exc.strerror or exc.__class__.__name__}); fix its permissions or set "
                    "oauth_settings_location to a writable path."
                ) from None
            if self._file_lock is None:
                self._file_lock = filelock.FileLock(
                    self.path + ".lock", timeout=self.lock_timeout, mode=0o600
                )
            try:
                self._file_lock.acquire()
            except filelock.Timeout:
                raise AuthError(
                    f"Another process has held the lock {self.path}.lock for more than "
                    f"{self.lock_timeout:g} s; make sure no stuck tap-bitbucket process uses "
                    "this settings file, then run again."
                ) from None
            except OSError as exc:
                raise AuthError(
                    f"Cannot lock the OAuth settings file {self.path} "
                    f"({exc.strerror or exc.__class__.__name__}); fix the folder's "
                    "permissions or set oauth_settings_location to a writable path."
                ) from None
            try:
                yield
            finally:
                self._file_lock.release()

    # -- read ------------------------------------------------------------------------

    def read(self) -> TokenSet | None:
        """The tokens in the file; None when there is no file. Raises AuthError when unusable."""
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._problem(
                f"cannot read it: {exc.strerror or exc.__class__.__name__}"
            ) from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise self._problem("it is not valid JSON") from None
        if not isinstance(data, dict):
            raise self._problem("the content is not a JSON object")
        fmt = data.get("format")
        if fmt is not None and fmt != SETTINGS_FORMAT:
            raise self._problem(f"unknown format '{str(fmt)[:40]}'")
        if "token" in data or data.get("encrypted"):
            data = self._decrypt(data)
        elif self.key:
            self.logger.warning(
                "The OAuth settings file %s is not encrypted; it will be encrypted with "
                "oauth_settings_key on the next write.",
                self.path,
            )
        return TokenSet.from_json(data, self._problem)

    def _decrypt(self, envelope: Mapping[str, Any]) -> Any:
        if not self.key:
            raise AuthError(
                f"The OAuth settings file {self.path} is encrypted; set oauth_settings_key to "
                "the key it was written with (or delete the file and run `tap-bitbucket-oauth "
                "login`)."
            )
        if envelope.get("kdf") != "scrypt":
            raise self._problem(f"unknown key derivation '{str(envelope.get('kdf'))[:20]}'")
        try:
            salt = base64.b64decode(str(envelope["salt"]), validate=True)
            params_raw = envelope.get("kdf_params") or _SCRYPT_PARAMS
            params = {k: int(params_raw[k]) for k in ("n", "r", "p")}
            token = str(envelope["token"]).encode("ascii")
        except (KeyError, ValueError, TypeError):
            raise self._problem("the encrypted envelope is damaged") from None
        if not salt or params["n"] > 2**20 or params["r"] > 32 or params["p"] > 16:
            raise self._problem("the encrypted envelope is damaged")
        from cryptography.exceptions import InvalidKey  # noqa: PLC0415
        from cryptography.fernet import InvalidToken  # noqa: PLC0415

        try:
            plain = self._fernet(salt, params).decrypt(token)
        except (InvalidToken, InvalidKey):
            raise AuthError(
                f"Cannot decrypt the OAuth settings file {self.path}: oauth_settings_key is "
                "wrong (or the file is damaged); set the key the file was written with, or "
                "delete the file and run `tap-bitbucket-oauth login`."
            ) from None
        except ValueError:  # scrypt parameters the library refuses
            raise self._problem("the encrypted envelope is damaged") from None
        self._salt = salt
        try:
            return json.loads(plain.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise self._problem("the decrypted content is not valid JSON") from None

    # -- write -----------------------------------------------------------------------

    def serialize(self, tokens: TokenSet) -> bytes:
        payload = json.dumps(tokens.to_json(), indent=2, sort_keys=True).encode()
        if not self.key:
            return payload + b"\n"
        if self._salt is None:
            self._salt = os.urandom(16)
        token = self._fernet(self._salt, _SCRYPT_PARAMS).encrypt(payload)
        envelope = {
            "format": SETTINGS_FORMAT,
            "encrypted": True,
            "kdf": "scrypt",
            "kdf_params": _SCRYPT_PARAMS,
            "salt": base64.b64encode(self._salt).decode("ascii"),
            "token": token.decode("ascii"),
        }
        return json.dumps(envelope, indent=2, sort_keys=True).encode() + b"\n"

    def check_writable(self) -> None:
        """Fail before burning a refresh token when the new one could not be saved."""
        folder = os.path.dirname(self.path)
        if os.path.isdir(folder) and not os.access(folder, os.W_OK):
            raise AuthError(
                f"Cannot write the OAuth settings file {self.path} (its folder is not "
                "writable); fix the permissions or set oauth_settings_location to a writable "
                "path. The tokens were not refreshed."
            )

    def write(self, tokens: TokenSet) -> None:
        """Replace the file atomically (temp file, fsync, rename, fsync folder), mode 0600."""
        data = self.serialize(tokens)  # fails before anything on disk changes
        folder = os.path.dirname(self.path)
        tmp = os.path.join(folder, f".{os.path.basename(self.path)}.{secrets.token_hex(6)}.tmp")
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600
            )
            try:
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, 0o600)
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise AuthError(
                f"Cannot write the OAuth settings file {self.path} "
                f"({exc.strerror or exc.__class__.__name__}); fix the permissions or free "
                "space, or set oauth_settings_location to a writable path."
            ) from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if os.name != "nt":
            with contextlib.suppress(OSError):
                dir_fd = os.open(folder, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)


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
        self.logger = logger or _LOGGER

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
            self.logger.warning(
                "OAuth token request (%s) failed (%s); retrying in %.1f s (attempt %d of %d)",
                grant,
                last_problem,
                delay,
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


# --------------------------------------------------------------------------------------
# The desktop (browser) flow
# --------------------------------------------------------------------------------------

_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>tap-bitbucket</title></head>"
    "<body style='font-family:sans-serif;margin:3em'><h1>{title}</h1><p>{text}</p></body></html>"
)


class _CallbackServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        family: int,
        *,
        expected_path: str,
        state: str,
        exchange: Callable[[str], TokenSet],
        logger: logging.Logger,
    ) -> None:
        self.address_family = family
        self.expected_path = expected_path.rstrip("/") or "/"
        self.expected_state = state
        self.exchange = exchange
        self.logger = logger
        self.done = threading.Event()
        self.result: TokenSet | None = None
        self.error: AuthError | None = None
        self.rejected_states = 0
        self.outcome_lock = threading.Lock()
        super().__init__(address, _CallbackHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.logger.debug("The OAuth callback server failed to answer a request")


class _CallbackHandler(http.server.BaseHTTPRequestHandler):
    server: _CallbackServer
    timeout = 15  # seconds a connection may stay silent
    server_version = "tap-bitbucket-oauth"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default access log: the request line carries the code."""

    def _reply(self, status: int, title: str, text: str) -> None:
        body = _PAGE.format(title=html.escape(title), text=html.escape(text)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        server = self.server
        parts = urlsplit(self.path)
        if (parts.path.rstrip("/") or "/") != server.expected_path:
            self._reply(404, "Not found", "This is the tap-bitbucket OAuth callback server.")
            return
        query = parse_qs(parts.query)
        state = (query.get("state") or [""])[0]
        if not secrets.compare_digest(state.encode(), server.expected_state.encode()):
            server.rejected_states += 1
            server.logger.warning(
                "Rejected an OAuth callback with a missing or wrong state; still waiting for "
                "the authorization started by this run."
            )
            self._reply(
                400,
                "Authorization rejected",
                "The state parameter does not match this login attempt. Start the "
                "authorization again from the URL printed by tap-bitbucket.",
            )
            return
        with server.outcome_lock:
            if server.done.is_set():
                self._reply(409, "Already done", "This authorization was already handled.")
                return
            error = (query.get("error") or [""])[0]
            code = (query.get("code") or [""])[0]
            if error:
                server.error = AuthError(
                    f"The authorization was refused in the browser (error={error[:60]}); run "
                    "`tap-bitbucket-oauth login` again and grant access."
                )
                server.done.set()
                self._reply(
                    400,
                    "Authorization refused",
                    "tap-bitbucket did not get access. You can close this tab.",
                )
                return
            if not code:
                self._reply(400, "No code", "The callback carried no authorization code.")
                return
            try:
                server.result = server.exchange(code)
            except AuthError as exc:
                server.error = exc
                server.done.set()
                self._reply(
                    502,
                    "Authorization failed",
                    "tap-bitbucket could not exchange the code; see its error message.",
                )
                return
            server.done.set()
        self._reply(
            200, "tap-bitbucket is authorized", "The tokens were saved. You can close this tab."
        )


def _announce_to_stderr(url: str) -> None:
    print(
        f"Open this URL in a browser to authorize tap-bitbucket: {url}",
        file=sys.stderr,
        flush=True,
    )


def run_browser_flow(
    options: OAuthOptions,
    endpoint: TokenEndpoint,
    *,
    logger: logging.Logger | None = None,
    announce: Callable[[str], None] | None = None,
) -> TokenSet:
    """Run the desktop authorization-code flow and return the tokens (not yet saved)."""
    log = logger or _LOGGER
    options.require_client()
    host, port, path = check_loopback_callback(options.callback_url)
    family = socket.AF_INET6 if host == "::1" else socket.AF_INET
    bind_host = "::1" if host == "::1" else "127.0.0.1"
    state = secrets.token_urlsafe(32)
    redirect_uri = options.redirect_uri

    def exchange(code: str) -> TokenSet:
        return endpoint.exchange_code(code, redirect_uri)

    try:
        server = _CallbackServer(
            (bind_host, port),
            family,
            expected_path=path,
            state=state,
            exchange=exchange,
            logger=log,
        )
    except OSError as exc:
        raise AuthError(
            f"Cannot listen on {bind_host}:{port} for the OAuth callback "
            f"({exc.strerror or exc.__class__.__name__}); free that port or set callback_url "
            "to another loopback port registered for the consumer."
        ) from None
    url = authorization_url(options, state)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name="oauth-callback",
        daemon=True,
    )
    thread.start()
    try:
        (announce or _announce_to_stderr)(url)
        log.info(
            "Waiting up to %g s for the OAuth callback on %s",
            options.callback_timeout,
            options.callback_url,
        )
        if options.open_browser:
            opened = False
            with contextlib.suppress(Exception):
                opened = webbrowser.open(url)
            if not opened:
                log.info("No browser could be opened; open the URL above by hand.")
        if not server.done.wait(options.callback_timeout):
            raise AuthError(
                f"No OAuth callback reached {options.callback_url} within "
                f"{options.callback_timeout:g} s; open the printed URL in a browser (the "
                "consumer's callback URL must be this callback_url) or raise "
                "oauth_callback_timeout."
            )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    if server.error is not None:
        raise server.error
    if server.result is None:  # pragma: no cover - done is only set with an outcome
        raise AuthError("The OAuth callback carried no result; run `tap-bitbucket-oauth login`.")
    return server.result


# --------------------------------------------------------------------------------------
# The authenticator
# --------------------------------------------------------------------------------------


def _bearer_of(response: requests.Response | None) -> str | None:
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
        self.logger = logger or _LOGGER
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


class _StaticAuth(BitbucketAuth):
    """API token (Basic email:token) or access token (Bearer): nothing to refresh."""

    def __init__(
        self, scheme: str, config: Mapping[str, Any], *, logger: logging.Logger | None = None
    ) -> None:
        super().__init__(scheme, logger=logger)
        inner: APIAuthenticatorBase
        if scheme == "api_token":
            username = _str_setting(config, "username") or ""
            api_token = _str_setting(config, "api_token") or ""
            inner = BasicAuthenticator(username=username, password=api_token)
            self._remember(api_token, basic_auth_value(username, api_token))
        else:
            token = _str_setting(config, "access_token") or ""
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


class _OAuthClientAuth(BitbucketAuth):
    """Client-credentials grant: a new token whenever the current one (in memory) expires."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        session: requests.Session | None,
        logger: logging.Logger | None,
    ) -> None:
        super().__init__("oauth_client", logger=logger)
        self.options = OAuthOptions.from_config(config)
        self.endpoint = TokenEndpoint(
            self.options, session=session, logger=self.logger
        ).apply_retry_settings(config)
        self._tokens: TokenSet | None = None
        self._remember(*_config_secrets(config), *self.options.secrets())

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
        failed = _bearer_of(response)
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


class _OAuthCodeAuth(BitbucketAuth):
    """Authorization-code grant with tokens persisted in the settings file."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        session: requests.Session | None,
        logger: logging.Logger | None,
    ) -> None:
        super().__init__("oauth_code", logger=logger)
        self.options = OAuthOptions.from_config(config)
        self.endpoint = TokenEndpoint(
            self.options, session=session, logger=self.logger
        ).apply_retry_settings(config)
        self.store = OAuthSettingsStore(
            self.options.settings_location, self.options.settings_key, logger=self.logger
        )
        self._tokens: TokenSet | None = None
        self._prepared = False
        self._remember(*_config_secrets(config), *self.options.secrets())

    # -- state -----------------------------------------------------------------------

    def _adopt(self, tokens: TokenSet) -> None:
        self._remember(*tokens.secrets())
        self._tokens = tokens

    def _check_owner(self, tokens: TokenSet | None) -> None:
        if tokens is None or not tokens.client_id or not self.options.client_id:
            return
        if tokens.client_id != self.options.client_id:
            raise AuthError(
                f"The OAuth settings file {self.store.path} holds tokens of another OAuth "
                "consumer than oauth_client_id; use the matching oauth_client_id, or delete "
                "the file and run `tap-bitbucket-oauth login`."
            )

    def _save_and_adopt(self, tokens: TokenSet) -> None:
        self.store.write(tokens)  # the rotated refresh token is safe before the token is used
        self._adopt(tokens)

    def _refresh_locked(self, disk: TokenSet | None) -> None:
        """Refresh with the newest refresh token; the caller holds the settings-file lock."""
        refresh_token = (disk.refresh_token if disk is not None else None) or (
            self._tokens.refresh_token if self._tokens is not None else None
        )
        if not refresh_token:
            raise AuthError(
                "The OAuth access token expired and there is no refresh token to renew it; "
                f"{LOGIN_HINT}."
            )
        self.store.check_writable()
        fresh = self.endpoint.refresh(refresh_token)
        previous = disk or self._tokens
        if not fresh.refresh_token:
            fresh = replace(fresh, refresh_token=refresh_token)
        if previous is not None and previous.verifier_sha256:
            fresh = replace(fresh, verifier_sha256=previous.verifier_sha256)
        if fresh.scopes is None and previous is not None:
            fresh = replace(fresh, scopes=previous.scopes)
        self._save_and_adopt(fresh)
        self.logger.info(
            "Refreshed the OAuth access token (valid %g s); saved to %s",
            fresh.expires_in or 0,
            self.store.path,
        )

    def _refresh(self, rejected: str | None) -> bool:
        """Make the in-memory token usable again; False when nothing could be done."""
        with self.store.locked():
            disk = self.store.read()
            self._check_owner(disk)
            if (
                disk is not None
                and disk.access_token
                and disk.access_token != rejected
                and disk.is_fresh(self.options.refresh_margin)
            ):
                # Another process already rotated the tokens: use them, do not refresh again
                # (that would burn the refresh token the other process just saved).
                self._adopt(disk)
                return True
            if not ((disk and disk.refresh_token) or (self._tokens and self._tokens.refresh_token)):
                return False
            self._refresh_locked(disk)
            return True

    # -- interface -------------------------------------------------------------------

    def prepare(self) -> None:
        with self._lock:
            self._prepare_locked()
            self._prepared = True

    def _prepare_locked(self) -> None:
        options = self.options
        if options.initiate == "OFF":
            if not options.access_token:
                raise ConfigError("oauth_access_token", "is required when initiate_oauth is OFF")
            self._adopt(TokenSet(access_token=options.access_token))
            return
        options.require_client()
        margin = options.refresh_margin
        with self.store.locked():
            disk = self.store.read()
            self._check_owner(disk)
            usable_disk = disk if disk is not None and disk.has_tokens else None
            if options.verifier:
                digest = verifier_digest(options.verifier)
                if usable_disk is None or usable_disk.verifier_sha256 != digest:
                    try:
                        tokens = self.endpoint.exchange_code(options.verifier, options.redirect_uri)
                    except OAuthGrantError as exc:
                        if exc.error != "invalid_grant" or usable_disk is None:
                            raise
                        self.logger.warning(
                            "oauth_verifier was rejected (probably already used); using the "
                            "tokens of the settings file %s",
                            self.store.path,
                        )
                        usable_disk = replace(usable_disk, verifier_sha256=digest)
                        if usable_disk.is_fresh(margin):
                            self._save_and_adopt(usable_disk)
                            return
                    else:
                        self._save_and_adopt(replace(tokens, verifier_sha256=digest))
                        self.logger.info(
                            "Exchanged oauth_verifier for OAuth tokens; saved to %s",
                            self.store.path,
                        )
                        return
            if usable_disk is not None:
                self._adopt(usable_disk)
                self.logger.info("Using the OAuth tokens of %s", self.store.path)
                if usable_disk.is_fresh(margin):
                    return
                try:
                    self._refresh_locked(usable_disk)
                    return
                except OAuthGrantError as exc:
                    if options.initiate != "GETANDREFRESH" or exc.error != "invalid_grant":
                        raise
                    self.logger.warning(
                        "The saved OAuth refresh token was rejected; starting the browser flow."
                    )
            elif options.refresh_token:
                self._adopt(
                    TokenSet(
                        access_token=options.access_token,
                        refresh_token=options.refresh_token,
                        client_id=options.client_id,
                    )
                )
                try:
                    self._refresh_locked(None)
                    return
                except OAuthGrantError as exc:
                    if options.initiate != "GETANDREFRESH" or exc.error != "invalid_grant":
                        raise
                    self.logger.warning(
                        "oauth_refresh_token was rejected; starting the browser flow."
                    )
            elif options.access_token and options.initiate != "GETANDREFRESH":
                self.logger.warning(
                    "Only oauth_access_token is set (no refresh token, no settings file): it "
                    "is used as is and cannot be refreshed."
                )
                self._adopt(TokenSet(access_token=options.access_token))
                return
        if options.initiate == "GETANDREFRESH":
            tokens = run_browser_flow(options, self.endpoint, logger=self.logger)
            self._remember(*tokens.secrets())
            with self.store.locked():
                self._save_and_adopt(tokens)
            self.logger.info("Saved the OAuth tokens to %s", self.store.path)
            return
        raise AuthError(
            f"No OAuth tokens: the settings file {self.store.path} does not exist or is empty "
            "and neither oauth_verifier nor oauth_refresh_token is set; run "
            "`tap-bitbucket-oauth login`, set oauth_verifier, or set initiate_oauth to "
            "GETANDREFRESH."
        )

    def _can_refresh(self) -> bool:
        return self.options.initiate != "OFF"

    def _authorization(self) -> str:
        tokens = self._tokens
        margin = self.options.refresh_margin
        if not (self._prepared and tokens is not None and tokens.is_fresh(margin)):
            with self._lock:
                if not self._prepared:
                    self.prepare()
                tokens = self._tokens
                if tokens is not None and not tokens.is_fresh(margin) and self._can_refresh():
                    self._refresh(rejected=None)
                    tokens = self._tokens
        if tokens is None or not tokens.access_token:
            raise AuthError(f"No OAuth access token is available; {LOGIN_HINT}.")
        return f"Bearer {tokens.access_token}"

    def handle_unauthorized(self, response: requests.Response) -> bool:
        if not self._can_refresh():
            return False
        failed = _bearer_of(response)
        with self._lock:
            current = self._tokens
            if (
                current is not None
                and current.access_token
                and failed is not None
                and current.access_token != failed
                and current.is_fresh(self.options.refresh_margin)
            ):
                return True  # another thread already replaced the rejected token
            return self._refresh(rejected=failed)

    def unauthorized_message(self) -> str:
        if not self._can_refresh():
            return (
                "Bitbucket rejected oauth_access_token (HTTP 401) and initiate_oauth is OFF, "
                "so it is never refreshed; supply a valid oauth_access_token or set "
                "initiate_oauth to REFRESH with a refresh token or settings file."
            )
        return (
            "Bitbucket rejected the OAuth access token even after a refresh (HTTP 401); check "
            f"the consumer's permissions, or {LOGIN_HINT}."
        )


def build_authenticator(
    config: Mapping[str, Any],
    *,
    session: requests.Session | None = None,
    logger: logging.Logger | None = None,
) -> BitbucketAuth:
    """Validate the auth settings and return the tap's authenticator (no network call)."""
    validate_auth_config(config)
    scheme = infer_auth_scheme(config)
    if scheme in {"api_token", "access_token"}:
        return _StaticAuth(scheme, config, logger=logger)
    if scheme == "oauth_client":
        return _OAuthClientAuth(config, session=session, logger=logger)
    return _OAuthCodeAuth(config, session=session, logger=logger)
