"""OAuth end to end against the emulator's OAuth server: real HTTP, real processes.

Every flow of the auth issue: the web flow (``tap-bitbucket-oauth`` subcommands), the
desktop flow (driven by a test client that follows the authorize redirect into the tap's
callback server), headless verifier, client credentials, 2-second tokens that rotate during
a long run, two processes sharing one settings file, SIGKILL right after a refresh, the
one-line errors that leave the settings file untouched, and a grep of every command's
output for secrets.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tap_bitbucket import auth
from tap_bitbucket.errors import AuthError, ConfigError
from tests.emulator import Emulator, FaultRule
from tests.harness import tap_env

ROOT = Path(__file__).resolve().parents[1]
URL_RE = re.compile(r"(https?://\S+/authorize\?\S+)")


# ---------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in list(os.environ):
        if name.startswith("TAP_BITBUCKET_"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_emulator(make_emulator: Callable[..., Emulator]) -> Callable[..., Emulator]:
    """Emulators with strict refresh-token rotation unless a test asks for a grace period.

    These tests pin that the tap never depends on a refresh token it already used (the
    file always ends with the newest one, processes never burn each other's token).
    Bitbucket (and the emulator by default) accepts a just-rotated token once more for a
    short while, which would hide exactly those mistakes, so they run without the grace.
    """

    def make(**config: Any) -> Emulator:
        config.setdefault("refresh_grace_s", 0)
        return make_emulator(**config)

    return make


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def oauth_config(emu: Emulator, settings: Path | None, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "oauth_client_id": emu.credentials.oauth_client_id,
        "oauth_client_secret": emu.credentials.oauth_client_secret,
        "oauth_url": emu.oauth_url,
        "oauth_open_browser": False,
    }
    if settings is not None:
        config["oauth_settings_location"] = str(settings)
    config.update(extra)
    return config


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


def run_cli(tmp_path: Path, config: dict[str, Any], *args: str,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    path = write_config(tmp_path, config)
    return subprocess.run(
        [sys.executable, "-m", "tap_bitbucket.oauth_cli", *args, "--config", str(path)],
        cwd=ROOT, env=tap_env(tmp_path), capture_output=True, text=True, timeout=timeout,
    )


def authorize(emu: Emulator, state: str = "st", redirect_uri: str | None = None) -> str:
    """What a browser does: GET the authorize URL, read the code off the redirect."""
    params = {"client_id": emu.credentials.oauth_client_id, "response_type": "code",
              "state": state}
    if redirect_uri:
        params["redirect_uri"] = redirect_uri
    response = requests.get(emu.oauth_url + "/authorize", params=params, allow_redirects=False,
                            timeout=10)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["state"] == [state]
    return query["code"][0]


def grant(emu: Emulator, **form: str) -> requests.Response:
    """A raw token request, to check what the emulator thinks of a token."""
    return requests.post(emu.oauth_url + "/access_token", data=form, timeout=10,
                         auth=(emu.credentials.oauth_client_id,
                               emu.credentials.oauth_client_secret))


def refresh_works(emu: Emulator, refresh_token: str) -> bool:
    """True when the emulator accepts this refresh token (it is spent afterwards)."""
    return grant(emu, grant_type="refresh_token", refresh_token=refresh_token).status_code == 200


def api_ok(emu: Emulator, access_token: str) -> bool:
    response = requests.get(emu.api_url + "/user", timeout=10,
                            headers={"Authorization": f"Bearer {access_token}"})
    return response.status_code == 200


def get_user(emu: Emulator, authenticator: auth.BitbucketAuth,
             session: requests.Session | None = None) -> tuple[int, int]:
    """One authenticated GET the way the tap does it: refresh once on 401 and retry.

    Returns (final status, number of 401s seen)."""
    send = (session or requests).get
    response = send(emu.api_url + "/user", auth=authenticator, timeout=10)
    unauthorized = 0
    if response.status_code == 401:
        unauthorized += 1
        if authenticator.handle_unauthorized(response):
            response = send(emu.api_url + "/user", auth=authenticator, timeout=10)
    return response.status_code, unauthorized


def token_requests(emu: Emulator) -> list[Any]:
    return [e for e in emu.request_log if e.path.endswith("/access_token")]


def settings_tokens(path: Path, key: str | None = None) -> auth.TokenSet:
    tokens = auth.OAuthSettingsStore(str(path), key).read()
    assert tokens is not None
    return tokens


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("tap-bitbucket-oauth: error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def assert_no_secret(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret, "empty secret in the list"
        assert secret not in text, f"a secret leaked into {where}"


def seed_settings(emu: Emulator, path: Path, key: str | None = None,
                  expired: bool = False) -> auth.TokenSet:
    """Write a settings file holding fresh tokens issued by the emulator."""
    issued = emu.issue_oauth_tokens()
    tokens = auth.TokenSet.from_response(issued, requested_at=time.time(),
                                         client_id=emu.credentials.oauth_client_id)
    if expired:
        tokens = auth.TokenSet(**{**tokens.__dict__, "expires_at": time.time() - 10})
    auth.OAuthSettingsStore(str(path), key).write(tokens)
    return tokens


class StderrLines:
    """Collect a subprocess's stderr lines in a thread, so the test can wait for one."""

    def __init__(self, stream: Any) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.all: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.all.append(line)
            self.lines.put(line)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            match = pattern.search(line)
            if match:
                return match
        raise AssertionError("expected line never appeared:\n" + "".join(self.all))

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.all)


