"""Hand-picked pins for hostile server answers (issue 16), each a defect or a guard that
tests/test_fuzz_server.py exercises at random: one repository synced in-process against
an emulator whose answers are changed for the test, compared with a clean run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tap_bitbucket.pages import MAX_EMPTY_PAGES
from tap_bitbucket.shapes import is_timestamp
from tests.emulator import Emulator, EmulatorConfig, FaultRule, FieldDrift
from tests.harness import (
    TapResult,
    catalog_selecting,
    record_key,
    walk,
)
from tests.harness.badinput import invariant_problems, one_repository_config
from tests.harness.inprocess import run_in_process

REPO = "globex/api-fork"
STREAMS = {"workspaces", "projects", "repositories", "commits", "pull_requests", "pipelines"}
API = f"/2.0/repositories/{REPO}"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig()) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def config(emu: Emulator) -> dict[str, Any]:
    return one_repository_config(emu, REPO)


def _keys(result: TapResult) -> dict[str, set[Any]]:
    keys = {name: schema["key_properties"] for name, schema in result.schemas.items()}
    out: dict[str, set[Any]] = {}
    for message in result.records:
        out.setdefault(message["stream"], set()).add(record_key(message, keys))
    return out


@pytest.fixture(scope="module")
def clean(emu: Emulator, config: dict[str, Any]) -> dict[str, set[Any]]:
    result = run_in_process(config, catalog=catalog_selecting(STREAMS))
    assert result.returncode == 0, result.stderr[-2000:]
    return _keys(result)


def _sync(emu: Emulator, config: dict[str, Any], *, fault: FaultRule | None = None,
          drift: FieldDrift | None = None) -> TapResult:
    if fault is not None:
        emu.add_fault(fault)
    if drift is not None:
        emu.set_field_drift([drift])
    try:
        return run_in_process(config, catalog=catalog_selecting(STREAMS))
    finally:
        emu.clear_faults()
        emu.set_field_drift([])


def _one_error(result: TapResult, *parts: str) -> str:
    assert result.returncode != 0
    assert not invariant_problems(result, parts[0]), invariant_problems(result, parts[0])
    (line,) = result.error_lines()
    for part in parts:
        assert part in line, line
    return str(line)


# ---------------------------------------------------------------- pages that are not pages


def test_an_html_page_with_200_fails_naming_the_endpoint(emu: Emulator, config: Any) -> None:
    result = _sync(emu, config, fault=FaultRule("html_200", path_regex=r"/pullrequests$"))
    _one_error(result, f"GET {API}/pullrequests", "invalid JSON (text/html)", "re-run the sync")


def test_an_error_envelope_with_200_is_retried_and_never_a_record(
    emu: Emulator, config: Any, clean: dict[str, set[Any]]
) -> None:
    """Before: parse_response took a body without `values` for a single object and
    emitted the error envelope as a pull request."""
    once = _sync(emu, config, fault=FaultRule("error_200", path_regex=r"/pullrequests$", count=1))
    assert once.returncode == 0, once.stderr[-2000:]
    assert _keys(once) == clean
    always = _sync(emu, config, fault=FaultRule("error_200", path_regex=r"/pullrequests$"))
    _one_error(always, f"{API}/pullrequests is not a page of values", "Something went wrong")
    assert not always.records_by_stream.get("pull_requests")


def test_an_empty_page_that_has_a_next_is_followed(
    emu: Emulator, config: Any, clean: dict[str, set[Any]]
) -> None:
    """Before: the SDK's rule (an empty page ends the scan) left out every page after it,
    and the run exited 0."""
    result = _sync(emu, config, fault=FaultRule("empty_page", path_regex=r"/commits$", count=3))
    assert result.returncode == 0, result.stderr[-2000:]
    assert _keys(result) == clean


def test_endless_empty_pages_fail_instead_of_running_forever(emu: Emulator, config: Any) -> None:
    result = _sync(emu, config, fault=FaultRule("empty_page", path_regex=r"/commits$"))
    _one_error(result, f"{MAX_EMPTY_PAGES} empty pages in a row from {API}/commits")


def test_a_page_far_larger_than_pagelen_is_taken_whole(
    emu: Emulator, config: Any, clean: dict[str, set[Any]]
) -> None:
    result = _sync(emu, config, fault=FaultRule("oversized_page", path_regex=r"/commits$"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert _keys(result) == clean


# ---------------------------------------------------------------- objects the tap relies on


@pytest.mark.parametrize(
    ("endpoint", "field", "stream"),
    [
        (r"/commits$", "hash", "commits"),  # was KeyError: 'hash'
        (r"/pipelines$", "uuid", "pipelines"),  # was KeyError: 'uuid'
        (r"/projects$", "key", "projects"),  # was KeyError: 'key'
    ],
)
def test_an_object_without_its_key_fails_with_one_line(
    emu: Emulator, config: Any, endpoint: str, field: str, stream: str
) -> None:
    result = _sync(emu, config, drift=FieldDrift(endpoint, remove=[field]))
    line = _one_error(result, f"{stream}: GET /2.0/", f"whose '{field}' is missing")
    assert "KeyError" not in line


def test_a_listed_repository_without_its_uuid_fails_with_one_line(emu: Emulator, config: Any) -> None:
    """Before: KeyError: 'uuid', from the start-up plan, before any record."""
    drift = FieldDrift(r"^/2\.0/repositories/globex$", remove=["uuid"])
    line = _one_error(_sync(emu, config, drift=drift), "repositories: GET /2.0/repositories/globex")
    assert "whose 'uuid' is missing" in line and "KeyError" not in line


@pytest.mark.parametrize("value", ["yesterday", 5])
def test_a_replication_value_that_is_not_a_timestamp_never_reaches_the_state(
    emu: Emulator, config: Any, value: Any
) -> None:
    """Before: ValueError ('yesterday') or TypeError (5) lines; a string that sorts
    after every date would have become the bookmark."""
    result = _sync(emu, config, drift=FieldDrift(r"/commits$", add={"date": value}))
    _one_error(result, f"commits: GET {API}/commits", "'date'", "is not a timestamp")
    marks = [v for state in result.states for k, v in walk(state) if k == "replication_key_value"]
    assert all(is_timestamp(mark) for mark in marks), marks


@pytest.mark.parametrize(
    ("endpoint", "field", "stream"),
    [
        (r"/commits$", "date", "commits"),
        (r"/pipelines$", "created_on", "pipelines"),
        (r"/projects$", "updated_on", "projects"),
    ],
)
@pytest.mark.parametrize("how", ["null", "missing"])
def test_undated_objects_are_kept(
    emu: Emulator, config: Any, clean: dict[str, set[Any]], endpoint: str, field: str,
    stream: str, how: str,
) -> None:
    """Before: with a start_date, a record without its date was "never newer" and left
    out, and the run exited 0 (commits, pipelines and their steps, projects)."""
    drift = FieldDrift(endpoint, **({"add": {field: None}} if how == "null" else {"remove": [field]}))
    result = _sync(emu, config, drift=drift)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not invariant_problems(result, stream)
    assert _keys(result) == clean
    assert all(r.get(field) is None for r in result.records_by_stream[stream])


def test_a_nested_object_of_another_type_is_emitted_and_named(
    emu: Emulator, config: Any, clean: dict[str, set[Any]]
) -> None:
    """Before: AttributeError: 'str' object has no attribute 'get' (pipelines' state)."""
    result = _sync(emu, config, drift=FieldDrift(r"/pipelines$", add={"state": "PAUSED"}))
    assert result.returncode == 0, result.stderr[-2000:]
    assert not invariant_problems(result, "pipelines")
    assert _keys(result) == clean
    assert all(r["state"] == "PAUSED" for r in result.records_by_stream["pipelines"])
    assert any(
        "stream 'pipelines'" in line and "field 'state'" in line for line in result.warning_lines()
    )
