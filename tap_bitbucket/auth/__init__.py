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

from tap_bitbucket.auth.authenticators import BitbucketAuth
from tap_bitbucket.auth.browser import run_browser_flow
from tap_bitbucket.auth.build import build_authenticator
from tap_bitbucket.auth.constants import (
    DEFAULT_CALLBACK_TIMEOUT,
    DEFAULT_CALLBACK_URL,
    DEFAULT_OAUTH_URL,
    DEFAULT_REFRESH_MARGIN,
    INITIATE_MODES,
    LOGIN_HINT,
    LOOPBACK_HOSTS,
    SCHEMES,
    SETTINGS_FORMAT,
)
from tap_bitbucket.auth.properties import AUTH_PROPERTIES, SECRET_SETTINGS
from tap_bitbucket.auth.settings import (
    OAuthOptions,
    authorization_url,
    check_loopback_callback,
    default_settings_location,
    extract_code,
    infer_auth_scheme,
    validate_auth_config,
)
from tap_bitbucket.auth.store import OAuthSettingsStore, TokenSet, verifier_digest
from tap_bitbucket.auth.token_endpoint import OAuthGrantError, TokenEndpoint

__all__ = [
    "AUTH_PROPERTIES",
    "DEFAULT_CALLBACK_TIMEOUT",
    "DEFAULT_CALLBACK_URL",
    "DEFAULT_OAUTH_URL",
    "DEFAULT_REFRESH_MARGIN",
    "INITIATE_MODES",
    "LOGIN_HINT",
    "LOOPBACK_HOSTS",
    "SCHEMES",
    "SECRET_SETTINGS",
    "SETTINGS_FORMAT",
    "BitbucketAuth",
    "OAuthGrantError",
    "OAuthOptions",
    "OAuthSettingsStore",
    "TokenEndpoint",
    "TokenSet",
    "authorization_url",
    "build_authenticator",
    "check_loopback_callback",
    "default_settings_location",
    "extract_code",
    "infer_auth_scheme",
    "run_browser_flow",
    "validate_auth_config",
    "verifier_digest",
]
