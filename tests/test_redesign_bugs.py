"""The data bugs the redesign (issue 12) removed, each pinned against the emulator.

Bug 3 (resume granularity at the default worker count) is pinned in
tests/test_reliability_resume.py::test_interrupted_pull_requests_resume_near_the_kill.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
from singer_sdk.singerlib import SchemaMessage

from tap_bitbucket.errors import ConfigError
from tap_bitbucket.output import TapWriter
from tap_bitbucket.settings import _NUMBERS, Settings
from tests.emulator import Emulator, FaultRule
from tests.harness import ERROR_PREFIX, api_token_config, run_tap

# ------------------------------------------------------------------ bug 1: stream maps

FILTER_API = {"repositories": {"__filter__": "slug != 'api'"}}
CHILD_MAPS = {
    **FILTER_API,
    "branches": {"__alias__": "git_branches"},
    # `__else__: None` keeps only what is mapped: the key properties must be named.
    "pull_requests": {"pr_title": "title", "repo_uuid": "repo_uuid", "id": "id", "__else__": None},
    "commits": {"message": "message[:20]"},
}


def _records(result: Any) -> Counter[str]:
    return Counter(
        json.dumps([m["stream"], m["record"]], sort_keys=True)
        for m in result.messages
        if m["type"] == "RECORD"
    )


@pytest.fixture(scope="module")
def mapped_runs(emulator: Emulator) -> dict[int, tuple[Any, list[str]]]:
    runs = {}
    for workers in (1, 4, 8):
        emulator.reset_log()
        config = api_token_config(emulator, max_workers=workers, stream_maps=CHILD_MAPS)
        result = run_tap(config)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[workers] = (result, [e.path for e in emulator.request_log])
    return runs


@pytest.mark.parametrize("workers", [1, 4, 8])
def test_a_filtered_repository_gets_no_child_requests_or_records(
    mapped_runs: dict[int, tuple[Any, list[str]]], workers: int
) -> None:
    result, paths = mapped_runs[workers]
    repositories = result.records_by_stream["repositories"]
    assert repositories and all(r["slug"] != "api" for r in repositories)
    children = [
        (stream, r)
        for stream, rows in result.records_by_stream.items()
        if stream != "repositories"
        for r in rows
        if "repo_slug" in r
    ]
    assert children  # the other repositories' children are there
    leaked = [(s, r["repo_slug"]) for s, r in children if r["repo_slug"] == "api"]
    assert leaked == []
    assert [p for p in paths if re.match(r"/2\.0/repositories/[^/]+/api/", p)] == []


def test_child_stream_maps_give_the_same_records_at_every_worker_count(
    mapped_runs: dict[int, tuple[Any, list[str]]],
) -> None:
    one = _records(mapped_runs[1][0])
    streams = {json.loads(line)[0] for line in one}
    assert "git_branches" in streams and "branches" not in streams
    prs = [json.loads(line)[1] for line in one if json.loads(line)[0] == "pull_requests"]
    assert prs and all("pr_title" in r and "title" not in r for r in prs)
    for workers in (4, 8):
        assert _records(mapped_runs[workers][0]) == one, workers


# ------------------------------------------------- bug 2: a listing the run depends on


def _error_line(result: Any) -> str:
    lines = result.error_lines()
    assert len(lines) == 1, result.stderr[-3000:]
    return str(lines[0])


def test_a_403_on_the_workspace_listing_fails_the_run(make_emulator: Any) -> None:
    emu = make_emulator()
    emu.add_fault(FaultRule("error", status=403, path_regex=r"^/2\.0/user/workspaces$"))
    result = run_tap(api_token_config(emu))
    assert result.returncode != 0
    line = _error_line(result)
    assert "workspaces" in line and "scope" in line and "403" in line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_repository_listing_fails_the_run_and_names_the_workspace(
    make_emulator: Any, status: int
) -> None:
    emu = make_emulator()
    emu.add_fault(FaultRule("error", status=status, path_regex=r"^/2\.0/repositories/acme$"))
    result = run_tap(api_token_config(emu, workspaces=["acme"]))
    assert result.returncode != 0
    line = _error_line(result)
    assert str(status) in line
    if status == 403:
        assert "workspace acme" in line and "scope" in line


# ------------------------------------------------------- bug 4: the SCHEMA line cache


@pytest.mark.unit
def test_schema_lines_are_kept_per_stream(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """Two streams whose SCHEMA share one dict (or one freed dict's id) each get their own
    line: the old cache keyed by id(schema) wrote stream a's line for stream b."""
    writer = TapWriter()
    schema = {"type": "object", "properties": {"id": {"type": "integer"}}}
    writer.write_message(SchemaMessage("a", schema, ["id"]))
    writer.write_message(SchemaMessage("b", schema, ["id"]))
    writer.close()
    lines = [json.loads(line) for line in capsysbinary.readouterr().out.splitlines()]
    assert [line["stream"] for line in lines] == ["a", "b"]


# ------------------------------------------------------------ bug 5: 0 means 0


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(_NUMBERS))
def test_every_numeric_setting_at_zero_is_zero_or_refused(name: str) -> None:
    config: dict[str, Any] = {name: 0}
    if name == "shard_index":
        config["shard_count"] = 2
    try:
        settings = Settings.from_config(config)
    except ConfigError as exc:
        assert exc.setting == name
        assert name in {"requests_per_hour", "request_timeout_seconds", "max_retries",
                        "max_workers", "shard_count", "max_requests_per_run",
                        "progress_interval_seconds"}
        return
    assert getattr(settings, name) == 0


