"""Bad input ends the run before any data, with ONE line that names the setting.

Each case runs the real CLI (`python -m tap_bitbucket.tap --config ... [--state ...]`)
against the emulator and checks: a non-zero exit code, exactly one
`tap-bitbucket: error: ...` line on stderr naming the setting, no traceback, and no RECORD
on stdout. With `TAP_BITBUCKET_LOGLEVEL=debug` the same failures show a traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.emulator import Emulator
from tests.harness import (
    ROOT,
    START_DATE,
    TAP,
    api_token_config,
    oauth_code_config,
    parse_messages,
    tap_env,
)

ERROR = "tap-bitbucket: error: "


@dataclass
class Case:
    """`config` edits the base config (api token auth on the emulator): a key with the value
    DROP is removed. `words` must all appear in the error line (the setting first)."""

    id: str
    config: dict[str, Any]
    words: tuple[str, ...]
    base: str = "api_token"  # or "none" (config is the whole config), "oauth"
    state: str | None = None  # raw text of the state file
    setup: Callable[[Path, Emulator], dict[str, Any]] | None = None
    raw_config: str | None = None  # raw text of the config file
    extra_args: tuple[str, ...] = ()
    network: bool = False  # the failure needs the API (checked before any data)
    env: dict[str, str] = field(default_factory=dict)


DROP = object()


def _corrupt_settings(tmp: Path, emu: Emulator) -> dict[str, Any]:
    path = tmp / "corrupt-oauth.json"
    path.write_text('{"format": 1, "access_token": ')
    return {"oauth_settings_location": str(path)}


def _wrong_key(tmp: Path, emu: Emulator) -> dict[str, Any]:
    path = tmp / "encrypted-oauth.json"
    config = oauth_code_config(emu, path, key="the-right-key")
    config["oauth_settings_key"] = "not-the-key"
    return config


CASES = [
    # --- wrong types (the JSON schema) ---------------------------------------------
    Case("max_workers_string", {"max_workers": "four"}, ("max_workers",)),
    Case("workspaces_not_a_list", {"workspaces": "acme"}, ("workspaces",)),
    Case("repositories_not_strings", {"repositories": [1, 2]}, ("repositories",)),
    Case(
        "request_timeout_string", {"request_timeout_seconds": "soon"}, ("request_timeout_seconds",)
    ),
    Case("api_token_not_a_string", {"api_token": 12345}, ("api_token",)),
    # --- values ------------------------------------------------------------------------
    Case("start_date_garbage", {"start_date": "last tuesday"}, ("start_date",)),
    Case("start_date_impossible", {"start_date": "2024-13-45T00:00:00Z"}, ("start_date",)),
    Case("max_workers_negative", {"max_workers": -1}, ("max_workers",)),
    Case("max_workers_zero", {"max_workers": 0}, ("max_workers",)),
    Case("shard_index_out_of_range", {"shard_count": 2, "shard_index": 3}, ("shard_index",)),
    Case("shard_count_zero", {"shard_count": 0}, ("shard_count",)),
    Case("requests_per_hour_negative", {"requests_per_hour": -5}, ("requests_per_hour",)),
    Case("api_url_ftp", {"api_url": "ftp://api.bitbucket.org/2.0"}, ("api_url",)),
    Case("api_url_not_a_url", {"api_url": "bitbucket"}, ("api_url",)),
    Case("repositories_glob_without_slash", {"repositories": ["acme"]}, ("repositories", "acme")),
    Case("repositories_unbalanced_bracket", {"repositories": ["acme/[api"]}, ("repositories", "[")),
    Case(
        "exclude_glob_without_workspace",
        {"exclude_repositories": ["/web"]},
        ("exclude_repositories",),
    ),
    # --- credentials for the chosen scheme --------------------------------------------
    Case("unknown_auth_scheme", {"auth_scheme": "kerberos"}, ("auth_scheme", "kerberos")),
    Case("no_credentials", {"api_url": "http://127.0.0.1:9/2.0"}, ("auth_scheme",), base="none"),
    Case("api_token_without_username", {"username": DROP}, ("username",)),
    Case("username_without_api_token", {"api_token": DROP}, ("api_token",)),
    Case("username_not_an_email", {"username": "acme-bot"}, ("username", "email")),
    Case("scheme_access_token_missing", {"auth_scheme": "access_token"}, ("access_token",)),
    Case(
        "client_id_without_secret",
        {"api_url": "http://127.0.0.1:9/2.0", "oauth_client_id": "abc"},
        ("oauth_client_secret",),
        base="none",
    ),
    Case(
        "initiate_oauth_unknown",
        {"initiate_oauth": "SOMETIMES"},
        ("initiate_oauth", "SOMETIMES"),
        base="oauth",
    ),
    Case(
        "desktop_callback_not_loopback",
        {"initiate_oauth": "GETANDREFRESH", "callback_url": "http://192.0.2.10:33333/cb"},
        ("callback_url", "loopback"),
        base="oauth",
    ),
    Case(
        "oauth_url_plain_http_remote",
        {"oauth_url": "http://oauth.example.com/site/oauth2"},
        ("oauth_url", "https"),
        base="oauth",
    ),
    Case(
        "oauth_without_any_tokens",
        {"oauth_settings_location": "/nonexistent/dir/o.json"},
        ("oauth_settings_location",),
        base="oauth",
    ),
    Case(
        "oauth_callback_timeout_negative",
        {"oauth_callback_timeout": -3},
        ("oauth_callback_timeout",),
        base="oauth",
    ),
    # --- settings-file problems ---------------------------------------------------------
    Case(
        "settings_file_corrupt",
        {},
        ("OAuth settings file", "not valid JSON"),
        base="oauth",
        setup=_corrupt_settings,
        network=True,
    ),
    Case(
        "settings_file_wrong_key",
        {},
        ("oauth_settings_key",),
        base="none",
        setup=_wrong_key,
        network=True,
    ),
    # --- files ---------------------------------------------------------------------------
    Case("config_file_not_json", {}, ("config",), raw_config="{not json"),
    Case("state_file_not_json", {}, ("state",), state='{"bookmarks": '),
    Case("state_file_unreadable", {}, ("state",), state="UNREADABLE"),
    Case("state_file_missing", {}, ("state",), state="MISSING"),
    # --- what only the API can tell: checked before any data is emitted -------------------
    Case(
        "unknown_workspace",
        {"workspaces": ["acme", "no-such-workspace"]},
        ("workspaces", "no-such-workspace"),
        network=True,
    ),
    Case(
        "repository_glob_matches_nothing",
        {"repositories": ["acme/*", "acme/nope-*"]},
        ("repositories", "acme/nope-*"),
        network=True,
    ),
    Case(
        "repository_in_unknown_workspace",
        {"repositories": ["initech/*"]},
        ("repositories", "initech/*"),
        network=True,
    ),
]


def _build(case: Case, tmp_path: Path, emu: Emulator) -> list[str]:
    if case.base == "api_token":
        config = api_token_config(emu, start_date=START_DATE)
    elif case.base == "oauth":
        config = oauth_code_config(emu, tmp_path / "oauth.json")
    else:
        config = {}
    if case.setup is not None:
        config.update(case.setup(tmp_path, emu))
    for key, value in case.config.items():
        if value is DROP:
            config.pop(key, None)
        else:
            config[key] = value
    config_path = tmp_path / "config.json"
    config_path.write_text(case.raw_config if case.raw_config is not None else json.dumps(config))
    command = [*TAP, "--config", str(config_path)]
    if case.state is not None:
        state_path = tmp_path / "state.json"
        if case.state == "UNREADABLE":
            state_path.mkdir()  # a directory: open() fails whoever runs the test
        elif case.state != "MISSING":
            state_path.write_text(case.state)
        command += ["--state", str(state_path)]
    return [*command, *case.extra_args]


def _run(command: list[str], tmp_path: Path, **env: str) -> Any:
    import subprocess  # noqa: PLC0415

    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, env=tap_env(tmp_path, **env)
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_config_fails_with_one_line(case: Case, emulator: Emulator, tmp_path: Path) -> None:
    command = _build(case, tmp_path, emulator)
    before = len(emulator.request_log)
    result = _run(command, tmp_path)
    assert result.returncode != 0, result.stderr[-600:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if ERROR in line]
    assert len(errors) == 1, result.stderr[-1500:]
    line = errors[0]
    assert line.startswith(ERROR), line
    for word in case.words:
        assert word in line, line
    messages = parse_messages(result.stdout) if result.stdout.strip() else []
    assert [m for m in messages if m["type"] == "RECORD"] == []
    assert [m for m in messages if m["type"] == "STATE"] == []
    if not case.network:
        # Caught before the first request: nothing reached the API.
        assert [e.path for e in emulator.request_log[before:]] == []


# One case per place an error can come from: the JSON schema, validate_settings, the auth
# settings file, the config and state files, and the API pre-flight.
DEBUG_CASES = [
    "max_workers_string",
    "start_date_garbage",
    "settings_file_corrupt",
    "config_file_not_json",
    "state_file_unreadable",
    "unknown_workspace",
]


@pytest.mark.parametrize("case", [c for c in CASES if c.id in DEBUG_CASES], ids=DEBUG_CASES)
def test_debug_log_level_shows_the_traceback(
    case: Case, emulator: Emulator, tmp_path: Path
) -> None:
    result = _run(_build(case, tmp_path, emulator), tmp_path, TAP_BITBUCKET_LOGLEVEL="debug")
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr, result.stderr[-1500:]
    errors = [line for line in result.stderr.splitlines() if line.startswith(ERROR)]
    assert len(errors) == 1, result.stderr[-1500:]
    assert case.words[0] in errors[0]


def test_every_case_is_distinct_and_there_are_enough() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 25
    assert os.environ.get("TAP_BITBUCKET_LOGLEVEL", "").lower() != "debug"
