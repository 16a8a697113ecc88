"""scripts/release_notes.py cuts exactly one version's section out of a Keep a Changelog
file; the release workflow makes the GitHub release's notes with it."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

from scripts.release_notes import NotFound, section
from tests.harness import ROOT

SAMPLE = """# Changelog

Intro text.

## [Unreleased]

### Fixed

- Something not released yet.

## [1.1.0] - 2027-01-02

### Added

- A new stream.

### Fixed

- A bug.

## [1.0.0] - 2026-12-06

### Added

- Everything.

[Unreleased]: https://example.invalid/compare/v1.1.0...HEAD
[1.1.0]: https://example.invalid/compare/v1.0.0...v1.1.0
[1.0.0]: https://example.invalid/releases/tag/v1.0.0
"""


@pytest.mark.unit
def test_a_middle_section_stops_at_the_next_heading() -> None:
    assert section(SAMPLE, "1.1.0") == "### Added\n\n- A new stream.\n\n### Fixed\n\n- A bug.\n"


@pytest.mark.unit
def test_the_last_section_stops_at_the_link_definitions() -> None:
    assert section(SAMPLE, "v1.0.0") == "### Added\n\n- Everything.\n"


@pytest.mark.unit
def test_unknown_and_empty_sections_fail() -> None:
    with pytest.raises(NotFound):
        section(SAMPLE, "0.9.0")
    with pytest.raises(NotFound):
        section(SAMPLE, "1.1")  # no prefix matching
    with pytest.raises(NotFound):
        section("## [2.0.0] - 2027-02-02\n\n## [1.0.0] - 2026-12-06\n\n- x\n", "2.0.0")


def test_the_script_prints_this_release_s_notes() -> None:
    version = metadata.version("tap-bitbucket")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "release_notes.py"), f"v{version}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert proc.stdout.startswith("The first release") or proc.stdout.startswith("###")
    assert "### Added" in proc.stdout
    assert "## [" not in proc.stdout and "]: https://" not in proc.stdout
    failed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "release_notes.py"), "v99.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 1 and "no section" in failed.stderr
