"""Small helpers shared by the reliability and secrets tests: run the real tap CLI as a
subprocess against an emulator, select streams, and read its Singer output.

Nothing here mocks HTTP: every run is `python -m tap_bitbucket.tap` talking to an
emulator over loopback.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from tap_bitbucket import auth
from tests.emulator import Emulator
from tests.tap_helpers import select_only

ROOT = Path(__file__).resolve().parents[1]
TAP = [sys.executable, "-m", "tap_bitbucket.tap"]
OAUTH_CLI = [sys.executable, "-m", "tap_bitbucket.oauth_cli"]
START_DATE = "2000-01-01T00:00:00Z"
# Fast retries: faults cost milliseconds, not seconds.
FAST = {
    "backoff_base_seconds": 0.05,
    "backoff_max_seconds": 0.2,
    "request_timeout_seconds": 1,
}


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a tap process: no TAP_BITBUCKET_* from outside, private XDG."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_BITBUCKET_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def api_token_config(emu: Emulator, **extra: Any) -> dict[str, Any]:
    return {
        "api_url": emu.api_url,
        "username": emu.credentials.email,
        "api_token": emu.credentials.api_token,
        "start_date": START_DATE,
        **extra,
    }


def access_token_config(emu: Emulator, **extra: Any) -> dict[str, Any]:
    return {
        "api_url": emu.api_url,
        "access_token": emu.credentials.access_token,
        "workspaces": ["acme"],
        "start_date": START_DATE,
        **extra,
    }


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


# ---------------------------------------------------------------------------- catalogs


@functools.cache
def discovered_catalog() -> str:
    """The tap's catalog (it never depends on config), discovered once per process."""
    config = {"api_url": "http://127.0.0.1:9/2.0", "access_token": "discover-only"}
    result = subprocess.run(
        [*TAP, "--config", "ENV", "--discover"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **cli_env(Path("/nonexistent")),
            **{
                "TAP_BITBUCKET_API_URL": config["api_url"],
                "TAP_BITBUCKET_ACCESS_TOKEN": config["access_token"],
            },
        },
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def catalog_selecting(streams: set[str] | None) -> dict[str, Any]:
    """The catalog with exactly `streams` selected (None: the default selection)."""
    catalog = json.loads(discovered_catalog())
    return catalog if streams is None else select_only(catalog, streams)


# ---------------------------------------------------------------------------- running


@dataclass
class TapRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def records(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == "RECORD"]

    @property
    def states(self) -> list[dict[str, Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    def error_lines(self) -> list[str]:
        return [
            line for line in self.stderr.splitlines() if line.startswith("tap-bitbucket: error: ")
        ]


def parse_messages(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def tap_command(
    tmp_path: Path,
    config: dict[str, Any],
    *,
    state: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
    name: str = "run",
) -> list[str]:
    command = [*TAP, "--config", str(write_json(tmp_path / f"{name}-config.json", config))]
    if catalog is not None:
        command += ["--catalog", str(write_json(tmp_path / f"{name}-catalog.json", catalog))]
    if state is not None:
        command += ["--state", str(write_json(tmp_path / f"{name}-state.json", state))]
    return command


def run_tap(
    tmp_path: Path,
    config: dict[str, Any],
    *args: str,
    state: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 180,
    name: str = "run",
) -> TapRun:
    command = [*tap_command(tmp_path, config, state=state, catalog=catalog, name=name), *args]
    started = time.monotonic()
    result = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or cli_env(tmp_path),
    )
    run = TapRun(result.returncode, result.stdout, result.stderr, time.monotonic() - started)
    if "--about" not in args and "--discover" not in args:
        run.messages = parse_messages(result.stdout)
    return run


# ---------------------------------------------------------------------------- records


def key_properties(messages: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {m["stream"]: m["key_properties"] for m in messages if m["type"] == "SCHEMA"}


def record_key(record: dict[str, Any], keys: dict[str, list[str]]) -> tuple[str, str]:
    stream = record["stream"]
    values = [record["record"].get(k) for k in keys[stream]]
    assert all(v is not None for v in values), (stream, keys[stream], record["record"])
    return stream, json.dumps(values)


def keyed_records(
    messages: list[dict[str, Any]], keys: dict[str, list[str]] | None = None
) -> dict[tuple[str, str], str]:
    """(stream, primary key) -> the record's content as canonical JSON (last one wins)."""
    keys = keys or key_properties(messages)
    out: dict[tuple[str, str], str] = {}
    for message in messages:
        if message["type"] == "RECORD":
            out[record_key(message, keys)] = json.dumps(message["record"], sort_keys=True)
    return out


def no_duplicate_keys(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    keys = key_properties(messages)
    seen: set[tuple[str, str]] = set()
    repeated = []
    for message in messages:
        if message["type"] == "RECORD":
            key = record_key(message, keys)
            if key in seen:
                repeated.append(key)
            seen.add(key)
    return repeated
