"""The `tap-bitbucket` entry point (tap_bitbucket/cli.py): one line per failure.

Unit tests call `report()` / `main()` in-process; the subprocess tests run
`python -m tap_bitbucket` (the package's __main__) like a user would.
"""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from singer_sdk.exceptions import ConfigValidationError

from tap_bitbucket import cli
from tap_bitbucket.errors import APIError, AuthError, ConfigError
from tap_bitbucket.redact import install_redaction
from tests.emulator import Emulator
from tests.harness import ROOT, START_DATE, api_token_config, tap_env

ERROR = "tap-bitbucket: error: "
PACKAGE = [sys.executable, "-m", "tap_bitbucket"]


def _raised(exc: BaseException) -> BaseException:
    """``exc`` with a traceback, as main() sees it."""
    try:
        raise exc
    except BaseException as caught:
        return caught


@pytest.fixture
def quiet_logging() -> Iterator[None]:
    root, tap = logging.getLogger(), logging.getLogger("tap_bitbucket")
    levels = root.level, tap.level
    root.setLevel(logging.INFO)
    tap.setLevel(logging.NOTSET)
    yield
    root.setLevel(levels[0])
    tap.setLevel(levels[1])


@pytest.fixture
def debug_logging(quiet_logging: None) -> None:
    logging.getLogger().setLevel(logging.DEBUG)


# ================================================================== the error mapping

SCHEMA_ERROR = ConfigValidationError(
    "Config validation failed",
    errors=["'four' is not of type 'integer', 'null' in config['max_workers']"],
)

MAPPING = [
    (ConfigError("start_date", "'soon' is not an ISO 8601 date-time"), "Invalid setting 'start_date': 'soon' is not", 2),
    (AuthError("Bitbucket rejected the credentials (HTTP 401)."), "Bitbucket rejected the credentials", 2),
    (APIError("GET /repositories/acme answered HTTP 500."), "GET /repositories/acme answered HTTP 500.", 1),
    (SCHEMA_ERROR, "Invalid setting 'max_workers': 'four' is not of type", 2),
    (click.NoSuchOption("--bogus"), "No such option '--bogus'", 2),
    (click.BadParameter("'/x': Is a directory", param_hint="'--state'"), "Invalid value for '--state': '/x': Is a directory", 2),
    (
        ValueError("boom\nsecond line"),
        "ValueError: boom (set TAP_BITBUCKET_LOGLEVEL=debug for a traceback)",
        1,
    ),
    (RuntimeError(), "RuntimeError: RuntimeError (set TAP_BITBUCKET_LOGLEVEL=debug", 1),
    (KeyboardInterrupt(), "interrupted", 130),
]  # fmt: skip