# ---------------------------------------------------------------------------- web flow


def test_web_flow_subcommands(make_emulator: Callable[..., Emulator], tmp_path: Path) -> None:
    emu = make_emulator()
    settings = tmp_path / "oauth.json"
    config = oauth_config(emu, settings)

    result = run_cli(tmp_path, config, "get-authorization-url", "--state", "abc123")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["state"] == "abc123"
    assert "redirect_uri" not in out["url"]  # the default callback is the registered one
    browser = requests.get(out["url"], allow_redirects=False, timeout=10)
    assert browser.status_code == 302
    location = urlsplit(browser.headers["Location"])
    assert f"{location.scheme}://{location.netloc}" == "http://localhost:33333"
    query = parse_qs(location.query)
    assert query["state"] == ["abc123"]
    code = query["code"][0]

    result = run_cli(tmp_path, config, "get-access-token", "--verifier", code)
    assert result.returncode == 0, result.stderr
    tokens = json.loads(result.stdout)
    assert set(tokens) >= {"access_token", "refresh_token", "expires_in", "token_type", "scopes"}
    assert tokens["expires_in"] == 3600 and tokens["token_type"] == "bearer"
    assert "repository" in tokens["scopes"]
    assert api_ok(emu, tokens["access_token"])
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    saved = settings_tokens(settings)
    assert saved.refresh_token == tokens["refresh_token"]
    assert saved.access_token == tokens["access_token"]
    assert saved.client_id == emu.credentials.oauth_client_id

    # The verifier is single-use: a second exchange is a clear error, the file is kept.
    before = settings.read_bytes()
    again = run_cli(tmp_path, config, "get-access-token", "--verifier", code)
    assert_one_line_error(again, "verifier", "get-authorization-url")
    assert settings.read_bytes() == before

    # refresh-access-token (refresh token taken from the file) rotates it.
    result = run_cli(tmp_path, config, "refresh-access-token")
    assert result.returncode == 0, result.stderr
    rotated = json.loads(result.stdout)
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert rotated["access_token"] != tokens["access_token"]
    assert settings_tokens(settings).refresh_token == rotated["refresh_token"]
    assert api_ok(emu, rotated["access_token"])
    assert not refresh_works(emu, tokens["refresh_token"])  # the old one is spent

    # An explicit, spent refresh token: one line, the file stays as it was.
    before = settings.read_bytes()
    stale = run_cli(tmp_path, config, "refresh-access-token",
                    "--refresh-token", tokens["refresh_token"])
    line = assert_one_line_error(stale, "refresh token was rejected", "tap-bitbucket-oauth login")
    assert tokens["refresh_token"] not in line
    assert settings.read_bytes() == before
    assert refresh_works(emu, settings_tokens(settings).refresh_token or "")


