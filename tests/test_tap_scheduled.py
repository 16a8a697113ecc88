"""Scheduled syncs (issue 13): cheap no-change runs that miss no change, capped runs that
chain to a whole sync, the budget from the server, and progress lines.

Each shortcut a no-change run takes has a test here that makes the change it could
miss and sees the next run pick it up (or pick it up once the refresh falls due).
Expected values come from the emulator's data and request log.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tap_bitbucket.settings import Settings
from tap_bitbucket.streams import STREAM_TYPES
from tap_bitbucket.streams.bookmarks import Bookmarks
from tests.benchmark.minimum import refreshed_partitions
from tests.emulator import Emulator
from tests.harness import (
    DEFAULT_STREAMS,
    TapResult,
    access_token_config,
    api_token_config,
    discovered_catalog,
    expected_rows,
    primary_key,
    run_tap,
    select_only,
)

STREAMS = {str(c.name): c for c in STREAM_TYPES}
SLOW = sorted(n for n, c in STREAMS.items() if c.slow_changing and n in DEFAULT_STREAMS)
PROGRESS = re.compile(
    r"progress: (?P<done>\d+)/(?P<total>\d+) repositories, (?P<records>[\d,]+) records, "
    r"(?P<requests>[\d,]+) requests \((?P<left>[\d,]+) left this hour[^)]*\), ETA \S+"
)


def api_log(emu: Emulator) -> list[Any]:
    return [e for e in emu.request_log if e.path.startswith("/2.0/")]


def number(text: str) -> int:
    return int(text.replace(",", ""))


def records_of(result: TapResult, stream: str) -> list[dict[str, Any]]:
    return result.records_by_stream.get(stream, [])


def full_then_nochange(emu: Emulator, **settings: Any) -> tuple[TapResult, TapResult]:
    config = api_token_config(emu, **settings)
    full = run_tap(config)
    assert full.returncode == 0, full.stderr[-3000:]
    emu.reset_log()
    again = run_tap(config, state=full.last_state)
    assert again.returncode == 0, again.stderr[-3000:]
    return full, again


def rewound(state: dict[str, Any] | None, hours: float) -> dict[str, Any]:
    """The state as it would be ``hours`` later: every ``refreshed_at`` moved back."""
    out = copy.deepcopy(state or {})
    for stream_state in out.get("bookmarks", {}).values():
        for part in stream_state.get("partitions") or []:
            if "refreshed_at" in part:
                stamp = datetime.fromisoformat(part["refreshed_at"])
                part["refreshed_at"] = (stamp - timedelta(hours=hours)).isoformat()
    return out


# ----------------------------------------------------------------- the no-change run


def test_a_no_change_run_costs_at_most_four_requests_per_repository_and_workspace(
    make_emulator: Callable[..., Emulator],
) -> None:
    emu = make_emulator()
    _, again = full_then_nochange(emu)
    repos = [r for r in emu.dataset.repos if not r.deleted]
    workspaces = emu.dataset.workspaces
    made = len(api_log(emu))
    assert made <= 4 * len(repos) + 4 * len(workspaces), made
    # The start-up plan counted exactly what the run then asked: every partition it
    # asks costs one page when nothing changed.
    plan = next(line for line in again.stderr_lines if "plan: " in line)
    assert f"at least {made:,} requests expected" in plan, plan
    final = [m for m in map(PROGRESS.search, again.stderr_lines) if m][-1]
    assert number(final["requests"]) == made
    assert final["done"] == final["total"] == str(len(repos))


def test_git_streams_follow_the_repository_updated_on(
    make_emulator: Callable[..., Emulator],
) -> None:
    """A tag created moves the repository's updated_on (git activity): the next run
    reads that repository's branches, tags and commits, and only that one's."""
    emu = make_emulator()
    config = api_token_config(emu)
    full = run_tap(config)
    repo = next(
        r
        for r in emu.dataset.repos
        if not r.deleted and emu.dataset.collection(f"/repositories/{r.full_name}/refs/tags")
    )
    base = f"/repositories/{repo.full_name}"
    tag = dict(emu.dataset.collection(f"{base}/refs/tags")[0], name="v-scheduled-1")
    emu.add_item(f"{base}/refs/tags", tag, touch_repo=True)
    emu.reset_log()
    again = run_tap(config, state=full.last_state)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "v-scheduled-1" in {r["name"] for r in records_of(again, "tags")}
    git_paths = {e.path for e in api_log(emu) if "/refs/" in e.path or e.path.endswith("/commits")}
    assert git_paths == {
        f"/2.0{base}/refs/branches",
        f"/2.0{base}/refs/tags",
        f"/2.0{base}/commits",
    }


def test_a_first_pull_request_and_pipeline_bring_their_activity_and_deployments(
    make_emulator: Callable[..., Emulator],
) -> None:
    """PR activity and deployments are unread where this run found no pull request or
    pipeline at all (``records_only_with``). A quiet repository's first PR, with an
    approval, and first pipeline, with a deployment, are all picked up by the very next
    run; before that change, the no-change run asks that repository two requests."""
    emu = make_emulator(quiet_repos=2)
    data = emu.dataset
    quiet = next(r for r in data.repos if r.slug.startswith("quiet-"))
    source = next(r for r in data.repos if data.collection(f"/repositories/{r.full_name}/deployments"))
    src, dst = f"/repositories/{source.full_name}", f"/repositories/{quiet.full_name}"
    streams = ["repositories", "pull_requests", "pull_request_activity", "pipelines", "deployments"]
    catalog = select_only(discovered_catalog(), streams)
    config = api_token_config(emu)
    full = run_tap(config, catalog=catalog)
    assert full.returncode == 0, full.stderr[-3000:]

    emu.reset_log()
    idle = run_tap(config, state=full.last_state, catalog=catalog)
    assert idle.returncode == 0, idle.stderr[-3000:]
    asked = {e.path for e in api_log(emu) if e.path.startswith(f"/2.0{dst}/")}
    assert asked == {f"/2.0{dst}/pullrequests", f"/2.0{dst}/pipelines"}

    stamp = data.clock.isoformat()
    pull_request = dict(data.collection(f"{src}/pullrequests")[0], id=1, updated_on=stamp)
    emu.add_item(f"{dst}/pullrequests", pull_request, touch_repo=False)
    approval = next(a for a in data.collection(f"{src}/pullrequests/activity") if "approval" in a)
    approval = {
        "pull_request": dict(approval["pull_request"], id=1),
        "approval": dict(approval["approval"], date=stamp),
    }
    emu.add_item(f"{dst}/pullrequests/activity", approval, touch_repo=False)
    pipeline = dict(data.collection(f"{src}/pipelines")[0], uuid="{quiet-first-pipeline}")
    emu.add_item(f"{dst}/pipelines", dict(pipeline, created_on=stamp), touch_repo=False)
    deployment = dict(data.collection(f"{src}/deployments")[0], uuid="{quiet-first-deploy}")
    emu.add_item(f"{dst}/deployments", deployment, touch_repo=False)

    again = run_tap(config, state=idle.last_state, catalog=catalog)
    assert again.returncode == 0, again.stderr[-3000:]
    repo_uuid = quiet.uuid
    assert [r["id"] for r in records_of(again, "pull_requests") if r["repo_uuid"] == repo_uuid] == [1]
    activity = [r for r in records_of(again, "pull_request_activity") if r["repo_uuid"] == repo_uuid]
    assert [(a["pull_request_id"], a["activity_kind"]) for a in activity] == [(1, "approval")]
    assert "{quiet-first-pipeline}" in {r["uuid"] for r in records_of(again, "pipelines")}
    assert "{quiet-first-deploy}" in {r["uuid"] for r in records_of(again, "deployments")}


def test_a_push_is_picked_up_by_commits_and_branches(
    make_emulator: Callable[..., Emulator],
) -> None:
    emu = make_emulator()
    config = api_token_config(emu)
    full = run_tap(config)
    summary = emu.mutate()  # new commits on a branch, the repository touched
    again = run_tap(config, state=full.last_state)
    assert again.returncode == 0, again.stderr[-3000:]
    new_commits = {p.rsplit("/", 1)[-1] for p in summary.changed["commits"]}
    assert new_commits and new_commits <= {r["hash"] for r in records_of(again, "commits")}
    touched = {p.split("/refs/branches/", 1)[1] for p in summary.changed["branches"]}
    assert touched <= {r["name"] for r in records_of(again, "branches")}


def test_commit_statuses_are_not_hidden_behind_an_unchanged_repository(
    make_emulator: Callable[..., Emulator],
) -> None:
    """Statuses change without a push, so with commit_statuses selected the commits
    scan runs even though the repository did not move."""
    emu = make_emulator()
    catalog = select_only(discovered_catalog(), [*DEFAULT_STREAMS, "commit_statuses"])
    config = api_token_config(emu, repositories=["acme/api"])
    full = run_tap(config, catalog=catalog)
    assert full.returncode == 0, full.stderr[-3000:]
    emu.reset_log()
    again = run_tap(config, state=full.last_state, catalog=catalog)
    assert any(e.path == "/2.0/repositories/acme/api/commits" for e in api_log(emu))
    emu.reset_log()
    plain = run_tap(config, state=full.last_state)
    assert again.returncode == plain.returncode == 0
    assert not any(e.path == "/2.0/repositories/acme/api/commits" for e in api_log(emu))


# --------------------------------------------------------- slow-changing settings


def test_a_settings_change_waits_for_its_refresh_then_is_picked_up(
    make_emulator: Callable[..., Emulator],
) -> None:
    """A new deploy key moves nothing Bitbucket reports: the next run does not see it
    within the interval, and does once a whole interval (24 h) has passed."""
    emu = make_emulator()
    config = api_token_config(emu)
    full = run_tap(config)
    repo = next(r for r in emu.dataset.repos if not r.deleted)
    path = f"/repositories/{repo.full_name}/deploy-keys"
    existing = emu.dataset.collection(path) or []
    key = {"id": 987654321, "label": "scheduled", "key": "ssh-ed25519 AAAA", "type": "deploy_key"}
    if existing:
        key = {**existing[0], **key}
    emu.add_item(path, key, touch_repo=False)

    soon = run_tap(config, state=full.last_state)
    soon_ids = {r["id"] for r in records_of(soon, "deploy_keys")}
    emu.reset_log()
    later = run_tap(config, state=rewound(soon.last_state, 24))
    assert later.returncode == 0, later.stderr[-3000:]
    assert 987654321 in {r["id"] for r in records_of(later, "deploy_keys")}
    # After a whole interval every slow-changing partition was read again: none older.
    asked = {e.path for e in api_log(emu)}
    for stream in SLOW:
        cls = STREAMS[stream]
        if (
            cls.parent_stream_type is not None
            and cls.parent_stream_type.__name__ == "RepositoriesStream"
        ):
            want = "/2.0" + cls.path.format(workspace_slug=repo.workspace, repo_slug=repo.slug)
            assert want in asked, stream
    # Within the interval it is seen only if its partition happened to fall due.
    due_soon = ("deploy_keys", repo.full_name) in refreshed_partitions(
        full.last_state, soon.last_state
    )
    assert (987654321 in soon_ids) == due_soon


def test_admin_refresh_hours_zero_reads_settings_on_every_run(
    make_emulator: Callable[..., Emulator],
) -> None:
    emu = make_emulator()
    _, again = full_then_nochange(emu, admin_refresh_hours=0)
    expected = expected_rows(emu.dataset, streams=SLOW)
    for stream in SLOW:
        keys = list(STREAMS[stream].primary_keys)
        got = {primary_key(r, keys) for r in records_of(again, stream)}
        assert got == {primary_key(r, keys) for r in expected.get(stream, [])}, stream


# ------------------------------------------------------------------- capped runs


def _union(runs: list[TapResult]) -> dict[str, set[tuple[Any, ...]]]:
    out: dict[str, set[tuple[Any, ...]]] = {}
    for run in runs:
        for stream, rows in run.records_by_stream.items():
            keys = list(STREAMS[stream].primary_keys)
            out.setdefault(stream, set()).update(primary_key(r, keys) for r in rows)
    return out


def test_capped_runs_chain_to_a_whole_sync(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator()
    config = api_token_config(emu)
    clean = run_tap(config)
    assert clean.returncode == 0
    per_repo = _requests_per_repository(emu)
    cap = 200
    runs: list[TapResult] = []
    state: dict[str, Any] | None = None
    emu.reset_log()
    for _ in range(12):
        run = run_tap({**config, "max_requests_per_run": cap}, state=state)
        assert run.returncode == 0, run.stderr[-3000:]
        made = len(api_log(emu))
        emu.reset_log()
        # Within the cap plus the repository in flight when it was reached.
        assert made <= cap + max(per_repo.values()), made
        runs.append(run)
        state = run.last_state
        if not any("max_requests_per_run" in line for line in run.stderr_lines):
            break
    else:
        pytest.fail("capped runs never completed a pass")
    assert len(runs) > 1
    capped = [
        line for r in runs[:-1] for line in r.stderr_lines if "max_requests_per_run (" in line
    ]
    assert len(capped) == len(runs) - 1 and all("repositories left" in line for line in capped)
    assert _union(runs) == _union([clean])


def _requests_per_repository(emu: Emulator) -> dict[str, int]:
    out: dict[str, int] = {}
    for entry in api_log(emu):
        match = re.match(r"^/2\.0/repositories/([^/]+/[^/]+)/", entry.path)
        if match:
            out[match[1]] = out.get(match[1], 0) + 1
    return out


def test_capped_no_change_runs_rotate_so_no_repository_starves(
    make_emulator: Callable[..., Emulator],
) -> None:
    emu = make_emulator()
    config = api_token_config(emu)
    state = run_tap(config).last_state
    repos = {r.full_name for r in emu.dataset.repos if not r.deleted}
    seen: list[set[str]] = []
    cap = 20  # the listings and about three repositories of a no-change pass
    for _ in range(len(repos)):
        emu.reset_log()
        run = run_tap({**config, "max_requests_per_run": cap}, state=state)
        assert run.returncode == 0, run.stderr[-3000:]
        state = run.last_state
        seen.append(
            {
                m[1]
                for e in api_log(emu)
                if (m := re.match(r"^/2\.0/repositories/(.+)/pullrequests$", e.path))
            }
        )
        if set().union(*seen) == repos:
            break
    assert set().union(*seen) == repos, seen
    # Each run covers part of the workspace; each workspace keeps its own place and
    # the workspaces take turns, so all are covered within ceil(R / per run) + W runs.
    fewest = min(len(s) for s in seen[:-1] or seen)
    assert max(len(s) for s in seen) < len(repos)
    assert len(seen) <= -(-len(repos) // fewest) + len(emu.dataset.workspaces), seen


# ------------------------------------------------------------ budget and progress


def test_progress_lines_say_the_truth(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(latency_ms=20)
    result = run_tap(api_token_config(emu, progress_interval_seconds=0.5))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [m for m in map(PROGRESS.search, result.stderr_lines) if m]
    assert len(lines) >= 3, result.stderr[-2000:]
    done = [int(m["done"]) for m in lines]
    assert done == sorted(done)
    final = lines[-1]
    repos = [r for r in emu.dataset.repos if not r.deleted]
    assert final["done"] == final["total"] == str(len(repos))
    records = sum(1 for m in result.messages if m["type"] == "RECORD")
    assert number(final["records"]) == records
    made = len(api_log(emu))
    assert number(final["requests"]) == made
    assert number(final["left"]) == 1000 - made  # Bitbucket's default, no header sent


def test_the_budget_bitbucket_states_is_the_one_counted(
    make_emulator: Callable[..., Emulator],
) -> None:
    """Access tokens get X-RateLimit-Limit (scaled limits): the run adopts it."""
    emu = make_emulator(rate_limit=5000)
    result = run_tap(access_token_config(emu, ["acme"], repositories=["acme/api"]))
    assert result.returncode == 0, result.stderr[-3000:]
    assert any("states a rate limit of 5,000 requests/hour" in line for line in result.stderr_lines)
    final = [m for m in map(PROGRESS.search, result.stderr_lines) if m][-1]
    assert number(final["left"]) == 5000 - len(api_log(emu))


@pytest.mark.unit
def test_refreshes_fall_due_spread_over_the_interval() -> None:
    stamp = datetime(2026, 1, 1, tzinfo=timezone.utc)
    contexts = [{"repo_uuid": f"{{{i}}}"} for i in range(2000)]
    state = {
        "bookmarks": {
            "deploy_keys": {
                "partitions": [{"context": c, "refreshed_at": stamp.isoformat()} for c in contexts]
            }
        }
    }
    settings = Settings.from_config({"admin_refresh_hours": 24})

    def due_share(hours: float) -> float:
        marks = Bookmarks(state, settings, now=stamp + timedelta(hours=hours))
        return sum(marks.refresh_due("deploy_keys", c) for c in contexts) / len(contexts)

    assert due_share(0) == 0
    assert 0.2 < due_share(6) < 0.3  # a quarter of the interval: about a quarter due
    assert 0.45 < due_share(12) < 0.55
    assert due_share(24) == 1  # none older than one interval
    assert Bookmarks(state, Settings.from_config({"admin_refresh_hours": 0})).refresh_due(
        "deploy_keys", contexts[0]
    )