@pytest.mark.unit
@pytest.mark.parametrize(
    ("exc", "line", "code"), MAPPING, ids=[type(m[0]).__name__ for m in MAPPING]
)
def test_each_failure_is_one_line_and_an_exit_code(
    exc: BaseException,
    line: str,
    code: int,
    quiet_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.report(_raised(exc)) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(ERROR + line), err
    assert "Traceback" not in err


@pytest.mark.unit
def test_a_secret_in_a_message_is_masked(
    quiet_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "ATATT-cli-test-secret-4711"
    install_redaction(lambda: [secret])
    cli.report(_raised(RuntimeError(f"token {secret} refused")))
    cli.report(_raised(AuthError(f"rejected {secret}")))
    err = capsys.readouterr().err
    assert secret not in err
    assert err.count("***") == 2, err


@pytest.mark.unit
def test_debug_logging_adds_the_traceback(
    debug_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "ATATT-cli-test-traceback-0815"
    install_redaction(lambda: [secret])
    assert cli.report(_raised(ValueError(f"bad {secret}"))) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert secret not in err  # the traceback is masked too
    assert [line for line in err.splitlines() if line.startswith(ERROR)] == [
        f"{ERROR}ValueError: bad *** {cli.DEBUG_HINT}"
    ]


@pytest.mark.unit
def test_a_schema_error_with_a_cause_shows_the_cause_with_debug(
    debug_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.report(_raised(cli.config_error_from_schema(SCHEMA_ERROR))) == 2
    err = capsys.readouterr().err
    assert "ConfigValidationError" in err  # the SDK's exception, as the cause
    assert err.splitlines()[-1].startswith(f"{ERROR}Invalid setting 'max_workers'")


@pytest.mark.unit
def test_main_leaves_the_excepthook_alone(
    quiet_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    hook, handlers = sys.excepthook, list(logging.getLogger().handlers)
    frozen = gc.get_freeze_count()
    try:
        assert cli.main(["--about", "--format=json"]) == 0
        # Only the console script freezes the heap before exiting: main() froze it too,
        # and the in-process property tests kept 17 MB of every run.
        assert gc.get_freeze_count() == frozen
    finally:
        # cli.main() set up console logging on a stream capsys replaces.
        logging.getLogger().handlers[:] = handlers
        logging.captureWarnings(capture=False)
    assert sys.excepthook is hook
    assert json.loads(capsys.readouterr().out)["name"] == "tap-bitbucket"


# ==================================================================== as a process


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PACKAGE, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=tap_env(tmp_path),
    )


def _one_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert result.returncode == code, result.stderr[-1500:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if ERROR in line]
    assert len(errors) == 1, result.stderr[-1500:]
    assert errors[0].startswith(ERROR)
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def _write(path: Path, value: Any) -> str:
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(path)


def test_version(tmp_path: Path) -> None:
    result = _run(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("tap-bitbucket v"), result.stdout
    assert ERROR not in result.stderr


def test_about(tmp_path: Path) -> None:
    result = _run(tmp_path, "--about", "--format=json")
    assert result.returncode == 0, result.stderr
    about = json.loads(result.stdout)
    assert about["name"] == "tap-bitbucket"
    assert about["description"] == "Singer tap for Bitbucket Cloud."
    assert ERROR not in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-config.json")
    result = _run(tmp_path, "--config", missing)
    _one_error(result, 2, "'config'", missing)


def test_unknown_option_is_clicks_short_message(tmp_path: Path) -> None:
    result = _run(tmp_path, "--bogus")
    _one_error(result, 2, "--bogus")
    assert "Usage:" not in result.stderr


def test_state_file_not_json(tmp_path: Path, emulator: Emulator) -> None:
    config = _write(tmp_path / "config.json", api_token_config(emulator, start_date=START_DATE))
    state = _write(tmp_path / "state.json", '{"bookmarks": ')
    before = len(emulator.request_log)
    result = _run(tmp_path, "--config", config, "--state", state)
    _one_error(result, 2, "state", state, "not valid JSON")
    assert '"RECORD"' not in result.stdout
    assert emulator.request_log[before:] == []


def test_test_with_a_bad_credential(tmp_path: Path, emulator: Emulator) -> None:
    config = api_token_config(
        emulator, start_date=START_DATE, api_token="ATATT-not-the-right-token-1234"
    )
    path = _write(tmp_path / "config.json", config)
    result = _run(tmp_path, "--config", path, "--test")
    _one_error(result, 2, "rejected the API token", "401", "Atlassian account email")
    assert "ATATT-not-the-right-token-1234" not in result.stderr + result.stdout
    assert '"RECORD"' not in result.stdout


# ============================================ what the SDK does that cli.py works around
# Each test pins an SDK behaviour that cli.py compensates for; when one fails after an SDK
# upgrade, the workaround it names can probably go.


@pytest.mark.unit
def test_sdk_command_replaces_the_excepthook(quiet_logging: None) -> None:
    """Why main() puts sys.excepthook back: SingerCommand.invoke installs its own."""
    from tap_bitbucket.tap import TapBitbucket  # noqa: PLC0415

    hook = sys.excepthook
    try:
        with pytest.raises(SystemExit):
            TapBitbucket.get_singer_command().main(
                ["--about", "--format=json"], standalone_mode=False
            )
        assert sys.excepthook is not hook
    finally:
        sys.excepthook = hook


@pytest.mark.unit
def test_sdk_command_logs_schema_errors_and_exits_1(quiet_logging: None, tmp_path: Path) -> None:
    """Why CommandLineTap.invoke turns ConfigValidationError into ConfigError: otherwise
    SingerCommand.invoke catches it, logs each error and a summary, and exits 1."""
    from tap_bitbucket.tap import TapBitbucket  # noqa: PLC0415

    config = _write(tmp_path / "config.json", {"max_workers": "four"})
    hook = sys.excepthook
    try:
        code = TapBitbucket.get_singer_command().main(["--config", config], standalone_mode=False)
    finally:
        sys.excepthook = hook
    assert code == 1


@pytest.mark.unit
def test_sdk_parsed_config_has_what_cb_test_reads() -> None:
    """CommandLineTap.cb_test builds its tap from the parsed --config as the SDK's cb_test
    does, through the `config` and `parse_env` attributes of the SDK's (private) parsed
    form: there is no public hook to run a check before the SDK's connection test."""
    from tap_bitbucket.tap import TapBitbucket  # noqa: PLC0415

    parsed = TapBitbucket.cb_config(click.Context(click.Command("x")), None, ("ENV",))
    assert parsed.parse_env is True
    assert hasattr(parsed, "config")
