"""No secret ever reaches an output: every command, every credential kind, all output grepped.

For each credential kind (API token, access token, OAuth authorization code with an
encrypted settings file and 2-second tokens that rotate during the run, OAuth client
credentials) the test runs `--about` (text and JSON), `--discover` (the catalog), `--test`,
a sync at debug log level (pipeline steps included: their Docker registry passwords are
secrets too) and a sync that fails on a wrong credential; for the OAuth code kind also every
`tap-bitbucket-oauth` subcommand. Everything they print (stdout and stderr) is searched for
every secret value in its plain, URL-encoded and HTTP Basic (base64) forms: the credentials,
every OAuth code and token the emulator ever issued, the settings key and the registry
passwords. The one documented exception: the stdout of `get-access-token` and
`refresh-access-token` IS their token output (their stderr is still searched).
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import requests

from tap_bitbucket.redact import basic_auth_value
from tests.emulator import Emulator
from tests.harness import (
    OAUTH_CLI,
    ROOT,
    START_DATE,
    TAP,
    access_token_config,
    api_token_config,
    authorization_code,
    catalog_selecting,
    oauth_code_config,
    tap_env,
    write_json,
)

SELECTION = {"repositories", "pipelines", "pipeline_steps", "pull_requests"}
SCOPE = {
    "repositories": ["acme/web-app"],
    "max_workers": 2,
    "backoff_base_seconds": 0.05,
    "backoff_max_seconds": 0.2,
}
SETTINGS_KEY = "settings-key-that-must-stay-private"
URL_RE = re.compile(r"(https?://\S+/authorize\?\S+)")


def registry_passwords(emu: Emulator) -> list[str]:
    """The Docker registry passwords in the pipeline steps of the synced repositories."""
    found = []
    for full_name in SCOPE["repositories"]:
        for pipeline in emu.dataset.collection(f"/repositories/{full_name}/pipelines") or []:
            steps = (
                emu.dataset.collection(
                    f"/repositories/{full_name}/pipelines/{pipeline['uuid']}/steps"
                )
                or []
            )
            found += [s["image"]["password"] for s in steps if s["image"].get("password")]
    return found


class Outputs:
    """Everything the commands printed, by command."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.items: list[tuple[str, str, str]] = []  # (command, stdout, stderr)

    def run(
        self,
        name: str,
        command: list[str],
        *,
        env: dict[str, str] | None = None,
        expect_ok: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
            env=tap_env(self.tmp_path, **(env or {})),
        )
        self.items.append((name, result.stdout, result.stderr))
        if expect_ok:
            assert result.returncode == 0, (name, result.stderr[-2000:])
        else:
            assert result.returncode != 0, name
            errors = [line for line in result.stderr.splitlines() if ": error: " in line]
            assert len(errors) == 1, (name, result.stderr[-2000:])
        return result

    def tap(
        self,
        name: str,
        config: dict[str, Any],
        *args: str,
        expect_ok: bool = True,
        debug: bool = False,
        catalog: dict[str, Any] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        path = write_json(self.tmp_path / f"{name}.json", config)
        command = [*TAP, "--config", str(path), *args]
        if catalog is not None:
            command += ["--catalog", str(write_json(self.tmp_path / "catalog.json", catalog))]
        env = {"TAP_BITBUCKET_LOGLEVEL": "debug"} if debug else None
        return self.run(name, command, env=env, expect_ok=expect_ok)

    def oauth(
        self, name: str, config: dict[str, Any], *args: str, expect_ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        path = write_json(self.tmp_path / f"{name}.json", config)
        return self.run(
            name, [*OAUTH_CLI, *args, "--config", str(path), "--debug"], expect_ok=expect_ok
        )


def forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote_plus(secret, safe="")}


def assert_no_secret(
    outputs: Outputs, secrets: list[str], token_printers: tuple[str, ...] = ()
) -> None:
    secrets = [s for s in secrets if s]
    for secret in secrets:
        assert len(secret) >= 8, "a secret too short to search for"
    for name, stdout, stderr in outputs.items:
        for secret in secrets:
            for form in forms(secret):
                assert form not in stderr, f"a secret leaked into the stderr of {name}"
                if name not in token_printers:
                    assert form not in stdout, f"a secret leaked into the stdout of {name}"


def start_login(outputs: Outputs, config: dict[str, Any]) -> None:
    """`tap-bitbucket-oauth login`, driven like a browser: follow the authorize redirect
    into the tap's callback server."""
    path = write_json(outputs.tmp_path / "login.json", config)
    proc = subprocess.Popen(
        [*OAUTH_CLI, "login", "--no-browser", "--debug", "--timeout", "60", "--config", str(path)],
        cwd=ROOT,
        env=tap_env(outputs.tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            lines.put(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline:
            try:
                match = URL_RE.search(lines.get(timeout=0.2))
            except queue.Empty:
                continue
            url = match.group(1) if match else None
        assert url, "".join(seen)
        assert requests.get(url, timeout=30).status_code == 200
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    thread.join(timeout=10)
    assert proc.returncode == 0, "".join(seen)
    outputs.items.append(("login", stdout, "".join(seen)))


def configs(kind: str, emu: Emulator, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(a working config, the same with a wrong credential) for a credential kind."""
    if kind == "api_token":
        good = api_token_config(emu, start_date=START_DATE, **SCOPE)
        return good, {**good, "api_token": "ATATT3x-wrong-api-token-value-123456"}
    if kind == "access_token":
        good = access_token_config(emu, start_date=START_DATE, **SCOPE)
        return good, {**good, "access_token": "ATCTT3x-wrong-access-token-value-1234"}
    if kind == "oauth_client":
        good = {
            "api_url": emu.api_url,
            "oauth_url": emu.oauth_url,
            "auth_scheme": "oauth_client",
            "oauth_client_id": emu.credentials.oauth_client_id,
            "oauth_client_secret": emu.credentials.oauth_client_secret,
            "start_date": "2000-01-01T00:00:00Z",
            **SCOPE,
        }
        return good, {**good, "oauth_client_secret": "wrong-client-secret-value-987"}
    good = oauth_code_config(emu, tmp_path / "oauth-settings.json", key=SETTINGS_KEY, **SCOPE)
    return good, {**good, "oauth_client_secret": "wrong-client-secret-value-987"}


@pytest.mark.parametrize("kind", ["api_token", "access_token", "oauth_code", "oauth_client"])
def test_no_secret_in_any_output(
    kind: str, make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emu = make_emulator(token_lifetime_s=2)  # OAuth tokens rotate during the sync
    good, wrong = configs(kind, emu, tmp_path)
    outputs = Outputs(tmp_path)
    catalog = catalog_selecting(SELECTION)

    outputs.tap("about", good, "--about")
    about = outputs.tap("about-json", good, "--about", "--format=json")
    assert "api_token" in json.loads(about.stdout)["settings"]["properties"]
    discover = outputs.tap("discover", good, "--discover")
    assert json.loads(discover.stdout)["streams"]
    outputs.tap("test", good, "--test")
    sync = outputs.tap("sync", good, debug=True, catalog=catalog)
    if kind == "oauth_code":
        # The wrong client secret only shows when the stored access token must be
        # refreshed: let it expire (2 s), or a fast run would finish on it and exit 0.
        time.sleep(2.5)
    outputs.tap("wrong-credential", wrong, debug=True, catalog=catalog, expect_ok=False)

    # The sync did carry what must be hidden: registry credentials in pipeline steps.
    passwords = registry_passwords(emu)
    assert passwords
    steps = [
        json.loads(line)["record"]
        for line in sync.stdout.splitlines()
        if '"pipeline_steps"' in line and '"RECORD"' in line
    ]
    with_credentials = [
        s for s in steps if isinstance(s.get("image"), dict) and "username" in s["image"]
    ]
    assert len(with_credentials) == len(passwords)
    [masked] = {s["image"]["password"] for s in with_credentials}  # one placeholder
    assert masked not in passwords
    assert len(re.findall(r"\| DEBUG +\|", sync.stderr)) > 20  # debug logging was on

    token_printers: tuple[str, ...] = ()
    if kind == "oauth_code":
        token_printers = ("get-access-token", "refresh-access-token")
        url = json.loads(
            outputs.oauth("get-authorization-url", good, "get-authorization-url").stdout
        )["url"]
        assert url.startswith(emu.oauth_url)
        printed = json.loads(
            outputs.oauth(
                "get-access-token", good, "get-access-token", "--verifier", authorization_code(emu)
            ).stdout
        )
        assert printed["access_token"] and printed["refresh_token"]
        outputs.oauth("refresh-access-token", good, "refresh-access-token")
        outputs.oauth("refresh-wrong-secret", wrong, "refresh-access-token", expect_ok=False)
        start_login(outputs, good)
        assert (tmp_path / "oauth-settings.json").exists()

    secrets = [
        emu.credentials.api_token,
        emu.credentials.access_token,
        emu.credentials.oauth_client_secret,
        basic_auth_value(emu.credentials.email, emu.credentials.api_token),
        basic_auth_value(emu.credentials.oauth_client_id, emu.credentials.oauth_client_secret),
        SETTINGS_KEY,
        *passwords,
        *emu.issued_oauth_secrets(),
        *(
            str(v)
            for k, v in wrong.items()
            if k in ("api_token", "access_token", "oauth_client_secret")
        ),
    ]
    if kind.startswith("oauth"):
        assert len(emu.issued_oauth_secrets()) >= 3  # a token per run at least
    assert_no_secret(outputs, secrets, token_printers)
