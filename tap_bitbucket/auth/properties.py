"""The auth part of the config schema: one property per setting, secrets marked."""

from __future__ import annotations

from typing import Any

from singer_sdk import typing as th

from tap_bitbucket.auth.constants import (
    DEFAULT_CALLBACK_TIMEOUT,
    DEFAULT_CALLBACK_URL,
    DEFAULT_OAUTH_URL,
    DEFAULT_REFRESH_MARGIN,
    INITIATE_MODES,
    SCHEMES,
)

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
