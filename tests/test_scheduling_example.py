"""The README's scheduling example runs: docs/examples/bitbucket-pipelines.yml.

Its step script is run by bash, in a copy of the Meltano project, against the emulator,
on two consecutive "scheduled" runs sharing the file state backend the cache keeps. Two
substitutions only: the `demo` environment (the emulator) for `dev`, and target-jsonl
for target-postgres (no warehouse server needed); `pip install` and `meltano install`
are skipped (`make test` installed the same plugins). The emulator's full sync needs
888 requests and the example caps runs at 800: the first run stops cleanly, the second
goes on from there, and together they load every row an uncapped sync would.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tap_bitbucket.streams import STREAM_TYPES
from tests.emulator import Emulator, EmulatorConfig
from tests.harness import (
    DEFAULT_STREAMS,
    completeness_problems,
    drop_skipped,
    expected_rows,
    expected_skips,
    primary_key,
)
from tests.meltano_helpers import MELTANO, MeltanoProject, read_jsonl

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "bitbucket-pipelines.yml"
KEYS = {str(c.name): list(c.primary_keys or []) for c in STREAM_TYPES}


def step_script() -> list[str]:
    document = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    (step,) = document["pipelines"]["custom"]["bitbucket-sync"]
    return [str(line) for line in step["step"]["script"]]


def test_the_readme_shows_the_example_file() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") in (ROOT / "README.md").read_text(encoding="utf-8")


def _runnable(script: list[str]) -> str:
    lines = []
    for line in script:
        if line.startswith(("pip install", "meltano install")):
            continue
        line = line.replace("--environment=dev", "--environment=demo")
        line = line.replace("target-postgres", "target-jsonl")
        lines.append(re.sub(r"^meltano ", f"{MELTANO} --log-format uncolored ", line))
    return "set -euo pipefail\n" + "\n".join(lines) + "\n"


def _latest(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """One row per primary key, the last loaded (what an upserting warehouse keeps)."""
    out = {}
    for stream, stream_rows in rows.items():
        by_key = {primary_key(r, KEYS[stream]): r for r in stream_rows}
        out[stream] = list(by_key.values())
    return out


def test_two_scheduled_runs_chain_to_a_whole_sync(tmp_path: Path) -> None:
    with Emulator(EmulatorConfig()) as emu:
        project = MeltanoProject(tmp_path, emu)
        script = _runnable(step_script())
        logs = []
        for _ in range(2):
            result = subprocess.run(
                ["bash", "-c", script],
                cwd=project.root,
                env={**project.env, "PATH": os.environ.get("PATH", "")},
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            log = result.stdout + result.stderr
            assert result.returncode == 0, log[-4000:]
            logs.append(log)
        expected = expected_rows(emu.dataset, streams=DEFAULT_STREAMS)

    assert list((project.root / ".meltano-state").rglob("*")), "no state in the backend"
    assert "max_requests_per_run (800) reached" in logs[0]
    assert "max_requests_per_run (800) reached" not in logs[1]
    # The second run started from the first run's state: most repositories known.
    first_new = re.search(r"\((\d+) read for the first time\)", logs[0])
    second_new = re.search(r"\((\d+) read for the first time\)", logs[1])
    assert first_new and second_new
    assert int(second_new[1]) < int(first_new[1])
    loaded = _latest(read_jsonl(project.root / "output" / "demo-jsonl").rows)
    expected = drop_skipped(expected, expected_skips(emu.dataset, streams=DEFAULT_STREAMS))
    assert completeness_problems(loaded, expected) == []


@pytest.mark.unit
def test_the_example_sets_a_cap_and_a_state_backend() -> None:
    script = "\n".join(step_script())
    assert "MELTANO_STATE_BACKEND_URI=" in script
    assert "TAP_BITBUCKET_MAX_REQUESTS_PER_RUN=" in script
