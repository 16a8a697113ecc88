"""A full sync of the emulator's default dataset, checked stream by stream against its data.

One real `tap-bitbucket` process syncs every stream (including the two that are not
selected by default) from the default emulator (seed 1, scale 1). The expected objects
come from the emulator's Dataset, never from hand-typed counts: every object the emulator
serves under a path the tap reads must be emitted exactly once, with its join keys.
The same sync with `max_workers` 1 and 8 must give the very same records and state.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from tests.emulator import Emulator
from tests.harness import (
    ALL_STREAMS,
    DERIVED_KEYS,
    NANO_TIMESTAMP,
    TapResult,
    api_token_config,
    check_skip_warnings,
    compare_rows,
    discovered_catalog,
    duplicate_keys,
    expected_rows,
    expected_skips,
    fidelity_problems,
    normalised_state,
    once_per_session,
    primary_key,
    run_tap,
    run_taps_concurrently,
    schema_errors,
    secret_values,
    select_all,
    strings,
    walk,
)

STREAMS = sorted(ALL_STREAMS)


@pytest.fixture(scope="module")
def full_sync(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> TapResult:
    """One full sync of every stream (default max_workers), once for the whole session."""

    def produce() -> TapResult:
        result = run_tap(api_token_config(emulator), catalog=select_all(discovered_catalog()))
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    return once_per_session(tmp_path_factory, "full-sync", produce)


@pytest.fixture(scope="module")
def ground_truth(emulator: Emulator) -> dict[str, list[dict[str, Any]]]:
    return expected_rows(emulator.dataset)


@pytest.fixture(scope="module")
def records(full_sync: TapResult) -> dict[str, list[dict[str, Any]]]:
    return full_sync.records_by_stream


def _key_properties(result: TapResult, stream: str) -> list[str]:
    return list(result.schemas[stream]["key_properties"])


# ---------------------------------------------------------------------------- completeness


def test_exits_cleanly(full_sync: TapResult) -> None:
    assert full_sync.returncode == 0
    assert full_sync.error_lines() == []
    assert "Traceback" not in full_sync.stderr
    assert set(full_sync.schemas) == ALL_STREAMS


def test_ground_truth_covers_every_stream(ground_truth: dict[str, list[dict[str, Any]]]) -> None:
    """The default dataset has objects for every stream, so every check below can fail."""
    empty = sorted(name for name, rows in ground_truth.items() if not rows)
    assert empty == []


@pytest.mark.parametrize("stream", STREAMS)
def test_every_seeded_object_exactly_once(
    stream: str,
    full_sync: TapResult,
    records: dict[str, list[dict[str, Any]]],
    ground_truth: dict[str, list[dict[str, Any]]],
) -> None:
    expected = ground_truth[stream]
    emitted = records.get(stream, [])
    keys = _key_properties(full_sync, stream)
    # The ground truth identifies each object by (at least) the stream's primary key.
    identity = set(expected[0]) if expected else set()
    assert set(keys) - DERIVED_KEYS.get(stream, set()) <= identity, (stream, keys, identity)

    missing, unexpected = compare_rows(emitted, expected)
    assert not missing, f"{stream}: {len(missing)} objects not emitted, e.g. {missing[:3]}"
    assert not unexpected, (
        f"{stream}: {len(unexpected)} records not in the data (or emitted twice), "
        f"e.g. {unexpected[:3]}"
    )
    assert len(emitted) == len(expected)
    assert duplicate_keys(emitted, keys) == []
    assert all(None not in primary_key(r, keys) for r in emitted)


def test_activity_counts_per_pull_request(
    records: dict[str, list[dict[str, Any]]], ground_truth: dict[str, list[dict[str, Any]]]
) -> None:
    """Activity has no id from Bitbucket: the count per PR must match, ids must be unique."""
    emitted = records["pull_request_activity"]
    got = Counter((r["repo_uuid"], r["pull_request_id"]) for r in emitted)
    want = Counter(
        (e["repo_uuid"], e["pull_request_id"]) for e in ground_truth["pull_request_activity"]
    )
    assert got == want
    ids = [r["activity_id"] for r in emitted]
    assert len(set(ids)) == len(ids)
    assert all(ids)


def test_primary_keys_unique_across_the_whole_sync(full_sync: TapResult) -> None:
    """Per-repository ids (PR ids, branch names, hashes) repeat across repositories and
    workspaces; the primary keys must still be unique over the multi-workspace sync."""
    records = full_sync.records_by_stream
    for stream in ("pull_requests", "branches", "commits", "pull_request_comments"):
        keys = _key_properties(full_sync, stream)
        repos = {r["repo_uuid"] for r in records[stream]}
        workspaces = {r["workspace_slug"] for r in records[stream]}
        assert len(repos) > 1 and len(workspaces) > 1, stream
        assert duplicate_keys(records[stream], keys) == [], stream
    # PR ids do repeat across repositories: the key needs the repository.
    ids = Counter(r["id"] for r in records["pull_requests"])
    assert max(ids.values()) > 1


# ---------------------------------------------------------------------------- clean rows


@pytest.mark.parametrize("stream", STREAMS)
def test_records_match_their_schema(
    stream: str, full_sync: TapResult, records: dict[str, list[dict[str, Any]]]
) -> None:
    schema = full_sync.schemas[stream]["schema"]
    errors = schema_errors(schema, records.get(stream, []))
    assert errors == [], f"{stream}: {errors}"


def test_no_field_is_dropped_for_lack_of_a_schema(full_sync: TapResult) -> None:
    """The SDK drops (and warns about) top-level fields the schema does not declare."""
    dropped = [line for line in full_sync.warning_lines() if "not found in catalog schema" in line]
    assert dropped == []


def test_no_nul_bytes(emulator: Emulator, full_sync: TapResult) -> None:
    served = json.dumps(
        [emulator.dataset.collection(p) for p in emulator.dataset.collection_paths()]
    )
    assert "\\u0000" in served, "the dataset should hold NUL bytes for this test to mean anything"
    assert "\\u0000" not in full_sync.stdout
    assert "\x00" not in full_sync.stdout


def test_no_timestamp_has_more_than_microseconds(
    emulator: Emulator, records: dict[str, list[dict[str, Any]]]
) -> None:
    ds = emulator.dataset
    served = json.dumps([ds.collection(p) for p in ds.collection_paths() if "/pipelines" in p])
    assert NANO_TIMESTAMP.search(served), "the dataset should hold nanosecond timestamps"
    for stream in ("pipelines", "pipeline_steps"):
        assert records[stream]
    bad = [
        (stream, s)
        for stream, rows in records.items()
        for s in strings(rows)
        if NANO_TIMESTAMP.search(s)
    ]
    assert bad == []


def test_pipeline_step_registry_credentials_are_redacted(
    emulator: Emulator, full_sync: TapResult
) -> None:
    ds = emulator.dataset
    passwords = {
        step["image"]["password"]
        for path in ds.collection_paths()
        if path.endswith("/steps")
        for step in ds.collection(path) or []
        if isinstance(step.get("image"), dict) and step["image"].get("password")
    }
    assert passwords, "the dataset should hold private-image credentials"
    leaked = [p for p in passwords if p in full_sync.stdout or p in full_sync.stderr]
    assert leaked == []
    for secret in secret_values(emulator):
        assert secret not in full_sync.stdout
        assert secret not in full_sync.stderr


# ---------------------------------------------------------------------------- skips and state


def test_skipped_partitions_warn_once_each(emulator: Emulator, full_sync: TapResult) -> None:
    expected = expected_skips(emulator.dataset, streams=ALL_STREAMS)
    # The default dataset has an empty repository and one with Pipelines disabled.
    assert {status for _, _, status in expected} == {404, 409}
    assert check_skip_warnings(full_sync, expected) == []


def test_final_state_has_no_progress_markers(full_sync: TapResult) -> None:
    state = full_sync.last_state
    assert state is not None and state.get("bookmarks")
    assert [k for k, _ in walk(state) if k == "progress_markers"] == []


# ---------------------------------------------------------------------------- worker counts


@pytest.fixture(scope="module")
def worker_runs(
    emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> dict[int, TapResult]:
    """The same full sync with 1 and with 8 workers (two processes at once)."""

    def produce() -> dict[int, TapResult]:
        catalog = select_all(discovered_catalog())
        counts = (1, 8)
        results = run_taps_concurrently(
            [
                {"config": api_token_config(emulator, max_workers=n), "catalog": catalog}
                for n in counts
            ]
        )
        for result in results:
            assert result.returncode == 0, result.stderr[-3000:]
        return dict(zip(counts, results, strict=True))

    return once_per_session(tmp_path_factory, "worker-runs", produce)


def _canonical(result: TapResult) -> dict[str, list[str]]:
    return {
        stream: sorted(json.dumps(r, sort_keys=True) for r in rows)
        for stream, rows in result.records_by_stream.items()
    }


@pytest.mark.parametrize("workers", [1, 8])
def test_same_records_and_state_for_any_worker_count(
    workers: int, full_sync: TapResult, worker_runs: dict[int, TapResult]
) -> None:
    run = worker_runs[workers]
    assert run.error_lines() == []
    # parse_lines() already failed the run if any stdout line was not one JSON message.
    assert len(run.messages) == len(run.stdout.splitlines())
    baseline, got = _canonical(full_sync), _canonical(run)
    assert sorted(got) == sorted(baseline)
    for stream in baseline:
        assert got[stream] == baseline[stream], stream
    state = run.last_state
    assert state is not None
    assert [k for k, _ in walk(state) if k == "progress_markers"] == []
    assert normalised_state(state) == normalised_state(full_sync.last_state or {})


@pytest.mark.parametrize("stream", sorted(ALL_STREAMS - set(DERIVED_KEYS)))
def test_records_carry_every_field_the_api_served(
    stream: str,
    full_sync: TapResult,
    records: dict[str, list[dict[str, Any]]],
    ground_truth: dict[str, list[dict[str, Any]]],
) -> None:
    """No field lost on the way: schema gaps (the SDK drops undeclared fields), a list that
    omits fields (PR reviewers), a thin list item (workspaces from /user/workspaces)."""
    keys = _key_properties(full_sync, stream)
    assert fidelity_problems(stream, records.get(stream, []), ground_truth[stream], keys) == []