def test_web_flow_with_a_custom_callback_and_no_settings_file(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    callback = f"http://127.0.0.1:{free_port()}/oauth/callback"
    emu = make_emulator(callback_url=callback)
    config = oauth_config(emu, None)
    result = run_cli(tmp_path, config, "get-authorization-url", "--callback-url", callback)
    assert result.returncode == 0, result.stderr
    url = json.loads(result.stdout)["url"]
    assert "redirect_uri=" in url
    location = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
    assert location.startswith(callback + "?")
    # The whole callback URL is accepted as the verifier.
    result = run_cli(tmp_path, config, "get-access-token", "--verifier", location,
                     "--callback-url", callback)
    assert result.returncode == 0, result.stderr
    tokens = json.loads(result.stdout)
    assert tokens["settings_location"] is None
    assert api_ok(emu, tokens["access_token"])
    assert not (tmp_path / "xdg").exists()  # no location set: no file written anywhere
    # refresh-access-token with an explicit token and no settings file.
    result = run_cli(tmp_path, config, "refresh-access-token",
                     "--refresh-token", tokens["refresh_token"])
    assert result.returncode == 0, result.stderr
    assert api_ok(emu, json.loads(result.stdout)["access_token"])


# ---------------------------------------------------------------------------- desktop flow


def _wait_for_url(capsys: pytest.CaptureFixture[str], worker: threading.Thread) -> str:
    deadline = time.monotonic() + 30
    seen = ""
    while time.monotonic() < deadline:
        seen += capsys.readouterr().err
        match = URL_RE.search(seen)
        if match:
            return match.group(1)
        assert worker.is_alive(), "prepare() ended before printing the URL"
        time.sleep(0.02)
    raise AssertionError("the authorization URL was never printed")


def test_desktop_flow_prepare(make_emulator: Callable[..., Emulator], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    callback = f"http://127.0.0.1:{port}/callback"
    emu = make_emulator(callback_url=callback)
    settings = tmp_path / "desktop.json"
    config = oauth_config(emu, settings, initiate_oauth="GETANDREFRESH", callback_url=callback,
                          oauth_callback_timeout=30)
    authenticator = auth.build_authenticator(config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            authenticator.prepare()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    url = _wait_for_url(capsys, worker)
    state = parse_qs(urlsplit(url).query)["state"][0]
    assert len(state) >= 32

    # A forged callback (wrong or missing state) is rejected and the flow keeps waiting.
    forged = requests.get(callback, params={"code": "forged", "state": "not-the-state"},
                          timeout=10)
    assert forged.status_code == 400 and "state" in forged.text
    assert requests.get(callback, params={"code": "forged"}, timeout=10).status_code == 400
    assert requests.get(f"http://127.0.0.1:{port}/other", timeout=10).status_code == 404
    assert worker.is_alive()
    assert token_requests(emu) == []  # nothing was exchanged for the forged callbacks

    # The "browser": follow the authorize redirect into the tap's callback server.
    page = requests.get(url, timeout=30)
    assert page.status_code == 200 and "authorized" in page.text
    assert page.history and page.history[0].status_code == 302
    worker.join(timeout=30)
    assert not worker.is_alive() and errors == []
    assert len(token_requests(emu)) == 1

    saved = settings_tokens(settings)
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    assert saved.refresh_token and saved.access_token
    assert get_user(emu, authenticator) == (200, 0)
    # A later run refreshes from the file and needs no browser.
    later = auth.build_authenticator({**config, "oauth_callback_timeout": 0.5})
    later.prepare()
    assert get_user(emu, later) == (200, 0)
    assert len(token_requests(emu)) == 1  # tokens were still fresh: no refresh needed
    # The callback server is gone: the port can be bound again.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_desktop_flow_times_out_clearly(make_emulator: Callable[..., Emulator],
                                        tmp_path: Path) -> None:
    port = free_port()
    emu = make_emulator(callback_url=f"http://localhost:{port}")
    settings = tmp_path / "never.json"
    config = oauth_config(emu, settings, initiate_oauth="GETANDREFRESH",
                          callback_url=f"http://localhost:{port}", oauth_callback_timeout=1)
    started = time.monotonic()
    with pytest.raises(AuthError) as info:
        auth.build_authenticator(config).prepare()
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "\n" not in message and "oauth_callback_timeout" in message
    assert not settings.exists()


def test_desktop_flow_port_in_use(make_emulator: Callable[..., Emulator],
                                  tmp_path: Path) -> None:
    emu = make_emulator()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = oauth_config(emu, tmp_path / "s.json", initiate_oauth="GETANDREFRESH",
                              callback_url=f"http://127.0.0.1:{port}")
        with pytest.raises(AuthError) as info:
            auth.build_authenticator(config).prepare()
    assert "callback_url" in str(info.value) and str(port) in str(info.value)


def test_desktop_flow_refuses_non_loopback(make_emulator: Callable[..., Emulator],
                                           tmp_path: Path) -> None:
    emu = make_emulator()
    config = oauth_config(emu, tmp_path / "s.json", initiate_oauth="GETANDREFRESH",
                          callback_url="http://0.0.0.0:33333")
    with pytest.raises(ConfigError) as info:
        auth.build_authenticator(config)
    assert info.value.setting == "callback_url" and "loopback" in str(info.value)
    result = run_cli(tmp_path, oauth_config(emu, tmp_path / "s.json"), "login",
                     "--callback-url", "http://192.0.2.1:8080/cb")
    assert_one_line_error(result, "callback_url", "loopback")


def test_login_subcommand_encrypted(make_emulator: Callable[..., Emulator],
                                    tmp_path: Path) -> None:
    port = free_port()
    callback = f"http://localhost:{port}/cb"
    emu = make_emulator(callback_url=callback)
    settings = tmp_path / "enc.json"
    key = "login-passphrase-7734"
    config = oauth_config(emu, settings, oauth_settings_key=key, callback_url=callback)
    config_path = write_config(tmp_path, config)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tap_bitbucket.oauth_cli", "login", "--no-browser",
         "--timeout", "60", "--config", str(config_path)],
        cwd=ROOT, env=tap_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines = StderrLines(proc.stderr)
        url = lines.wait_for(URL_RE).group(1)
        page = requests.get(url, timeout=30)  # follows the redirect into the callback server
        assert page.status_code == 200
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = lines.text()
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["settings_location"] == str(settings) and summary["encrypted"] is True
    saved = settings_tokens(settings, key)
    assert saved.access_token and saved.refresh_token
    raw = settings.read_bytes()
    secrets = [saved.access_token, saved.refresh_token, key,
               emu.credentials.oauth_client_secret]
    assert_no_secret(raw.decode(), secrets[:3], "the encrypted settings file")
    assert_no_secret(stdout, secrets, "login stdout")
    assert_no_secret(stderr, secrets, "login stderr")
    assert api_ok(emu, saved.access_token)


# ---------------------------------------------------------------------------- headless


def test_headless_verifier_option_1(make_emulator: Callable[..., Emulator],
                                    tmp_path: Path) -> None:
    emu = make_emulator()
    settings = tmp_path / "headless.json"
    code = authorize(emu)
    first = oauth_config(emu, settings, initiate_oauth="REFRESH", oauth_verifier=code)
    authenticator = auth.build_authenticator(first)
    authenticator.prepare()
    assert get_user(emu, authenticator) == (200, 0)
    assert [e.status for e in token_requests(emu)] == [200]
    saved = settings_tokens(settings)
    assert saved.verifier_sha256 == auth.verifier_digest(code)

    # Later runs: client credentials + file only (scheme inferred from the explicit location).
    later = oauth_config(emu, settings)
    assert auth.infer_auth_scheme(later) == "oauth_code"
    again = auth.build_authenticator(later)
    again.prepare()
    assert get_user(emu, again) == (200, 0)
    # ...and a config that still carries the spent verifier does not break them either.
    stale = auth.build_authenticator(first)
    stale.prepare()
    assert get_user(emu, stale) == (200, 0)
    assert [e.status for e in token_requests(emu)] == [200]  # no exchange, no refresh

    # A file made another way (no verifier fingerprint) + a spent verifier: still works.
    seed_settings(emu, settings)
    fallback = auth.build_authenticator(first)
    fallback.prepare()
    assert get_user(emu, fallback) == (200, 0)
    assert settings_tokens(settings).verifier_sha256 == auth.verifier_digest(code)


def test_headless_option_2_file_moves_between_machines(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emu = make_emulator()
    made = tmp_path / "machine-a" / "oauth.json"
    seed_settings(emu, made, key="shared-key-99", expired=True)
    moved = tmp_path / "machine-b" / "copied.json"
    moved.parent.mkdir()
    moved.write_bytes(made.read_bytes())
    config = oauth_config(emu, moved, oauth_settings_key="shared-key-99")
    code = textwrap.dedent("""
        import json, sys, requests
        from tap_bitbucket.auth import build_authenticator
        config, url = json.loads(sys.argv[1]), sys.argv[2]
        a = build_authenticator(config)
        a.prepare()
        print(requests.get(url, auth=a, timeout=10).status_code)
    """)
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(config), emu.api_url + "/user"],
        cwd=ROOT, env=tap_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "200"
    assert refresh_works(emu, settings_tokens(moved, "shared-key-99").refresh_token or "")


# ---------------------------------------------------------------------------- client credentials


def test_client_credentials(make_emulator: Callable[..., Emulator], tmp_path: Path) -> None:
    emu = make_emulator(token_lifetime_s=2)
    config = oauth_config(emu, None)
    authenticator = auth.build_authenticator(config)
    assert authenticator.scheme == "oauth_client"
    authenticator.prepare()
    grants = token_requests(emu)
    assert len(grants) == 1
    statuses = []
    end = time.monotonic() + 4
    with requests.Session() as session:
        while time.monotonic() < end:
            statuses.append(get_user(emu, authenticator, session))
            time.sleep(0.05)
    assert {s for s, _ in statuses} == {200}
    assert sum(u for _, u in statuses) == 0
    assert len(token_requests(emu)) >= 3  # renewed before each expiry
    assert not (tmp_path / "xdg").exists()  # memory only: no settings file


def test_client_credentials_revoked_mid_run(make_emulator: Callable[..., Emulator]) -> None:
    """A revoked token mid-run: the 401 triggers one new token and the retry succeeds.
    The token lives an hour here, so no proactive renewal can replace the revoked token
    before the request (with 2-second tokens a loaded machine made this racy)."""
    emu = make_emulator()
    authenticator = auth.build_authenticator(oauth_config(emu, None))
    authenticator.prepare()
    assert get_user(emu, authenticator) == (200, 0)
    current = [v for v in authenticator.secret_values() if len(v) > 60][-1]
    assert emu.revoke_token(current)
    assert get_user(emu, authenticator) == (200, 1)
    assert len(token_requests(emu)) == 2


# ---------------------------------------------------------------------------- short tokens


def test_two_second_tokens_rotate_without_failures(
    make_emulator: Callable[..., Emulator], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emu = make_emulator(token_lifetime_s=2)
    settings = tmp_path / "short.json"
    seed_settings(emu, settings, key="k-short")
    config = oauth_config(emu, settings, oauth_settings_key="k-short")
    authenticator = auth.build_authenticator(config)
    authenticator.prepare()
    results: list[tuple[int, int]] = []
    lock = threading.Lock()

    def worker() -> None:
        end = time.monotonic() + 6
        with requests.Session() as session:
            while time.monotonic() < end:
                outcome = get_user(emu, authenticator, session)
                with lock:
                    results.append(outcome)
                time.sleep(0.01)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) > 100
    assert [s for s, _ in results if s != 200] == []
    assert sum(u for _, u in results) == 0  # refreshed before expiry: not even a 401
    refreshes = [e for e in token_requests(emu) if e.status == 200]
    assert len(refreshes) >= 4  # tokens expired and rotated several times
    assert [e for e in token_requests(emu) if e.status != 200] == []
    # Mid-run revocation of the live access token: refresh once, retry, go on.
    fresh = auth.build_authenticator(config)
    fresh.prepare()
    live = settings_tokens(settings, "k-short").access_token or ""
    emu.revoke_token(live)
    assert get_user(emu, fresh) == (200, 1)
    # The file ends with a refresh token that works.
    assert refresh_works(emu, settings_tokens(settings, "k-short").refresh_token or "")
    # Every token that lived during the run, and the key, stay out of the log.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Refreshed the OAuth access token" in logged
    secrets = [v for v in (*authenticator.secret_values(), *fresh.secret_values()) if v]
    assert len(secrets) > 8 and "k-short" in secrets
    assert_no_secret(logged, secrets, "the log")


def test_token_endpoint_faults_are_retried(make_emulator: Callable[..., Emulator],
                                           tmp_path: Path) -> None:
    emu = make_emulator()
    settings = tmp_path / "f.json"
    seed_settings(emu, settings, expired=True)
    # Faults answered before the grant is processed: a retry with the same token is safe.
    for kind in ("503", "429", "502"):
        emu.add_fault(FaultRule(kind, path_regex="/access_token", count=1))
    config = oauth_config(emu, settings, backoff_base_seconds=0.05, backoff_max_seconds=0.2)
    authenticator = auth.build_authenticator(config)
    authenticator.prepare()
    assert get_user(emu, authenticator) == (200, 0)
    assert [(e.fault, e.status) for e in token_requests(emu)] == [
        ("503", 503), ("429", 429), ("502", 502), (None, 200)
    ]
    assert refresh_works(emu, settings_tokens(settings).refresh_token or "")


def test_client_credentials_survive_lost_responses(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator()
    for kind in ("reset", "truncate", "500"):
        emu.add_fault(FaultRule(kind, path_regex="/access_token", count=1))
    config = oauth_config(emu, None, backoff_base_seconds=0.05, backoff_max_seconds=0.2)
    authenticator = auth.build_authenticator(config)
    authenticator.prepare()
    assert get_user(emu, authenticator) == (200, 0)
    assert [e.fault for e in token_requests(emu)] == ["reset", "truncate", "500", None]


def test_lost_refresh_response_is_explained(make_emulator: Callable[..., Emulator],
                                            tmp_path: Path) -> None:
    """Strict rotation: the emulator rotates the refresh token, then loses the answer
    (truncate): nothing can recover the new token, so the run ends with one line that says
    why and what to do."""
    emu = make_emulator()
    settings = tmp_path / "lost.json"
    seed_settings(emu, settings, expired=True)
    before = settings.read_bytes()
    emu.add_fault(FaultRule("truncate", path_regex="/access_token", count=1))
    config = oauth_config(emu, settings, backoff_base_seconds=0.05)
    _expect_prepare_error(config, "was lost", "tap-bitbucket-oauth login")
    assert settings.read_bytes() == before


@pytest.mark.parametrize(("kind", "grace"), [("reset", 0), ("truncate", 30)])
def test_lost_refresh_response_is_recovered(make_emulator: Callable[..., Emulator],
                                            tmp_path: Path, kind: str, grace: float) -> None:
    """A reset on the token endpoint drops the request before the server acts on it, and a
    truncated answer is retried while Bitbucket still accepts the just-rotated token: the
    retry refreshes, and the file ends with a refresh token that works."""
    emu = make_emulator(refresh_grace_s=grace)
    settings = tmp_path / "lost.json"
    seed_settings(emu, settings, expired=True)
    rule = emu.add_fault(FaultRule(kind, path_regex="/access_token", count=1))
    config = oauth_config(emu, settings, backoff_base_seconds=0.05)
    authenticator = auth.build_authenticator(config)
    authenticator.prepare()
    assert rule.fired == 1
    assert get_user(emu, authenticator) == (200, 0)
    assert [e.status for e in token_requests(emu)] == [0 if kind == "reset" else 200, 200]
    assert refresh_works(emu, settings_tokens(settings).refresh_token or "")


# ---------------------------------------------------------------------------- processes

WORKER = textwrap.dedent("""
    import json, sys, time, requests
    from tap_bitbucket.auth import build_authenticator
    config, url, duration = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    a = build_authenticator(config)
    a.prepare()
    ok = failed = unauthorized = 0
    session = requests.Session()
    print("ready", flush=True)
    end = time.monotonic() + duration
    while time.monotonic() < end:
        r = session.get(url, auth=a, timeout=10)
        if r.status_code == 401:
            unauthorized += 1
            if a.handle_unauthorized(r):
                r = session.get(url, auth=a, timeout=10)
        if r.status_code == 200:
            ok += 1
        else:
            failed += 1
        time.sleep(0.01)
    print(json.dumps({"ok": ok, "failed": failed, "unauthorized": unauthorized}), flush=True)
""")


def start_worker(tmp_path: Path, config: dict[str, Any], url: str,
                 duration: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(config), url, str(duration)],
        cwd=ROOT, env=tap_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_share_one_settings_file(make_emulator: Callable[..., Emulator],
                                               tmp_path: Path) -> None:
    emu = make_emulator(token_lifetime_s=2)
    settings = tmp_path / "shared.json"
    seed_settings(emu, settings)
    config = oauth_config(emu, settings)
    workers = [start_worker(tmp_path, config, emu.api_url + "/user", 6) for _ in range(2)]
    summaries = []
    for proc in workers:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    for summary in summaries:
        assert summary["failed"] == 0 and summary["ok"] > 50, summaries
        assert summary["unauthorized"] == 0, summaries
    refreshes = token_requests(emu)
    assert len(refreshes) >= 4
    # Nobody burned a rotated refresh token: every refresh succeeded.
    assert [e.status for e in refreshes if e.status != 200] == []
    assert refresh_works(emu, settings_tokens(settings).refresh_token or "")


def test_sigkill_right_after_a_refresh_leaves_working_tokens(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emu = make_emulator(token_lifetime_s=2)
    settings = tmp_path / "killed.json"
    for delay in (0.0, 0.05, 0.3):
        seed_settings(emu, settings, key="kill-key")
        config = oauth_config(emu, settings, oauth_settings_key="kill-key")
        before = settings.read_bytes()
        proc = start_worker(tmp_path, config, emu.api_url + "/user", 60)
        try:
            deadline = time.monotonic() + 30
            while settings.read_bytes() == before:
                assert time.monotonic() < deadline, "the worker never refreshed"
                assert proc.poll() is None, proc.communicate()[1]
                time.sleep(0.002)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.communicate(timeout=10)
        saved = settings_tokens(settings, "kill-key")  # parseable, decryptable
        assert saved.refresh_token and saved.access_token
        assert refresh_works(emu, saved.refresh_token)


# ---------------------------------------------------------------------------- bad input


def _expect_prepare_error(config: dict[str, Any], *words: str) -> str:
    with pytest.raises(AuthError) as info:
        auth.build_authenticator(config).prepare()
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


def test_revoked_refresh_token(make_emulator: Callable[..., Emulator], tmp_path: Path) -> None:
    emu = make_emulator()
    settings = tmp_path / "revoked.json"
    tokens = seed_settings(emu, settings, expired=True)
    emu.revoke_token(tokens.refresh_token or "")
    before = settings.read_bytes()
    message = _expect_prepare_error(oauth_config(emu, settings), "refresh token",
                                    "tap-bitbucket-oauth login")
    assert tokens.refresh_token not in message
    assert settings.read_bytes() == before
    result = run_cli(tmp_path, oauth_config(emu, settings), "refresh-access-token")
    assert_one_line_error(result, "invalid_grant")
    assert settings.read_bytes() == before


def test_wrong_client_secret(make_emulator: Callable[..., Emulator], tmp_path: Path) -> None:
    emu = make_emulator()
    settings = tmp_path / "s.json"
    seed_settings(emu, settings, expired=True)
    before = settings.read_bytes()
    config = oauth_config(emu, settings, oauth_client_secret="definitely-wrong-secret")
    message = _expect_prepare_error(config, "oauth_client_id", "oauth_client_secret")
    assert "definitely-wrong-secret" not in message
    assert settings.read_bytes() == before
    result = run_cli(tmp_path, config, "refresh-access-token")
    line = assert_one_line_error(result, "invalid_client")
    assert "definitely-wrong-secret" not in result.stderr + line
    assert settings.read_bytes() == before
    client = oauth_config(emu, None, oauth_client_secret="definitely-wrong-secret")
    with pytest.raises(AuthError):
        auth.build_authenticator(client).prepare()


@pytest.mark.parametrize("damage", ["corrupt", "wrong_key"])
def test_unusable_settings_file(make_emulator: Callable[..., Emulator], tmp_path: Path,
                                damage: str) -> None:
    emu = make_emulator()
    settings = tmp_path / "s.json"
    seed_settings(emu, settings, key="the-right-key", expired=True)
    if damage == "corrupt":
        settings.write_bytes(settings.read_bytes()[:40])
        key = "the-right-key"
    else:
        key = "a-wrong-key"
    before = settings.read_bytes()
    config = oauth_config(emu, settings, oauth_settings_key=key)
    message = _expect_prepare_error(config, str(settings))
    assert "the-right-key" not in message and "a-wrong-key" not in message
    assert token_requests(emu) == []  # nothing was refreshed (no token burned)
    result = run_cli(tmp_path, config, "refresh-access-token")
    assert_one_line_error(result, str(settings))
    assert settings.read_bytes() == before
    assert token_requests(emu) == []


def test_unreachable_oauth_server(make_emulator: Callable[..., Emulator],
                                  tmp_path: Path) -> None:
    emu = make_emulator()
    settings = tmp_path / "s.json"
    seed_settings(emu, settings, expired=True)
    before = settings.read_bytes()
    port = free_port()
    config = oauth_config(emu, settings, oauth_url=f"http://127.0.0.1:{port}/site/oauth2",
                          max_retries=2, backoff_base_seconds=0.05)
    _expect_prepare_error(config, f"127.0.0.1:{port}", "oauth_url")
    assert settings.read_bytes() == before


def test_off_mode_never_refreshes(make_emulator: Callable[..., Emulator],
                                  tmp_path: Path) -> None:
    emu = make_emulator()
    issued = emu.issue_oauth_tokens()
    config = {"initiate_oauth": "OFF", "oauth_access_token": issued["access_token"],
              "oauth_url": emu.oauth_url}
    authenticator = auth.build_authenticator(config)
    authenticator.prepare()
    assert get_user(emu, authenticator) == (200, 0)
    emu.revoke_token(issued["access_token"])
    assert get_user(emu, authenticator) == (401, 1)
    assert token_requests(emu) == []
    assert "initiate_oauth is OFF" in authenticator.unauthorized_message()


# ---------------------------------------------------------------------------- secrets


def test_no_secret_in_any_command_output(make_emulator: Callable[..., Emulator],
                                         tmp_path: Path) -> None:
    port = free_port()
    callback = f"http://127.0.0.1:{port}/cb"
    emu = make_emulator(callback_url=callback)
    settings = tmp_path / "secret.json"
    key = "settings-key-do-not-print"
    config = oauth_config(emu, settings, oauth_settings_key=key, callback_url=callback)
    client_secret = emu.credentials.oauth_client_secret
    always_secret = [client_secret, key]
    outputs: list[tuple[str, str, str]] = []  # (command, stdout, stderr)

    def run(*args: str, cfg: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        result = run_cli(tmp_path, cfg or config, *args, "--debug")
        outputs.append((" ".join(args), result.stdout, result.stderr))
        return result

    result = run("get-authorization-url")
    url = json.loads(result.stdout)["url"]
    code = parse_qs(urlsplit(
        requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
    ).query)["code"][0]
    first = json.loads(run("get-access-token", "--verifier", code).stdout)
    second = json.loads(run("refresh-access-token").stdout)
    assert first["access_token"] and second["access_token"]

    # login, in debug mode, driven through the callback server.
    config_path = write_config(tmp_path, config, "login.json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tap_bitbucket.oauth_cli", "login", "--debug", "--config",
         str(config_path)],
        cwd=ROOT, env=tap_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines = StderrLines(proc.stderr)
    login_url = lines.wait_for(URL_RE).group(1)
    assert requests.get(login_url, timeout=30).status_code == 200
    login_out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    outputs.append(("login", login_out, lines.text()))
    third = settings_tokens(settings, key)

    # Failures print their one line (and, with --debug, a traceback): still no secret.
    emu.revoke_token(first["refresh_token"])
    run("refresh-access-token", "--refresh-token", first["refresh_token"])
    wrong = {**config, "oauth_client_secret": "wrong-client-secret-value"}
    run("refresh-access-token", cfg=wrong)
    run("get-access-token", "--verifier", code)  # spent code
    run("refresh-access-token", cfg={**config, "oauth_settings_key": "wrong-key-value-1"})

    tokens = [first["access_token"], first["refresh_token"], second["access_token"],
              second["refresh_token"], third.access_token or "", third.refresh_token or ""]
    every_secret = [*always_secret, *tokens, code, "wrong-client-secret-value",
                    "wrong-key-value-1"]
    for command, stdout, stderr in outputs:
        assert_no_secret(stderr, every_secret, f"stderr of {command}")
        printed = [*always_secret, "wrong-client-secret-value", "wrong-key-value-1"]
        if command.startswith(("get-access-token", "refresh-access-token")):
            # These print tokens on stdout by design, but only the ones they obtained.
            assert_no_secret(stdout, printed, f"stdout of {command}")
        else:
            assert_no_secret(stdout, every_secret, f"stdout of {command}")
    assert len(outputs) == 8
    assert_no_secret(settings.read_text(), [*tokens, key], "the encrypted settings file")


def test_console_script_entry_point() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^tap-bitbucket-oauth = "tap_bitbucket.oauth_cli:main"$', pyproject, re.M)
    result = subprocess.run([sys.executable, "-m", "tap_bitbucket.oauth_cli", "--help"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("get-authorization-url", "get-access-token", "refresh-access-token",
                    "login"):
        assert command in result.stdout
