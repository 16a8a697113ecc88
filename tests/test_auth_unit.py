"""Pure-logic tests of tap_bitbucket.auth / redact / oauth_cli: no HTTP involved."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tap_bitbucket import auth, oauth_cli
from tap_bitbucket.errors import AuthError, ConfigError
from tap_bitbucket.redact import MASK, basic_auth_value, install_redaction, redact

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default settings path points into tmp: tests never see ~/.config."""
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    for name in list(os.environ):
        if name.startswith("TAP_BITBUCKET_"):
            monkeypatch.delenv(name)
    return home


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text.strip() == text
    return text


# ---------------------------------------------------------------------------- settings

CLIENT = {"oauth_client_id": "cid", "oauth_client_secret": "csecret-123"}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"access_token": "tok"}, "access_token"),
        ({"access_token": "tok", "username": "a@b.c", "api_token": "t"}, "access_token"),
        ({"username": "a@b.c", "api_token": "tok"}, "api_token"),
        ({**CLIENT}, "oauth_client"),
        ({**CLIENT, "oauth_refresh_token": "r"}, "oauth_code"),
        ({**CLIENT, "oauth_access_token": "a"}, "oauth_code"),
        ({**CLIENT, "oauth_verifier": "v"}, "oauth_code"),
        ({**CLIENT, "initiate_oauth": "GETANDREFRESH"}, "oauth_code"),
        ({**CLIENT, "oauth_settings_location": "/tmp/x.json"}, "oauth_code"),
        ({"oauth_access_token": "a", "initiate_oauth": "OFF"}, "oauth_code"),
        ({**CLIENT, "auth_scheme": "oauth_client", "oauth_verifier": "v"}, "oauth_client"),
        ({"auth_scheme": "API_TOKEN", "username": "a@b.c", "api_token": "t"}, "api_token"),
        ({"access_token": "", "username": "a@b.c", "api_token": "t"}, "api_token"),
        ({**CLIENT, "callback_url": "http://localhost:1"}, "oauth_client"),
    ],
)
def test_scheme_inference(config: dict[str, Any], expected: str) -> None:
    assert auth.infer_auth_scheme(config) == expected


@pytest.mark.unit
def test_inference_uses_the_default_settings_file(_isolated_config_home: Path) -> None:
    assert auth.infer_auth_scheme(CLIENT) == "oauth_client"
    path = Path(auth.default_settings_location())
    assert path == _isolated_config_home / "tap-bitbucket" / "oauth-settings.json"
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    assert auth.infer_auth_scheme(CLIENT) == "oauth_code"


