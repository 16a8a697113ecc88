"""The tap's command run inside the test process: the same `cli.main` the console script
runs, against the emulator over HTTP, without the 1 s a new interpreter costs.

For the property tests (tests/test_fuzz_*.py), which run the tap hundreds of times.
Everything else in the harness runs the tap as a subprocess (running.py); a test that
needs a clean process (signals, environment, exit at interpreter shutdown) must too.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tap_bitbucket import cli
from tests.harness.running import TapResult, parse_lines

_LOCK = threading.Lock()
LOGLEVEL = "TAP_BITBUCKET_LOGLEVEL"


def run_in_process(
    config: dict[str, Any] | str,
    state: dict[str, Any] | str | None = None,
    catalog: dict[str, Any] | str | None = None,
    *,
    args: tuple[str, ...] = (),
    timeout: float = 60,
    parse: bool = True,
    log_level: str = "WARNING",
) -> TapResult:
    """`tap-bitbucket --config ... [--state ...] [--catalog ...]` in this process.

    A value given as a string is written to its file verbatim (malformed JSON included).
    stdout and stderr are captured; a run still going after `timeout` seconds fails the
    test (an endless run is a defect the property tests look for). `log_level` is the
    tap's (TAP_BITBUCKET_LOGLEVEL): WARNING by default, since INFO lines cost more than a
    small sync.
    """
    with _LOCK, tempfile.TemporaryDirectory(prefix="tap-inproc-") as tmp:
        command = ["--config", _write(Path(tmp, "config.json"), config)]
        if catalog is not None:
            command += ["--catalog", _write(Path(tmp, "catalog.json"), catalog)]
        if state is not None:
            command += ["--state", _write(Path(tmp, "state.json"), state)]
        out, err = io.BytesIO(), io.StringIO()
        stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
        handlers = list(logging.getLogger().handlers)
        saved = sys.stdout, sys.stderr
        saved_level = os.environ.get(LOGLEVEL)
        codes: list[int] = []
        started = time.monotonic()
        sys.stdout, sys.stderr = stdout, err
        os.environ[LOGLEVEL] = log_level
        try:
            worker = threading.Thread(
                target=lambda: codes.append(cli.main([*command, *args])), daemon=True
            )
            worker.start()
            worker.join(timeout)
        finally:
            sys.stdout, sys.stderr = saved
            if saved_level is None:
                os.environ.pop(LOGLEVEL, None)
            else:
                os.environ[LOGLEVEL] = saved_level
            _restore_logging(handlers)
        assert codes, f"the tap was still running after {timeout} s: {err.getvalue()[-2000:]}"
        stdout.flush()
        text = out.getvalue().decode("utf-8")
        result = TapResult(codes[0], text, err.getvalue(), time.monotonic() - started)
        if parse:
            result.messages = parse_lines(text)
        return result


def _write(path: Path, value: dict[str, Any] | str) -> str:
    path.write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")
    return str(path)


def _restore_logging(handlers: list[logging.Handler]) -> None:
    """Undo what one run did to the process's logging: the SDK adds a console handler to
    the root logger per run (on the captured stderr), and `cli.main` captures warnings
    (which would hide them from pytest's warning checks)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    logging.captureWarnings(False)
