"""Run the real tap as a subprocess against the emulator (nothing in-process, nothing
mocked): configs, the process environment, `run_tap` and its `TapResult`, catalogs.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import typing as t
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from tests.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
TAP = [sys.executable, "-m", "tap_bitbucket.tap"]
OAUTH_CLI = [sys.executable, "-m", "tap_bitbucket.oauth_cli"]
ERROR_PREFIX = "tap-bitbucket: error: "
#: A start date before any of the emulator's data (the reliability tests set it).
START_DATE = "2000-01-01T00:00:00Z"
# Fast retries: faults cost milliseconds, not seconds.
FAST = {
    "backoff_base_seconds": 0.05,
    "backoff_max_seconds": 0.2,
    "request_timeout_seconds": 1,
}
T = t.TypeVar("T")
#: How `run_tap` reads stdout: "strict" (every line one complete Singer message),
#: "lenient" (every non-blank line JSON, of any type) or "none" (not parsed).
Parse = t.Literal["strict", "lenient", "none"]
SINGER_TYPES = {"SCHEMA", "RECORD", "STATE", "ACTIVATE_VERSION", "BATCH"}


# ============================================================================ configs


def api_token_config(emu: Emulator, **extra: Any) -> dict[str, Any]:
    return {
        "api_url": emu.api_url,
        "username": emu.credentials.email,
        "api_token": emu.credentials.api_token,
        **extra,
    }


def access_token_config(
    emu: Emulator, workspaces: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    """An access token is bound to one workspace: `workspaces` defaults to ["acme"]."""
    return {
        "api_url": emu.api_url,
        "access_token": emu.credentials.access_token,
        "workspaces": ["acme"] if workspaces is None else workspaces,
        **extra,
    }


def secret_values(emu: Emulator) -> list[str]:
    """Every credential the emulator knows: none may ever show up in the tap's output."""
    creds = emu.credentials
    basic = base64.b64encode(f"{creds.email}:{creds.api_token}".encode()).decode()
    values = [creds.api_token, creds.access_token, creds.oauth_client_secret, basic]
    return [v for v in values if v]


