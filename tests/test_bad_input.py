"""Hand-picked pins for the bad-input defects of issue 16, each found by the issue or by
the property tests (tests/test_fuzz_*.py), against the emulator as a subprocess.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tap_bitbucket.catalog_check import check_catalog
from tap_bitbucket.errors import CatalogError, ConfigError, StateError
from tap_bitbucket.settings import Settings
from tap_bitbucket.streams.state_check import stale_repository_entries, validate_state
from tests.emulator import Emulator, FaultRule
from tests.harness import START_DATE, api_token_config, catalog_selecting, run_tap

REPO = "globex/api-fork"
STREAMS = {"workspaces", "repositories", "pull_requests", "pipelines", "branch_restrictions"}


@pytest.fixture(scope="module")
def first_run(emulator: Emulator) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    config = api_token_config(
        emulator, workspaces=["globex"], repositories=[REPO], start_date=START_DATE
    )
    catalog = catalog_selecting(STREAMS)
    result = run_tap(config, catalog=catalog)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.last_state
    return config, catalog, result.last_state


def _one_error(result: Any) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.error_lines()
    assert len(lines) == 1, result.stderr[-2000:]
    return str(lines[0])


# ------------------------------------------------------------- the first case


def test_a_stream_bookmark_that_is_not_an_object_names_the_stream(first_run: Any) -> None:
    """Issue 16: this ended in `AttributeError: 'str' object has no attribute 'items'`."""
    config, catalog, _ = first_run
    result = run_tap(config, state={"bookmarks": {"pull_requests": "garbage"}}, catalog=catalog)
    line = _one_error(result)
    assert "'bookmarks.pull_requests' must be an object (got a string)" in line
    assert "Fix or remove the state file" in line
    assert "AttributeError" not in line


@pytest.mark.unit
@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        # found by test_a_known_key_with_a_bad_value: AttributeError 'NoneType' ... 'pop'
        (
            "progress_markers",
            None,
            "'bookmarks.pipelines.partitions[0].progress_markers' must be an object (got null)",
        ),
        ("progress_markers", "x", "must be an object (got a string)"),
        (
            "running",
            [],
            "'bookmarks.pipelines.partitions[0].running' must be an object (got a list)",
        ),
        (
            "running",
            {"{p}": 5},
            "'bookmarks.pipelines.partitions[0].running.{p}' is not a date-time",
        ),
        ("recent_keys", "7@x", "must be a list (got a string)"),
        ("recent_keys", [7], "must be a list of strings"),
        (
            "high_water",
            17,
            "'bookmarks.pipelines.partitions[0].high_water' is not a date-time (17)",
        ),
        ("refreshed_at", "9999-12-31T23:59:59Z", "is in the future"),
        ("replication_key_value", "9999-12-31T23:59:59Z", "is in the future"),
        ("replication_key", 3, "must be a string (got a number)"),
        ("repo_updated_on", {}, "must be a string (got an object)"),
        ("replication_key_signpost", True, "is not a date-time (True)"),
        ("context", {"repo_uuid": ["x"]}, "context.repo_uuid' must be a string or a number"),
    ],
)
def test_every_key_the_tap_reads_is_checked(key: str, value: Any, says: str) -> None:
    state = {"bookmarks": {"pipelines": {"partitions": [{"context": {"repo_uuid": "{r}"}}]}}}
    state["bookmarks"]["pipelines"]["partitions"][0][key] = value
    with pytest.raises(StateError) as info:
        validate_state(state)
    assert says in str(info.value)


# ------------------------------------------------------------ the second case


def test_a_partition_of_a_renamed_repository_gets_one_warning(first_run: Any) -> None:
    """Issue 16: a partition whose context matches no repository was silently ignored."""
    config, catalog, state = first_run
    state = copy.deepcopy(state)
    for stream in ("pull_requests", "pipelines"):
        old = copy.deepcopy(state["bookmarks"][stream]["partitions"][0])
        old["context"]["repo_slug"] = "api-fork-old-name"
        state["bookmarks"][stream]["partitions"].append(old)
    result = run_tap(config, state=state, catalog=catalog)
    assert result.returncode == 0, result.stderr[-2000:]
    stale = [line for line in result.warning_lines() if "no longer applies" in line]
    assert len(stale) == 1, result.warning_lines()
    assert "globex/api-fork-old-name" in stale[0] and "pipelines, pull_requests" in stale[0]
    assert "delete it from the state" in stale[0]


@pytest.mark.unit
def test_only_entries_of_listed_workspaces_are_judged() -> None:
    state = {
        "bookmarks": {
            "commits": {
                "partitions": [
                    {"context": {"workspace_slug": "a", "repo_slug": "x", "repo_uuid": "{1}"}},
                    {"context": {"workspace_slug": "a", "repo_slug": "y", "repo_uuid": "{1}"}},
                    {"context": {"workspace_slug": "b", "repo_slug": "z", "repo_uuid": "{2}"}},
                    {"context": {"repo_uuid": "{3}"}},
                ]
            }
        }
    }
    listed = {"a": [{"uuid": "{1}", "slug": "x"}]}
    assert stale_repository_entries(state, listed) == {"repository a/y ({1})": ["commits"]}


# ------------------------------------------------- found by tests/test_fuzz_config.py


def test_a_control_character_in_a_setting_keeps_the_error_on_one_line(first_run: Any) -> None:
    """workspaces ['0\\r0'] printed the error line in two (the CR was written raw)."""
    config, catalog, _ = first_run
    result = run_tap({**config, "workspaces": ["0\r0"]}, catalog=catalog)
    line = _one_error(result)
    assert "workspace '0\\r0'" in line and "check the slug" in line


def test_a_setting_of_the_wrong_type_says_what_to_set(first_run: Any) -> None:
    """ "[] is not of type 'string', 'null'" said what was wrong, not what to do."""
    config, catalog, _ = first_run
    line = _one_error(run_tap({**config, "user_agent": []}, catalog=catalog))
    assert "Invalid setting 'user_agent'" in line and "set it to a string, or remove it" in line


def test_an_api_host_that_cannot_be_reached_names_the_setting() -> None:
    """The nightly profile drew api_url null (the default host, unreachable here): the
    line said only that Bitbucket or the network was failing."""
    config = {
        "api_token": "t",
        "username": "u@example.com",
        "workspaces": ["acme"],
        "api_url": "https://api.bitbucket.invalid/2.0",
        "max_retries": 1,
    }
    line = _one_error(run_tap(config))
    assert "Cannot reach api.bitbucket.invalid: check 'api_url'" in line, line


@pytest.mark.unit
@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        # found by the nightly profile of tests/test_fuzz_config.py
        ("request_timeout_seconds", 536870912, "must be 3600 or less (one hour)"),
        ("workspaces", ["#"], "workspace '#' is not a workspace slug"),
        ("workspaces", ["acme?x"], "workspace 'acme?x' is not a workspace slug"),
    ],
)
def test_a_setting_the_request_cannot_carry_is_refused(setting: str, value: Any, says: str) -> None:
    config = {"api_token": "t", "username": "u@example.com", setting: value}
    with pytest.raises(ConfigError) as refused:
        Settings.from_config(config)
    assert says in str(refused.value)


@pytest.mark.unit
@pytest.mark.parametrize("value", [0.001, 0.5])
def test_a_pace_under_one_request_an_hour_is_refused(value: float) -> None:
    """requests_per_hour 0.001 was accepted, and the pacer then waited 83 days
    before the second request: a run that looks hung."""
    config = {"api_token": "t", "username": "u@example.com", "requests_per_hour": value}
    with pytest.raises(ConfigError) as refused:
        Settings.from_config(config)
    assert f"must be 1 or more, got {value:g}" in str(refused.value)


# ------------------------------------------------ found by tests/test_fuzz_catalog.py


@pytest.mark.unit
@pytest.mark.parametrize(
    ("catalog", "says"),
    [
        # each of these ended in a TypeError's or AttributeError's text
        ({"streams": None}, "'streams' must be a list"),
        # found by the nightly profile: the SDK's EmptySchemaTypeError text
        (
            {"streams": [{"tap_stream_id": "projects", "schema": {"properties": {"updated_on": {}}}}]},
            "entry 'projects': the replication key 'updated_on' has a schema without a type",
        ),
        ({"streams": [None]}, "streams[0] must be an object with a 'tap_stream_id'"),
        (
            {"streams": [{"tap_stream_id": "workspaces", "schema": {}, "metadata": None}]},
            "entry 'workspaces': 'metadata' must be a list",
        ),
        (
            {"streams": [{"tap_stream_id": "w", "schema": {"properties": {"x": None}}}]},
            "entry 'w': schema.properties.x must be a JSON schema object",
        ),
        (
            {
                "streams": [
                    {
                        "tap_stream_id": "w",
                        "schema": {},
                        "metadata": [{"breadcrumb": [[]], "metadata": {}}],
                    }
                ]
            },
            "metadata[0] must be an object with a 'breadcrumb' list of strings",
        ),
        (
            {
                "streams": [
                    {
                        "tap_stream_id": "w",
                        "schema": {},
                        "metadata": [{"breadcrumb": [], "metadata": {"replication-key": [None]}}],
                    }
                ]
            },
            "metadata 'replication-key' has the wrong type",
        ),
    ],
)
def test_a_malformed_catalog_is_refused_naming_the_entry(catalog: Any, says: str) -> None:
    with pytest.raises(CatalogError) as info:
        check_catalog(catalog)
    assert says in str(info.value) and "--discover" in str(info.value)


def test_a_malformed_catalog_fails_with_one_line(first_run: Any) -> None:
    config, _, _ = first_run
    line = _one_error(run_tap(config, catalog={"streams": None}))
    assert "Invalid catalog: 'streams' must be a list" in line


# ------------------------------------------- a refused workspace listing (issue 16)


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ({"kind": "error", "status": 403}, ("workspace globex", "scope", "403")),
        # Found with tests/test_fuzz_server.py's fault kinds: any failed listing of one
        # workspace stopped the run at once, mid-way through the other workspaces.
        ({"kind": "error_200"}, ("/2.0/repositories/globex", "is not a page of values")),
        ({"kind": "error", "status": 404}, ("/2.0/repositories/globex", "HTTP 404")),
    ],
    ids=["403", "200-error-envelope", "404"],
)
def test_a_refused_workspace_listing_fails_after_the_other_workspaces_are_synced(
    make_emulator: Any, fault: dict[str, Any], says: tuple[str, ...]
) -> None:
    """globex's repository listing fails: acme is synced whole, with its STATE, and only
    then does the run fail, with one line naming globex's listing and what to do."""
    emu = make_emulator()
    clean = run_tap(api_token_config(emu, workspaces=["acme"]))
    assert clean.returncode == 0, clean.stderr[-3000:]
    emu.add_fault(FaultRule(path_regex=r"^/2\.0/repositories/globex$", **fault))
    refused = run_tap(api_token_config(emu, workspaces=["acme", "globex"], max_retries=2))
    assert refused.returncode != 0
    (line,) = refused.error_lines()
    assert all(part in line for part in says), line
    assert "The other workspaces were synced" in line, line
    assert "Traceback" not in refused.stderr

    def acme_rows(result: Any) -> dict[str, list[str]]:
        rows: dict[str, list[str]] = {}
        for stream, records in result.records_by_stream.items():
            if stream == "workspaces":
                continue  # the refused run also has globex's own row
            kept = [
                json.dumps(r, sort_keys=True)
                for r in records
                if "globex" not in json.dumps(r.get("workspace_slug") or r.get("full_name") or "")
            ]
            rows[stream] = sorted(kept)
        return rows

    assert acme_rows(refused) == acme_rows(clean)
    acme = {
        json.dumps(p["context"], sort_keys=True)
        for s in clean.last_state["bookmarks"].values()
        for p in s.get("partitions") or []
    }
    written = {
        json.dumps(p["context"], sort_keys=True)
        for s in refused.last_state["bookmarks"].values()
        for p in s.get("partitions") or []
    }
    assert acme <= written
