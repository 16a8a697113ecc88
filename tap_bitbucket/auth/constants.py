"""Names shared by the auth modules."""

from __future__ import annotations

import logging

SCHEMES = ("oauth_code", "oauth_client", "api_token", "access_token")
INITIATE_MODES = ("OFF", "REFRESH", "GETANDREFRESH")
DEFAULT_CALLBACK_URL = "http://localhost:33333"
DEFAULT_OAUTH_URL = "https://bitbucket.org/site/oauth2"
DEFAULT_CALLBACK_TIMEOUT = 300.0
DEFAULT_REFRESH_MARGIN = 300.0
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
SETTINGS_FORMAT = "tap-bitbucket-oauth/1"
LOGIN_HINT = "run `tap-bitbucket-oauth login` (or supply a new oauth_verifier)"

LOGGER = logging.getLogger("tap_bitbucket.auth")
