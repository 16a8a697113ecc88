"""Expected errors skip one stream for one repository with one WARNING; the rest completes.

* 409 on commits/branches/tags of the empty repository;
* 404 on pipelines/deployments/environments where Pipelines is disabled;
* 403 on the permission endpoints for an access token (it cannot read permissions);
* 404 everywhere under a repository deleted while the sync runs;
* 555 on the diffstat of a PR whose diff Bitbucket cannot compute (notes §8.10).

Any other 4xx ends the sync: one `tap-bitbucket: error:` line with the HTTP status, the
path and Bitbucket's message, a non-zero exit code, no traceback and no credential.
Everything runs the real CLI against the emulator; expectations come from its data and its
routing table.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.emulator import Emulator, FaultRule
from tests.harness import (
    CREDENTIAL_WIDE,
    DEFAULT_STREAMS,
    SOURCE,
    STREAM_CLASSES,
    Scope,
    TapResult,
    access_token_config,
    api_token_config,
    check_skip_warnings,
    completeness_problems,
    discovered_catalog,
    drop_skipped,
    expected_rows,
    expected_skips,
    parse_skip,
    run_tap,
    secret_values,
    select_only,
    walk,
)

ACME = Scope(repositories=lambda name: fnmatch.fnmatchcase(name, "acme/*"))


def _assert_clean_finish(result: TapResult) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.error_lines() == []
    assert "Traceback" not in result.stderr
    state = result.last_state
    assert state is not None
    assert [k for k, _ in walk(state) if k == "progress_markers"] == []


def test_empty_repository_and_disabled_pipelines_are_skipped(emulator: Emulator) -> None:
    ds = emulator.dataset
    in_scope = [r for r in ds.repos if ACME.repo_in_scope(r.full_name)]
    # The acme workspace has both special repositories: the checks below cannot pass vacuously.
    assert any(r.empty for r in in_scope)
    assert any(not r.pipelines_enabled for r in in_scope)

    result = run_tap(api_token_config(emulator, repositories=["acme/*"]))
    _assert_clean_finish(result)

    skips = expected_skips(ds, ACME, DEFAULT_STREAMS)
    assert {status for _, _, status in skips} == {404, 409}
    assert check_skip_warnings(result, skips) == []
    for stream, where, status, reason in filter(None, map(parse_skip, result.skip_lines())):
        if status == 409:
            assert "empty" in reason, (stream, where, reason)
        else:
            assert "Pipelines" in reason and "disabled" in reason, (stream, where, reason)

    expected = drop_skipped(expected_rows(ds, ACME, DEFAULT_STREAMS), skips)
    assert completeness_problems(result.records_by_stream, expected) == []


def test_access_token_without_permission_scope_skips_permission_streams(
    emulator: Emulator,
) -> None:
    ds = emulator.dataset
    scope = Scope(workspaces=("acme",), repositories=ACME.repositories)
    config = access_token_config(emulator, ["acme"], repositories=["acme/*"])
    result = run_tap(config)
    _assert_clean_finish(result)

    skips = expected_skips(ds, scope, DEFAULT_STREAMS, access_token=True)
    forbidden = {(stream, where) for stream, where, status in skips if status == 403}
    # Repository and project permission streams, for every repository and project.
    assert {stream for stream, _ in forbidden} == {
        "repository_user_permissions",
        "repository_group_permissions",
        "project_user_permissions",
        "project_group_permissions",
    }
    assert any(where.startswith("project ") for _, where in forbidden)
    # The refusal is about the credential, not the repository (issue 13): learned at the
    # first partition, then no other partition asks, and one WARNING per stream names
    # the scope to grant.
    missing = {stream for stream, _ in forbidden}
    assert check_skip_warnings(result, {skip for skip in skips if skip[2] != 403}) == []
    wide_lines = [line for line in result.skip_lines() if CREDENTIAL_WIDE in line]
    assert sorted(line.split("'")[1] for line in wide_lines) == sorted(missing), wide_lines
    for line in wide_lines:
        assert "Bitbucket requires repository:admin" in line and "Grant OAuth scope" in line
    # Only the requests already in flight when the first refusal came back were made:
    # at most one per worker and stream, where every partition used to ask.
    refused = [e for e in emulator.request_log if e.status == 403]
    assert len(refused) <= len(missing) * 4, len(refused)
    assert len(refused) < len(forbidden), len(refused)

    expected = drop_skipped(expected_rows(ds, scope, DEFAULT_STREAMS), skips)
    assert completeness_problems(result.records_by_stream, expected) == []
    for secret in secret_values(emulator):
        assert secret not in result.stdout
        assert secret not in result.stderr


def _parent(stream: str) -> str | None:
    parent = STREAM_CLASSES[stream].parent_stream_type
    return parent.name if parent else None


def _delete_when_fired(emu: Emulator, rule: FaultRule, victim: str) -> threading.Thread:
    """Delete `victim` as soon as `rule` fires (the emulator counts it on arrival)."""

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if rule.fired:
                emu.delete_repository(victim)
                return
            time.sleep(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_repository_deleted_during_the_sync_is_skipped(
    make_emulator: Callable[..., Emulator],
) -> None:
    # One repository at a time. The first request for the first repository's children is
    # held up for a moment, and the second repository is deleted meanwhile: after it was
    # listed, before any request of its own.
    emu = make_emulator()
    rule = emu.add_fault(
        FaultRule("latency", path_regex=r"^/2\.0/repositories/acme/api/", latency_ms=1000, count=1)
    )
    ds = emu.dataset
    # The deleted repository is the second of three: the sync must go on with the third.
    names = ["acme/api", "acme/web-app", "acme/infra"]
    scope = Scope(repositories=lambda n: n in names)
    listed = expected_rows(ds, scope, DEFAULT_STREAMS)["repositories"]
    assert [r[SOURCE]["full_name"] for r in listed] == names

    watcher = _delete_when_fired(emu, rule, "acme/web-app")
    result = run_tap(api_token_config(emu, repositories=names, max_workers=1))
    watcher.join(timeout=5)
    assert ds.repo("acme/web-app").deleted
    _assert_clean_finish(result)

    # Every repository-level stream of the deleted repository warns once, besides the
    # expected skips of the others (Pipelines is disabled on acme/infra).
    gone = {
        (stream, "repository acme/web-app", 404)
        for stream in DEFAULT_STREAMS
        if _parent(stream) == "repositories"
    }
    others = expected_skips(ds, scope, DEFAULT_STREAMS)
    assert others and not any("web-app" in where for _, where, _ in others)
    assert check_skip_warnings(result, gone | others) == []
    for stream, where, _, reason in filter(None, map(parse_skip, result.skip_lines())):
        if "web-app" in where:
            assert "no longer exists" in reason, (stream, where, reason)

    # The other repositories are complete; the deleted one was listed before it went away.
    expected = drop_skipped(expected_rows(ds, scope, DEFAULT_STREAMS), others)
    expected["repositories"] = listed
    assert completeness_problems(result.records_by_stream, expected) == []


def test_a_555_diffstat_skips_that_pull_request_only(
    make_emulator: Callable[..., Emulator],
) -> None:
    """A tolerated 5xx is an answer, not a fault: it used to be retried max_retries times
    (with backoff) and then fail the whole run."""
    emu = make_emulator()
    path = "/2.0/repositories/acme/web-app/pullrequests/1/diffstat"
    rule = emu.add_fault(FaultRule("error", status=555, path_regex=f"^{path}$"))
    streams = {"repositories", "pull_requests", "pull_request_diffstats"}
    scope = Scope(repositories=lambda name: name == "acme/web-app")
    result = run_tap(
        api_token_config(emu, repositories=["acme/web-app"], max_retries=3),
        catalog=select_only(discovered_catalog(), streams),
    )
    _assert_clean_finish(result)
    assert rule.fired >= 1, "the fault never fired: the path is not one the tap reads"
    diffstat_requests = [e for e in emu.request_log if e.path == path]
    assert len(diffstat_requests) <= 2  # the main thread's one try, and the prefetch's one
    skips = [p for p in map(parse_skip, result.skip_lines()) if p]
    assert [(s[0], s[1], s[2]) for s in skips] == [
        ("pull_request_diffstats", "repository acme/web-app", 555)
    ]
    expected = expected_rows(emu.dataset, scope, streams)
    expected["pull_request_diffstats"] = [
        row for row in expected["pull_request_diffstats"] if row["pull_request_id"] != 1
    ]
    assert expected["pull_request_diffstats"], "no other PR has a diffstat: nothing is checked"
    assert completeness_problems(result.records_by_stream, expected) == []


# ---------------------------------------------------------------------------- other 4xx

CASES = [
    # (id, status, path the emulator answers with the error, credential, repositories)
    ("tags-400-api-token", 400, "/2.0/repositories/acme/api/refs/tags", "api_token", "acme/a*"),
    ("members-404-access-token", 404, "/2.0/workspaces/acme/members", "access_token", "acme/*"),
    (
        "comments-422-api-token",
        422,
        "/2.0/repositories/acme/web-app/pullrequests/1/comments",
        "api_token",
        "acme/web-app",
    ),
]


@pytest.mark.parametrize(
    ("status", "path", "credential", "repositories"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_any_other_4xx_fails_with_one_line(
    make_emulator: Callable[..., Emulator],
    status: int,
    path: str,
    credential: str,
    repositories: str,
) -> None:
    emu = make_emulator()
    rule = emu.add_fault(FaultRule("error", status=status, path_regex=f"^{path}$"))
    config: dict[str, Any] = (
        api_token_config(emu, repositories=[repositories])
        if credential == "api_token"
        else access_token_config(emu, ["acme"], repositories=[repositories])
    )
    result = run_tap(config)

    assert rule.fired >= 1, "the fault never fired: the path is not one the tap reads"
    assert result.returncode != 0
    errors = result.error_lines()
    assert len(errors) == 1, result.stderr[-3000:]
    line = errors[0]
    assert str(status) in line
    assert path.removeprefix("/2.0") in line
    assert "Something went wrong" in line  # Bitbucket's error.message
    assert "Traceback" not in result.stderr
    for secret in secret_values(emu):
        assert secret not in result.stderr
        assert secret not in result.stdout
    # Not an expected error: no skip WARNING for it.
    assert not [s for s in result.skip_lines() if f"HTTP {status}" in s]
