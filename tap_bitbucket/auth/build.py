"""Which authenticator a config asks for."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import requests

from tap_bitbucket.auth.authenticators import BitbucketAuth, OAuthClientAuth, StaticAuth
from tap_bitbucket.auth.oauth_code import OAuthCodeAuth
from tap_bitbucket.auth.settings import infer_auth_scheme, validate_auth_config


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
        return StaticAuth(scheme, config, logger=logger)
    if scheme == "oauth_client":
        return OAuthClientAuth(config, session=session, logger=logger)
    return OAuthCodeAuth(config, session=session, logger=logger)