@pytest.mark.unit
def test_absent_settings_take_their_defaults() -> None:
    assert Settings.from_config({}) == Settings()


def test_rate_limit_max_wait_zero_fails_at_the_first_429(make_emulator: Any) -> None:
    """It used to wait up to the default hour; with 0 the first 429 ends the run."""
    emu = make_emulator()
    rule = emu.add_fault(FaultRule("429", path_regex=r"/pullrequests$"))
    config = api_token_config(
        emu, repositories=["acme/api"], rate_limit_max_wait_seconds=0, backoff_base_seconds=0
    )
    result = run_tap(config, timeout=120)
    assert result.returncode != 0
    line = _error_line(result)
    assert "429" in line and "after 1 tries" in line, line
    assert rule.fired <= 2  # the main thread's one try, and the prefetch's one


def test_backoff_zero_retries_without_waiting(make_emulator: Any) -> None:
    emu = make_emulator()
    emu.add_fault(FaultRule("503", path_regex=r"/pullrequests$", count=2))
    config = api_token_config(
        emu, repositories=["acme/api"], backoff_base_seconds=0, backoff_max_seconds=0
    )
    result = run_tap(config, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    waits = re.findall(r"waiting ([\d.]+)s", result.stderr)
    assert waits and set(waits) == {"0.0"}


# ------------------------------------------------ bug 6: the 401 hint, one HTTP path


def test_a_rejected_api_token_gets_the_authenticators_hint(emulator: Emulator) -> None:
    config = {**api_token_config(emulator), "api_token": "not-the-token"}
    for args in ((), ("--test",)):
        result = run_tap(config, args=args, parse="none")
        assert result.returncode != 0
        line = _error_line(result)
        assert "Atlassian account email" in line, line
        assert line.startswith(ERROR_PREFIX)


def test_the_connection_check_uses_the_shared_request_path(make_emulator: Any) -> None:
    """User-Agent and retries apply to `--test` too (it bypassed the session before)."""
    emu = make_emulator()
    emu.add_fault(FaultRule("503", path_regex=r"^/2\.0/user/workspaces$", count=1))
    config = api_token_config(emu, user_agent="probe/1.0", backoff_base_seconds=0)
    result = run_tap(config, args=("--test",), parse="none")
    assert result.returncode == 0, result.stderr[-2000:]
    checks = [e for e in emu.request_log if e.path == "/2.0/user/workspaces"]
    assert [e.status for e in checks[:2]] == [503, 200]
    assert {e.user_agent for e in checks} == {"probe/1.0"}