def tap_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a tap process: the parent's without TAP_BITBUCKET_* settings
    (they would leak in), then `extra`.

    With `home` (a folder of the test's own), also a private XDG_CONFIG_HOME under it, so
    nothing reads or writes the user's config folder, and PYTHONPATH at the repository,
    for processes started from another folder.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_BITBUCKET_")}
    if home is not None:
        env["XDG_CONFIG_HOME"] = str(home / "xdg")
        env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


# ============================================================================ running


@dataclass
class TapResult:
    """One finished tap process: its exit code, output and the parsed Singer messages."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def records(self) -> list[dict[str, Any]]:
        """The RECORD messages, in order."""
        return [m for m in self.messages if m["type"] == "RECORD"]

    @property
    def records_by_stream(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for message in self.records:
            out.setdefault(message["stream"], []).append(message["record"])
        return out

    @property
    def schemas(self) -> dict[str, dict[str, Any]]:
        """stream -> its (last) SCHEMA message."""
        return {m["stream"]: m for m in self.messages if m["type"] == "SCHEMA"}

    @property
    def states(self) -> list[dict[str, Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def last_state(self) -> dict[str, Any] | None:
        states = self.states
        return states[-1] if states else None

    @property
    def stderr_lines(self) -> list[str]:
        return self.stderr.splitlines()

    def warning_lines(self) -> list[str]:
        return [line for line in self.stderr_lines if "WARNING" in line]

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr_lines if line.startswith(ERROR_PREFIX)]

    def skip_lines(self) -> list[str]:
        """WARNING lines of the tap's expected-error skips."""
        return [line for line in self.warning_lines() if "Skipping stream" in line]


def parse_lines(stdout: str) -> list[dict[str, Any]]:
    """Strict: every stdout line must be one complete JSON Singer message.

    Lines end at "\n" only, as a target reads them: `str.splitlines()` also splits at
    U+0085 and U+2028 inside a JSON string (found by tests/test_fuzz_state.py).
    """
    messages = []
    for number, line in enumerate(stdout.removesuffix("\n").split("\n") if stdout else [], 1):
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise AssertionError(f"stdout line {number} is not JSON: {line[:300]!r}") from exc
        assert isinstance(message, dict), f"stdout line {number} is not an object"
        assert message.get("type") in SINGER_TYPES, (
            f"stdout line {number} is not a Singer message: {line[:300]!r}"
        )
        messages.append(message)
    return messages


def parse_messages(stdout: str) -> list[dict[str, Any]]:
    """Lenient: each non-blank stdout line as JSON."""
    return [json.loads(line) for line in stdout.split("\n") if line.strip()]


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def tap_command(
    folder: Path,
    config: dict[str, Any],
    *,
    state: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
    name: str = "run",
) -> list[str]:
    """The tap's command line, its files written into `folder` as `{name}-config.json`..."""
    command = [*TAP, "--config", str(write_json(folder / f"{name}-config.json", config))]
    if catalog is not None:
        command += ["--catalog", str(write_json(folder / f"{name}-catalog.json", catalog))]
    if state is not None:
        command += ["--state", str(write_json(folder / f"{name}-state.json", state))]
    return command


def run_tap(
    config: dict[str, Any],
    state: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    *,
    args: Iterable[str] = (),
    timeout: float = 300,
    parse: Parse = "strict",
    home: Path | None = None,
    name: str = "run",
) -> TapResult:
    """Run one sync (or another CLI mode through `args`) as a subprocess.

    `env` adds variables to `tap_env(home)`. With `home`, the config, state and catalog
    files stay in that folder (named after `name`) and the tap gets a private
    XDG_CONFIG_HOME there; without it they go to a temporary folder removed afterwards.
    """
    with tempfile.TemporaryDirectory(prefix="tap-run-") as tmp:
        folder = home if home is not None else Path(tmp)
        command = tap_command(folder, config, state=state, catalog=catalog, name=name)
        started = time.monotonic()
        proc = subprocess.run(
            [*command, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
            env=tap_env(home, **(env or {})),
        )
    result = TapResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
    if parse == "strict":
        result.messages = parse_lines(proc.stdout)
    elif parse == "lenient":
        result.messages = parse_messages(proc.stdout)
    return result


def run_taps_concurrently(runs: list[dict[str, Any]]) -> list[TapResult]:
    """Several `run_tap(**kwargs)` at once (independent processes; results in order)."""
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        return list(pool.map(lambda kwargs: run_tap(**kwargs), runs))


def once_per_session(tmp_path_factory: Any, name: str, produce: Callable[[], T]) -> T:
    """`produce()` once per test session, even when pytest-xdist spreads the tests that use
    it over several workers (a module fixture would then run once per worker).

    Under xdist the first worker to get here runs it and pickles the value into the
    session's shared temporary folder; the others wait on a file lock and load it. Every
    worker's emulator serves the same deterministic data, so any worker's run will do.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return produce()
    shared = Path(tmp_path_factory.getbasetemp()).parent
    path = shared / f"tap-once-{name}.pickle"
    with FileLock(f"{path}.lock"):
        if path.is_file():
            return t.cast("T", pickle.loads(path.read_bytes()))
        value = produce()
        path.write_bytes(pickle.dumps(value))
        return value


# ============================================================================ catalogs


@functools.cache
def _discovered() -> str:
    # The catalog does not depend on config (tap.discover_streams); any valid config works.
    result = run_tap(
        {"api_url": "http://127.0.0.1:9/2.0", "access_token": "discovery-only"},
        args=["--discover"],
        parse="none",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def discovered_catalog() -> dict[str, Any]:
    """The tap's catalog as `--discover` prints it (a fresh copy on every call)."""
    return t.cast("dict[str, Any]", json.loads(_discovered()))


def select_only(catalog: dict[str, Any], streams: Iterable[str]) -> dict[str, Any]:
    wanted = set(streams)
    known = {entry["tap_stream_id"] for entry in catalog["streams"]}
    assert wanted <= known, wanted - known
    for entry in catalog["streams"]:
        for meta in entry["metadata"]:
            if not meta["breadcrumb"]:
                meta["metadata"]["selected"] = entry["tap_stream_id"] in wanted
    return catalog


def select_all(catalog: dict[str, Any]) -> dict[str, Any]:
    """Every stream, including the ones not selected by default."""
    return select_only(catalog, [entry["tap_stream_id"] for entry in catalog["streams"]])


def catalog_selecting(streams: set[str] | None) -> dict[str, Any]:
    """The catalog with exactly `streams` selected (None: the default selection)."""
    catalog = discovered_catalog()
    return catalog if streams is None else select_only(catalog, streams)
