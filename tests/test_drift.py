"""The drift detector (tap_bitbucket/drift.py) against the emulator: a field Bitbucket adds,
a field it removes and a 410 on a known endpoint are each reported; a clean sync reports
nothing; the shipped baseline is the one a full emulator sync produces."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scripts import update_drift_baseline
from tap_bitbucket.drift import DriftReport, Finding, analyse, build_baseline
from tests.emulator import Emulator, FaultRule, FieldDrift
from tests.harness import (
    TapResult,
    api_token_config,
    discovered_catalog,
    run_tap,
    secret_values,
    select_only,
)

DRIFT = str(Path(sys.executable).parent / "tap-bitbucket-drift")
PR_LIST = r"/2.0/repositories/[^/]+/[^/]+/pullrequests$"


@pytest.fixture(scope="module")
def full_sync() -> list[dict[str, Any]]:
    return update_drift_baseline.full_sync_messages()


def _sync_pull_requests(emu: Emulator) -> TapResult:
    return run_tap(
        api_token_config(emu), catalog=select_only(discovered_catalog(), ["pull_requests"])
    )


def _kinds(report: DriftReport) -> set[tuple[str, str, str]]:
    return {(f.kind, f.stream, f.detail) for f in report.findings}


def test_the_shipped_baseline_is_current(full_sync: list[dict[str, Any]]) -> None:
    shipped = update_drift_baseline.TARGET.read_text(encoding="utf-8")
    assert update_drift_baseline.render(full_sync) == shipped, (
        "tap_bitbucket/drift_baseline.json is stale: python -m scripts.update_drift_baseline"
    )


def test_a_clean_sync_has_no_drift(full_sync: list[dict[str, Any]]) -> None:
    report = analyse(full_sync, [])
    assert report.findings == []
    assert not report.failing
    assert sum(report.records.values()) > 1000


def test_an_added_field_is_reported(make_emulator: Callable[..., Emulator]) -> None:
    drift = FieldDrift(PR_LIST, add={"draft_reason": "wip", "summary.lang": "en"})
    result = _sync_pull_requests(make_emulator(field_drift=[drift]))
    assert result.returncode == 0, result.stderr[-2000:]
    report = analyse(result.messages, result.stderr_lines)
    # Top level: the SDK drops it and logs it; nested: still in the records.
    assert ("new_field", "pull_requests", "draft_reason") in _kinds(report)
    assert ("new_field", "pull_requests", "summary.lang") in _kinds(report)
    assert not report.failing, "a new field loses nothing yet: reported, not failing"


def test_a_removed_field_is_reported_and_fails(make_emulator: Callable[..., Emulator]) -> None:
    drift = FieldDrift(PR_LIST, remove=["title", "destination.branch.name"])
    result = _sync_pull_requests(make_emulator(field_drift=[drift]))
    assert result.returncode == 0, result.stderr[-2000:]
    report = analyse(result.messages, result.stderr_lines)
    assert ("vanished_field", "pull_requests", "title") in _kinds(report)
    assert ("vanished_field", "pull_requests", "destination.branch.name") in _kinds(report)
    assert report.failing


def test_a_410_on_a_known_endpoint_is_a_removed_endpoint(
    make_emulator: Callable[..., Emulator],
) -> None:
    emu = make_emulator()
    emu.add_fault(FaultRule("error", status=410, path_regex=PR_LIST))
    result = _sync_pull_requests(emu)
    assert result.returncode != 0
    report = analyse(result.messages, result.stderr_lines)
    endpoint = "/repositories/{workspace_slug}/{repo_slug}/pullrequests"
    assert ("removed_endpoint", "pull_requests", endpoint) in _kinds(report)
    assert report.failing


def test_a_new_4xx_on_a_skippable_stream_is_reported(
    make_emulator: Callable[..., Emulator],
) -> None:
    """A 403 the stream does not expect: reported as a new 4xx, not as a removal."""
    emu = make_emulator()
    emu.add_fault(FaultRule("error", status=403, path_regex=PR_LIST))
    result = _sync_pull_requests(emu)
    report = analyse(result.messages, result.stderr_lines)
    assert any(f.kind == "new_4xx" and f.stream == "pull_requests" for f in report.findings)
    assert not any(f.kind == "removed_endpoint" for f in report.findings)


def test_absent_optional_parents_and_type_changes() -> None:
    """A null parent object proves nothing about its fields; a changed type is a broken schema."""
    baseline = {"pull_requests": ["id", "closed_by", "closed_by.uuid", "title"]}
    records = [
        {
            "type": "RECORD",
            "stream": "pull_requests",
            "record": {"id": 1, "closed_by": None, "title": "a"},
        },
        {
            "type": "RECORD",
            "stream": "pull_requests",
            "record": {"id": "2", "closed_by": None, "title": "b"},
        },
    ]
    report = analyse(records, [], baseline=baseline)
    assert _kinds(report) == {("type_mismatch", "pull_requests", "id")}
    assert report.failing


def test_the_baseline_keeps_only_fields_every_object_has() -> None:
    records = [
        {"type": "RECORD", "stream": "tags", "record": {"name": "a", "message": "m"}},
        {"type": "RECORD", "stream": "tags", "record": {"name": "b"}},
    ]
    assert build_baseline(records)["streams"] == {"tags": ["name"]}


def test_the_cli_writes_the_summary_and_fails_on_removal(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emu = make_emulator(field_drift=[FieldDrift(PR_LIST, remove=["title"])])
    result = _sync_pull_requests(emu)
    (tmp_path / "out.jsonl").write_text(result.stdout, encoding="utf-8")
    (tmp_path / "tap.log").write_text(result.stderr, encoding="utf-8")
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    command = [
        DRIFT,
        "--input",
        str(tmp_path / "out.jsonl"),
        "--log",
        str(tmp_path / "tap.log"),
        "--summary",
        str(summary),
        "--json",
        str(tmp_path / "report.json"),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n"), "the job summary is appended to"
    assert "`vanished_field` (failing) | `pull_requests` | `title`" in text
    document = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert document["failing"] is True
    assert Finding("vanished_field", "pull_requests", "title", "x").failing
    for secret in secret_values(emu):
        assert secret not in text and secret not in proc.stdout

    clean = make_emulator()
    result = _sync_pull_requests(clean)
    proc = subprocess.run([DRIFT], input=result.stdout, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No drift" in proc.stdout
