"""OAuth set-ups against the emulator's OAuth server: what a browser login leaves behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from tap_bitbucket import auth
from tests.emulator import Emulator
from tests.harness.running import START_DATE


def oauth_code_config(
    emu: Emulator, settings: Path, key: str | None = None, **extra: Any
) -> dict[str, Any]:
    """An oauth_code config whose settings file holds tokens issued by the emulator's
    OAuth server (an authorization-code exchange, as a browser flow would end)."""
    seed_oauth_settings(emu, settings, key)
    config: dict[str, Any] = {
        "api_url": emu.api_url,
        "oauth_url": emu.oauth_url,
        "auth_scheme": "oauth_code",
        "initiate_oauth": "REFRESH",
        "oauth_client_id": emu.credentials.oauth_client_id,
        "oauth_client_secret": emu.credentials.oauth_client_secret,
        "oauth_settings_location": str(settings),
        "oauth_open_browser": False,
        "start_date": START_DATE,
        **extra,
    }
    if key:
        config["oauth_settings_key"] = key
    return config


def authorization_code(emu: Emulator, state: str = "st") -> str:
    """What a browser does: GET the authorize URL and read the code off the redirect."""
    response = requests.get(
        emu.oauth_url + "/authorize",
        params={
            "client_id": emu.credentials.oauth_client_id,
            "response_type": "code",
            "state": state,
        },
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text
    return parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]


def seed_oauth_settings(emu: Emulator, settings: Path, key: str | None = None) -> auth.TokenSet:
    """Exchange a fresh authorization code at the emulator and save the tokens."""
    endpoint = auth.TokenEndpoint(
        auth.OAuthOptions.from_config(
            {
                "oauth_client_id": emu.credentials.oauth_client_id,
                "oauth_client_secret": emu.credentials.oauth_client_secret,
                "oauth_url": emu.oauth_url,
            }
        )
    )
    tokens = endpoint.exchange_code(authorization_code(emu), None)
    tokens = auth.TokenSet(**{**tokens.__dict__, "client_id": emu.credentials.oauth_client_id})
    auth.OAuthSettingsStore(str(settings), key).write(tokens)
    return tokens
