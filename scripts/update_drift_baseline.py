"""Regenerate tap_bitbucket/drift_baseline.json: the fields present in every object of
their parent in a full sync (every stream selected) of the test emulator.

    .venv/bin/python -m scripts.update_drift_baseline [--check]

Run it after a schema or emulator change that adds or drops a field; tests/test_drift.py
fails while the file is stale. The emulator's payloads follow the recorded Bitbucket
responses (tests/test_emulator_conformance.py), so "always present in the emulator" is the
best offline stand-in for "always present in Bitbucket's answers".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tap_bitbucket.drift import BASELINE_FILE, build_baseline
from tests.emulator import Emulator, EmulatorConfig
from tests.harness import api_token_config, discovered_catalog, run_tap, select_all

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "tap_bitbucket" / BASELINE_FILE


def full_sync_messages() -> list[dict[str, Any]]:
    with Emulator(EmulatorConfig()) as emu:
        result = run_tap(api_token_config(emu), catalog=select_all(discovered_catalog()))
    if result.returncode != 0:
        raise SystemExit(f"the full sync failed:\n{result.stderr[-3000:]}")
    return result.messages


def render(messages: list[dict[str, Any]]) -> str:
    return json.dumps(build_baseline(messages), indent=1) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args()
    text = render(full_sync_messages())
    if args.check:
        if TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET.name} is stale: run python -m scripts.update_drift_baseline")
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