@pytest.mark.unit
def test_default_location_without_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert auth.default_settings_location() == str(
        tmp_path / ".config" / "tap-bitbucket" / "oauth-settings.json"
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    ("config", "setting"),
    [
        ({}, "auth_scheme"),
        ({"auth_scheme": "password"}, "auth_scheme"),
        ({"username": "a@b.c"}, "api_token"),
        ({"api_token": "t"}, "username"),
        ({"oauth_client_id": "c"}, "oauth_client_secret"),
        ({"oauth_client_secret": "c"}, "oauth_client_id"),
        ({"username": 12, "api_token": "t"}, "username"),
    ],
)
def test_inference_errors_name_the_setting(config: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        auth.infer_auth_scheme(config)
    assert info.value.setting == setting
    one_line(info.value)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("config", "setting", "words"),
    [
        ({"username": "jdoe", "api_token": "t"}, "username", "email"),
        ({"auth_scheme": "api_token", "username": "a@b.c"}, "api_token", "required"),
        ({"auth_scheme": "access_token"}, "access_token", "required"),
        ({"auth_scheme": "oauth_client", "oauth_client_id": "c"}, "oauth_client_secret", ""),
        ({**CLIENT, "initiate_oauth": "SOMETIMES"}, "initiate_oauth", "OFF, REFRESH"),
        ({"initiate_oauth": "OFF", **CLIENT}, "oauth_access_token", "OFF"),
        (
            {**CLIENT, "initiate_oauth": "GETANDREFRESH", "callback_url": "http://example.com:80"},
            "callback_url",
            "loopback",
        ),
        (
            {**CLIENT, "initiate_oauth": "GETANDREFRESH", "callback_url": "https://localhost:1"},
            "callback_url",
            "http",
        ),
        (
            {**CLIENT, "oauth_verifier": "v", "oauth_url": "http://proxy.example.com/oauth2"},
            "oauth_url",
            "https",
        ),
        ({**CLIENT, "oauth_verifier": "v", "oauth_url": "ftp://x"}, "oauth_url", "http"),
        ({**CLIENT, "oauth_verifier": "v", "callback_url": "nonsense"}, "callback_url", ""),
        (
            {**CLIENT, "oauth_verifier": "v", "oauth_callback_timeout": 0},
            "oauth_callback_timeout",
            "greater than 0",
        ),
        (
            {**CLIENT, "oauth_verifier": "v", "oauth_refresh_margin": -1},
            "oauth_refresh_margin",
            "at least 0",
        ),
        (
            {**CLIENT, "oauth_verifier": "v", "oauth_open_browser": "maybe"},
            "oauth_open_browser",
            "true or false",
        ),
        ({**CLIENT, "initiate_oauth": "REFRESH"}, "oauth_settings_location", "login"),
        ({"oauth_verifier": "v"}, "oauth_client_id", ""),
    ],
)
def test_validate_auth_config(config: dict[str, Any], setting: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        auth.validate_auth_config(config)
    assert info.value.setting == setting
    assert words in one_line(info.value)


@pytest.mark.unit
@pytest.mark.parametrize(
    "config",
    [
        {"username": "someone@example.com", "api_token": "t"},
        {"access_token": "t"},
        {**CLIENT},
        {**CLIENT, "oauth_verifier": "v"},
        {**CLIENT, "initiate_oauth": "getandrefresh", "callback_url": "http://127.0.0.1:5000/cb"},
        {**CLIENT, "initiate_oauth": "GETANDREFRESH", "callback_url": "http://[::1]:5000"},
        {"initiate_oauth": "OFF", "oauth_access_token": "a"},
        {**CLIENT, "oauth_refresh_token": "r", "oauth_url": "http://127.0.0.1:9/site/oauth2"},
    ],
)
def test_validate_accepts(config: dict[str, Any]) -> None:
    auth.validate_auth_config(config)


@pytest.mark.unit
def test_auth_properties_declare_every_setting() -> None:
    props = {p.name: p for p in auth.AUTH_PROPERTIES}
    expected = {
        "auth_scheme",
        "username",
        "api_token",
        "access_token",
        "oauth_client_id",
        "oauth_client_secret",
        "oauth_access_token",
        "oauth_refresh_token",
        "oauth_verifier",
        "initiate_oauth",
        "oauth_settings_location",
        "oauth_settings_key",
        "callback_url",
        "oauth_url",
        "oauth_callback_timeout",
        "oauth_open_browser",
        "oauth_refresh_margin",
    }
    assert set(props) == expected
    secret = {name for name, p in props.items() if p.secret}
    assert secret == {
        "api_token",
        "access_token",
        "oauth_client_secret",
        "oauth_access_token",
        "oauth_refresh_token",
        "oauth_verifier",
        "oauth_settings_key",
    }
    for name, prop in props.items():
        schema = prop.to_dict()[name]
        assert len(schema.get("description", "")) > 20, name
        if name in secret:
            assert schema["secret"] is True and schema["writeOnly"] is True
    # Settings whose absence drives inference must not get a schema default.
    for name in ("auth_scheme", "initiate_oauth", "oauth_settings_location"):
        assert "default" not in props[name].to_dict()[name]
    assert props["callback_url"].to_dict()["callback_url"]["default"] == "http://localhost:33333"
    assert props["oauth_url"].to_dict()["oauth_url"]["default"] == (
        "https://bitbucket.org/site/oauth2"
    )


@pytest.mark.unit
def test_authorization_url_and_redirect_uri() -> None:
    default = auth.OAuthOptions.from_config(CLIENT)
    url = auth.authorization_url(default, "st4te")
    assert url == (
        "https://bitbucket.org/site/oauth2/authorize?client_id=cid&response_type=code&state=st4te"
    )
    custom = default.with_callback("http://127.0.0.1:4567/cb")
    assert "redirect_uri=http%3A%2F%2F127.0.0.1%3A4567%2Fcb" in auth.authorization_url(custom, "s")
    assert "csecret" not in url


@pytest.mark.unit
def test_extract_code() -> None:
    assert auth.extract_code("abc") == "abc"
    assert auth.extract_code("http://localhost:33333/?code=XYZ&state=s") == "XYZ"
    assert auth.extract_code("?state=s&code=Q") == "Q"


@pytest.mark.unit
def test_token_margin_is_capped_for_short_tokens() -> None:
    now = 1000.0
    tokens = auth.TokenSet(access_token="a", expires_at=now + 1.5, expires_in=2)
    assert tokens.margin(300) == 1
    assert tokens.is_fresh(300, now=now)
    assert not tokens.is_fresh(300, now=now + 0.6)
    long_lived = auth.TokenSet(access_token="a", expires_at=now + 3600, expires_in=3600)
    assert long_lived.is_fresh(300, now=now + 3200)
    assert not long_lived.is_fresh(300, now=now + 3350)
    assert auth.TokenSet(access_token="a").is_fresh(300)  # unknown expiry
    assert not auth.TokenSet(access_token=None, refresh_token="r").is_fresh(300)


# ---------------------------------------------------------------------------- settings file

TOKENS = auth.TokenSet(
    access_token="ACCESS-tok-0123456789abcdef",
    refresh_token="REFRESH-tok-0123456789",
    expires_at=1_900_000_000.0,
    expires_in=7200.0,
    scopes="account repository",
    client_id="cid",
    updated_at="2026-11-27T18:00:00+00:00",
)


@pytest.mark.unit
def test_plain_round_trip_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "settings.json"
    store = auth.OAuthSettingsStore(str(path))
    assert store.read() is None
    old_umask = os.umask(0)
    try:
        store.write(TOKENS)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["format"] == "tap-bitbucket-oauth/1"
    assert data["refresh_token"] == TOKENS.refresh_token
    assert data["expires_at"] == TOKENS.expires_at
    assert auth.OAuthSettingsStore(str(path)).read() == TOKENS
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.unit
def test_encrypted_round_trip_has_no_token_in_clear(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    auth.OAuthSettingsStore(str(path), "correct horse battery").write(TOKENS)
    raw = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for secret in (TOKENS.access_token, TOKENS.refresh_token, "correct horse battery"):
        assert secret is not None
        assert secret.encode() not in raw
        assert base64.b64encode(secret.encode()) not in raw
    envelope = json.loads(raw)
    assert envelope["kdf"] == "scrypt" and envelope["encrypted"] is True
    assert auth.OAuthSettingsStore(str(path), "correct horse battery").read() == TOKENS


def test_encrypted_file_works_in_another_process_at_another_path(tmp_path: Path) -> None:
    """Headless option 2: the file (and key) move; nothing ties it to this process/path."""
    first = tmp_path / "a.json"
    auth.OAuthSettingsStore(str(first), "k3y-passphrase").write(TOKENS)
    moved = tmp_path / "elsewhere" / "b.json"
    moved.parent.mkdir()
    moved.write_bytes(first.read_bytes())
    code = textwrap.dedent(f"""
        from tap_bitbucket.auth import OAuthSettingsStore
        t = OAuthSettingsStore({str(moved)!r}, "k3y-passphrase").read()
        print(t.refresh_token == {TOKENS.refresh_token!r},
              t.access_token == {TOKENS.access_token!r})
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "True"]


@pytest.mark.unit
def test_plain_file_is_encrypted_on_next_write_when_a_key_is_set(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    auth.OAuthSettingsStore(str(path)).write(TOKENS)
    keyed = auth.OAuthSettingsStore(str(path), "new-key-42")
    assert keyed.read() == TOKENS
    keyed.write(TOKENS)
    assert TOKENS.refresh_token.encode() not in path.read_bytes()  # type: ignore[union-attr]
    assert auth.OAuthSettingsStore(str(path), "new-key-42").read() == TOKENS


@pytest.mark.unit
@pytest.mark.parametrize(
    "content",
    [
        b"\x00\xff not json at all",
        b"",
        b"[1, 2, 3]",
        b'{"access_token": 12}',
        b'{"refresh_token": "r", "expires_at": "tomorrow"}',
        b'{"format": "something-else/9", "access_token": "a"}',
        b'{"format": "tap-bitbucket-oauth/1", "encrypted": true, "kdf": "scrypt"}',
        b'{"format": "tap-bitbucket-oauth/1", "encrypted": true, "kdf": "rot13", "token": "x"}',
    ],
)
def test_corrupt_file_gives_one_line_naming_the_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(content)
    with pytest.raises(AuthError) as info:
        auth.OAuthSettingsStore(str(path), "some-key").read()
    message = one_line(info.value)
    assert str(path) in message
    assert "tap-bitbucket-oauth login" in message
    assert path.read_bytes() == content


@pytest.mark.unit
def test_wrong_key_and_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    auth.OAuthSettingsStore(str(path), "right-key-1").write(TOKENS)
    before = path.read_bytes()
    with pytest.raises(AuthError) as info:
        auth.OAuthSettingsStore(str(path), "wrong-key-2").read()
    message = one_line(info.value)
    assert str(path) in message and "oauth_settings_key" in message
    assert "wrong-key-2" not in message and "right-key-1" not in message
    with pytest.raises(AuthError) as info:
        auth.OAuthSettingsStore(str(path)).read()
    assert "encrypted" in one_line(info.value) and "oauth_settings_key" in str(info.value)
    assert path.read_bytes() == before


@pytest.mark.unit
def test_tampered_ciphertext_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    auth.OAuthSettingsStore(str(path), "key-123").write(TOKENS)
    envelope = json.loads(path.read_text())
    token = envelope["token"]
    envelope["token"] = token[:-8] + ("A" if token[-8] != "A" else "B") + token[-7:]
    path.write_text(json.dumps(envelope))
    with pytest.raises(AuthError):
        auth.OAuthSettingsStore(str(path), "key-123").read()


@pytest.mark.unit
def test_failed_write_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.json"
    store = auth.OAuthSettingsStore(str(path))
    store.write(TOKENS)
    before = path.read_bytes()
    newer = auth.TokenSet(access_token="NEW-access-0000", refresh_token="NEW-refresh-0000")

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(AuthError) as info:
        store.write(newer)
    message = one_line(info.value)
    assert str(path) in message and "No space left" in message
    assert "NEW-" not in message
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]  # no temp file left


@pytest.mark.unit
def test_failed_serialisation_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.json"
    store = auth.OAuthSettingsStore(str(path), "k-e-y-1")
    store.write(TOKENS)
    before = path.read_bytes()

    def boom(*args: Any, **kwargs: Any) -> bytes:
        raise RuntimeError("serializer exploded")

    monkeypatch.setattr(store, "serialize", boom)
    with pytest.raises(RuntimeError):
        store.write(auth.TokenSet(access_token="other-access"))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


@pytest.mark.unit
def test_failed_rename_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.json"
    store = auth.OAuthSettingsStore(str(path))
    store.write(TOKENS)
    before = path.read_bytes()

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(AuthError):
        store.write(auth.TokenSet(access_token="other-access"))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_lock_excludes_other_processes(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time, filelock
            lock = filelock.FileLock({str(path) + ".lock"!r})
            with lock:
                print("held", flush=True)
                time.sleep(1.5)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        impatient = auth.OAuthSettingsStore(str(path), lock_timeout=0.3)
        with pytest.raises(AuthError) as info, impatient.locked():
            pass
        assert "lock" in one_line(info.value) and str(path) in str(info.value)
        patient = auth.OAuthSettingsStore(str(path), lock_timeout=10)
        started = time.monotonic()
        with patient.locked():
            waited = time.monotonic() - started
        assert waited > 0.5  # it had to wait for the other process
    finally:
        holder.wait(timeout=10)


@pytest.mark.unit
def test_lock_is_reentrant_in_one_thread(tmp_path: Path) -> None:
    store = auth.OAuthSettingsStore(str(tmp_path / "s.json"), lock_timeout=1)
    with store.locked(), store.locked():
        store.write(TOKENS)
    assert store.read() == TOKENS


# ---------------------------------------------------------------------------- authenticators


def _prepared() -> requests.PreparedRequest:
    return requests.Request("GET", "https://api.bitbucket.org/2.0/user").prepare()


@pytest.mark.unit
def test_api_token_authenticator() -> None:
    config = {"username": "me@example.com", "api_token": "ATATT-secret-1"}
    authenticator = auth.build_authenticator(config)
    assert authenticator.scheme == "api_token"
    request = authenticator(_prepared())
    expected = base64.b64encode(b"me@example.com:ATATT-secret-1").decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert set(authenticator.secret_values()) >= {"ATATT-secret-1", expected}
    authenticator.prepare()  # nothing to do, no network
    response = requests.Response()
    response.status_code = 401
    response.request = request
    assert authenticator.handle_unauthorized(response) is False
    assert "email" in authenticator.unauthorized_message()


@pytest.mark.unit
def test_access_token_authenticator() -> None:
    authenticator = auth.build_authenticator({"access_token": "ATCTT-secret-2"})
    assert authenticator.scheme == "access_token"
    request = authenticator(_prepared())
    assert request.headers["Authorization"] == "Bearer ATCTT-secret-2"
    assert "ATCTT-secret-2" in authenticator.secret_values()
    assert isinstance(authenticator, auth.BitbucketAuth)


@pytest.mark.unit
def test_off_mode_uses_the_token_as_is() -> None:
    authenticator = auth.build_authenticator(
        {"initiate_oauth": "OFF", "oauth_access_token": "oauth-access-OFF"}
    )
    authenticator.prepare()
    request = authenticator(_prepared())
    assert request.headers["Authorization"] == "Bearer oauth-access-OFF"
    response = requests.Response()
    response.status_code = 401
    response.request = request
    assert authenticator.handle_unauthorized(response) is False
    assert "OFF" in authenticator.unauthorized_message()


@pytest.mark.unit
def test_oauth_code_without_tokens_fails_clearly(tmp_path: Path) -> None:
    config = {**CLIENT, "oauth_settings_location": str(tmp_path / "none.json")}
    with pytest.raises(ConfigError) as cinfo:
        auth.build_authenticator(config)
    message = one_line(cinfo.value)
    assert "tap-bitbucket-oauth login" in message and str(tmp_path / "none.json") in message
    assert not (tmp_path / "none.json").exists()
    # A file without tokens passes validation but prepare() explains what to do.
    (tmp_path / "none.json").write_text("{}")
    authenticator = auth.build_authenticator(config)
    with pytest.raises(AuthError) as info:
        authenticator.prepare()
    message = one_line(info.value)
    assert "tap-bitbucket-oauth login" in message and str(tmp_path / "none.json") in message
    assert (tmp_path / "none.json").read_text() == "{}"


@pytest.mark.unit
def test_settings_file_of_another_consumer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    auth.OAuthSettingsStore(str(path)).write(TOKENS)  # client_id "cid"
    before = path.read_bytes()
    config = {
        "oauth_client_id": "other",
        "oauth_client_secret": "x-secret",
        "oauth_settings_location": str(path),
    }
    with pytest.raises(AuthError) as info:
        auth.build_authenticator(config).prepare()
    assert "oauth_client_id" in one_line(info.value)
    assert path.read_bytes() == before


@pytest.mark.unit
def test_fresh_tokens_from_the_file_need_no_network(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    fresh = auth.TokenSet(
        access_token="file-access-token",
        refresh_token="file-refresh",
        expires_at=time.time() + 3600,
        expires_in=3600,
        client_id="cid",
    )
    auth.OAuthSettingsStore(str(path)).write(fresh)
    # oauth_url points nowhere: any token request would fail.
    config = {
        **CLIENT,
        "oauth_settings_location": str(path),
        "oauth_url": "http://127.0.0.1:9/site/oauth2",
    }
    authenticator = auth.build_authenticator(config)
    assert authenticator.scheme == "oauth_code"
    authenticator.prepare()
    assert authenticator(_prepared()).headers["Authorization"] == "Bearer file-access-token"
    assert {"file-access-token", "file-refresh", "csecret-123"} <= set(
        authenticator.secret_values()
    )
    assert basic_auth_value("cid", "csecret-123") in authenticator.secret_values()


# ---------------------------------------------------------------------------- redaction


@pytest.mark.unit
def test_redact_function() -> None:
    text = "token=abc/def+ghi and abc%2Fdef%2Bghi and short=ab"
    assert redact(text, ["abc/def+ghi", "ab", None]) == f"token={MASK} and {MASK} and short=ab"
    assert redact("nothing here", []) == "nothing here"


@pytest.mark.unit
def test_log_redaction_covers_messages_args_basic_form_and_tracebacks() -> None:
    secret = "s3cr3t-api-token-value"
    basic = basic_auth_value("me@example.com", secret)
    install_redaction(lambda: [secret, basic])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("tap_bitbucket.test_redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info("header Authorization: Basic %s", basic)
        logger.info(f"inline {secret} in the message")
        logger.warning("dict arg %s", {"api_token": secret})
        try:
            raise ValueError(f"bad token {secret}")
        except ValueError:
            logger.exception("failed")
        other = logging.getLogger("some.other.library")
        other.addHandler(handler)
        other.propagate = False
        other.error("third party says %s", secret)
        other.removeHandler(handler)
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert secret not in output and basic not in output
    assert output.count(MASK) >= 5
    assert "bad token ***" in output and "third party says ***" in output


@pytest.mark.unit
def test_redaction_filter_on_existing_handlers() -> None:
    """A handler present at install time gets the filter itself."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        install_redaction(lambda: ["handler-level-secret"])
        assert any(type(f).__name__ == "SecretRedactingFilter" for f in handler.filters)
        record = logging.LogRecord(
            "x", logging.INFO, __file__, 1, "raw %s", ("handler-level-secret",), None
        )
        handler.handle(record)  # bypasses the record factory: only the filter can mask it
    finally:
        root.removeHandler(handler)
    assert "handler-level-secret" not in stream.getvalue()
    assert MASK in stream.getvalue()


# ---------------------------------------------------------------------------- oauth_cli


@pytest.mark.unit
def test_cli_config_merge_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = tmp_path / "a.json"
    first.write_text(json.dumps({"oauth_client_id": "one", "callback_url": "http://localhost:1"}))
    second = tmp_path / "b.json"
    second.write_text(json.dumps({"oauth_client_id": "two"}))
    monkeypatch.setenv("TAP_BITBUCKET_OAUTH_CALLBACK_TIMEOUT", "12.5")
    monkeypatch.setenv("TAP_BITBUCKET_OAUTH_OPEN_BROWSER", "false")
    monkeypatch.setenv("TAP_BITBUCKET_CALLBACK_URL", "http://localhost:2")
    config = oauth_cli.load_config([str(first), str(second), "ENV"])
    assert config["oauth_client_id"] == "two"
    assert config["callback_url"] == "http://localhost:2"
    assert config["oauth_callback_timeout"] == 12.5
    assert config["oauth_open_browser"] is False


@pytest.mark.unit
def test_cli_errors_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.json"
    assert oauth_cli.main(["get-authorization-url", "--config", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.json" in err[0] and "Traceback" not in err[0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"oauth_client_secret": "cli-secret-value-9"}))
    assert oauth_cli.main(["get-authorization-url", "--config", str(bad)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines[-1].startswith("tap-bitbucket-oauth: error: Invalid setting 'oauth_client_id'")
    assert "cli-secret-value-9" not in captured.err + captured.out


@pytest.mark.unit
def test_cli_get_authorization_url_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({**CLIENT, "oauth_url": "http://127.0.0.1:9/site/oauth2"}))
    assert (
        oauth_cli.main(
            [
                "get-authorization-url",
                "--config",
                str(config),
                "--state",
                "xyz",
                "--callback-url",
                "http://localhost:7000/cb",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["state"] == "xyz"
    assert out["url"].startswith("http://127.0.0.1:9/site/oauth2/authorize?client_id=cid&")
    assert "redirect_uri=http%3A%2F%2Flocalhost%3A7000%2Fcb" in out["url"]
