"""Incremental syncs: after the emulator changes data, a sync from the previous STATE emits
the changed objects, nothing unchanged, and requests no child of an unchanged parent.

Flow (default-selected streams, one emulator for the module):
sync 1 (from nothing) -> mutate -> sync 2 (from sync 1's last STATE) -> mutate -> sync 3
(from sync 2's). Two rounds, so the look-back window of the second incremental sync
overlaps objects that the first one emitted (the documented source of duplicates).
Expected changes come from the emulator's MutationSummary and its data; requests from its
request log.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import pytest

from tests.emulator import Emulator, EmulatorConfig, RequestLogEntry
from tests.emulator.data import parse_timestamp
from tests.harness import (
    DEFAULT_STREAMS,
    STREAM_CLASSES,
    TapResult,
    api_token_config,
    discovered_catalog,
    once_per_session,
    run_tap,
    select_all,
    walk,
)

ROUNDS = [1, 2]
PR_CHILD_REQUEST = re.compile(
    r"^/2\.0/repositories/(?P<w>[^/]+)/(?P<r>[^/]+)/pullrequests/(?P<id>\d+)/"
    r"(?P<child>comments|activity|tasks|commits|diffstat)$"
)
STEPS_REQUEST = re.compile(
    r"^/2\.0/repositories/(?P<w>[^/]+)/(?P<r>[^/]+)/pipelines/(?P<uuid>[^/]+)/steps$"
)
PR_PATH = re.compile(r"^/repositories/(?P<w>[^/]+)/(?P<r>[^/]+)/pullrequests/(?P<id>\d+)$")


@dataclass
class Round:
    number: int
    summary: Any  # MutationSummary
    before: Snapshot  # the emulator's data before the mutation
    after: Snapshot  # ... and right after it (later rounds change it again)
    previous: TapResult  # the sync whose state this round started from
    result: TapResult
    requests: list[RequestLogEntry]


class Snapshot:
    """The emulator's collections and objects at one instant (they are immutable dicts)."""

    def __init__(self, dataset: Any) -> None:
        self._collections = {p: dataset.collection(p) for p in dataset.collection_paths()}
        self._objects = {p: dataset.object(p) for p in dataset.object_paths()}
        self.repo_uuids = {r.full_name: r.uuid for r in dataset.repos}

    def collection(self, path: str) -> list[dict[str, Any]]:
        return list(self._collections.get(path) or [])

    def object(self, path: str) -> dict[str, Any]:
        obj = self._objects.get(path)
        assert obj is not None, path
        return obj

    def paths(self, pattern: str) -> list[str]:
        return [p for p in self._collections if re.fullmatch(pattern, p)]


def _run_rounds() -> dict[str, Any]:
    emu = Emulator(EmulatorConfig()).start()
    try:
        config = api_token_config(emu)
        first = run_tap(config)
        assert first.returncode == 0, first.stderr[-3000:]
        first_requests = len(emu.request_log)
        rounds = []
        previous = first
        for number in ROUNDS:
            assert previous.last_state is not None
            before = Snapshot(emu.dataset)
            summary = emu.mutate()
            after = Snapshot(emu.dataset)
            emu.reset_log()
            result = run_tap(config, state=previous.last_state)
            assert result.returncode == 0, result.stderr[-3000:]
            rounds.append(Round(number, summary, before, after, previous, result, emu.request_log))
            previous = result
    finally:
        emu.stop()
    assert not emu.internal_errors, emu.internal_errors
    return {"first": first, "first_requests": first_requests, "rounds": rounds}


@pytest.fixture(scope="module")
def syncs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """sync 1, then two rounds of mutate + incremental sync (once for the whole session)."""
    return once_per_session(tmp_path_factory, "incremental-rounds", _run_rounds)


@pytest.fixture(params=ROUNDS, ids=[f"round{n}" for n in ROUNDS])
def round_(request: pytest.FixtureRequest, syncs: dict[str, Any]) -> Round:
    return syncs["rounds"][request.param - 1]


# ---------------------------------------------------------------------------- expectations


def _split(path: str) -> tuple[str, list[str]]:
    """("w/r", rest) of "/repositories/w/r/rest..."."""
    parts = path.strip("/").split("/")
    assert parts[0] == "repositories", path
    return f"{parts[1]}/{parts[2]}", parts[3:]


def changed_prs(round_: Round) -> set[tuple[str, int]]:
    """(repo uuid, PR id) of every new or updated PR."""
    out = set()
    for path in round_.summary.changed["pullrequests"]:
        m = PR_PATH.match(path)
        assert m, path
        out.add((round_.after.repo_uuids[f"{m['w']}/{m['r']}"], int(m["id"])))
    return out


def changed_pr_names(round_: Round) -> set[tuple[str, int]]:
    """(full_name, id) of the changed PRs, as request paths name them."""
    out = set()
    for path in round_.summary.changed["pullrequests"]:
        m = PR_PATH.match(path)
        assert m, path
        out.add((f"{m['w']}/{m['r']}", int(m["id"])))
    return out


def changed_comments(round_: Round) -> set[tuple[str, int, int]]:
    out = set()
    for path in round_.summary.changed["pullrequest_comments"]:
        repo, rest = _split(path)  # pullrequests/{id}/comments/{cid}
        out.add((round_.after.repo_uuids[repo], int(rest[1]), int(rest[3])))
    return out


def changed_commits(round_: Round) -> set[tuple[str, str]]:
    out = set()
    for path in round_.summary.changed["commits"]:
        repo, rest = _split(path)  # commit/{hash}
        out.add((round_.after.repo_uuids[repo], rest[1]))
    return out


def changed_pipelines(round_: Round) -> dict[str, str]:
    """pipeline uuid -> its path, for every new or completed pipeline."""
    return {round_.after.object(p)["uuid"]: p for p in round_.summary.changed["pipelines"]}


def new_activity(round_: Round) -> Counter[tuple[str, int]]:
    """(repo uuid, PR id) -> how many activity entries the mutation added."""
    out: Counter[tuple[str, int]] = Counter()
    for path in round_.after.paths(r"/repositories/[^/]+/[^/]+/pullrequests/\d+/activity"):
        m = PR_PATH.match(path[: -len("/activity")])
        assert m, path
        after = Counter(json.dumps(e, sort_keys=True) for e in round_.after.collection(path))
        before = Counter(json.dumps(e, sort_keys=True) for e in round_.before.collection(path))
        added = sum((after - before).values())
        if added:
            out[(round_.after.repo_uuids[f"{m['w']}/{m['r']}"], int(m["id"]))] += added
    return out


def _keys(records: list[dict[str, Any]], *fields: str) -> list[tuple[Any, ...]]:
    return [tuple(r[f] for f in fields) for r in records]


def _emitted(round_: Round, stream: str) -> list[dict[str, Any]]:
    return round_.result.records_by_stream.get(stream, [])


# ---------------------------------------------------------------------------- sanity


def test_first_sync_is_complete_enough_to_compare(syncs: dict[str, Any]) -> None:
    first: TapResult = syncs["first"]
    assert set(first.records_by_stream) == DEFAULT_STREAMS
    state = first.last_state
    assert state is not None and state.get("bookmarks")


def test_mutation_changed_every_kind(round_: Round) -> None:
    """Preconditions: each kind of change the checks below look for happened."""
    changed = round_.summary.changed
    for kind in ("pullrequests", "pullrequest_comments", "commits", "pipelines", "projects"):
        assert changed[kind], kind


# ---------------------------------------------------------------------------- emitted


def test_changed_pull_requests_exactly(round_: Round) -> None:
    """Every changed PR once; nothing else. The look-back window re-reads PRs updated just
    before the bookmark, but the PR stream remembers the keys it emitted there: 0 repeats."""
    got = _keys(_emitted(round_, "pull_requests"), "repo_uuid", "id")
    assert Counter(got) == Counter(changed_prs(round_))


def test_changed_comments_exactly(round_: Round) -> None:
    got = _keys(_emitted(round_, "pull_request_comments"), "repo_uuid", "pull_request_id", "id")
    assert Counter(got) == Counter(changed_comments(round_))


def test_new_activity_exactly(round_: Round) -> None:
    emitted = _emitted(round_, "pull_request_activity")
    got = Counter(_keys(emitted, "repo_uuid", "pull_request_id"))
    want = new_activity(round_)
    assert sum(want.values()) > 0
    assert got == want
    ids = [r["activity_id"] for r in emitted]
    assert len(set(ids)) == len(ids)
    # Ids are stable and distinct: no new entry reuses an id an earlier sync emitted.
    earlier = {r["activity_id"] for r in round_.previous.records_by_stream["pull_request_activity"]}
    assert not earlier & set(ids)


def test_new_commits_exactly(round_: Round) -> None:
    got = _keys(_emitted(round_, "commits"), "repo_uuid", "hash")
    assert Counter(got) == Counter(changed_commits(round_))


def test_new_and_completed_pipelines_exactly(round_: Round) -> None:
    emitted = _emitted(round_, "pipelines")
    want = changed_pipelines(round_)
    assert Counter(r["uuid"] for r in emitted) == Counter(set(want))
    for record in emitted:
        repo, _ = _split(want[record["uuid"]])
        assert record["repo_uuid"] == round_.after.repo_uuids[repo]


def test_steps_of_changed_pipelines_exactly(round_: Round) -> None:
    want: Counter[tuple[str, str]] = Counter()
    for uuid, path in changed_pipelines(round_).items():
        for step in round_.after.collection(path + "/steps"):
            want[(uuid, step["uuid"])] += 1
    changed_steps = {p.rsplit("/", 1)[1] for p in round_.summary.changed["pipeline_steps"]}
    assert changed_steps
    assert changed_steps <= {s for _, s in want}
    got = Counter(_keys(_emitted(round_, "pipeline_steps"), "pipeline_uuid", "uuid"))
    assert got == want


def test_pipeline_running_at_the_last_sync_is_emitted_once_completed(
    syncs: dict[str, Any],
) -> None:
    """Every pipeline that an earlier sync emitted while it ran, and that completed before
    a later sync, is emitted by that later sync with its COMPLETED state."""
    running: dict[str, str] = {}  # uuid -> path
    checked = 0
    previous: TapResult = syncs["first"]
    for round_ in syncs["rounds"]:
        for record in previous.records_by_stream.get("pipelines", []):
            if record["state"]["name"] != "COMPLETED":
                running[record["uuid"]] = (
                    f"/repositories/{record['workspace_slug']}/{record['repo_slug']}"
                    f"/pipelines/{record['uuid']}"
                )
        emitted = {r["uuid"]: r for r in round_.result.records_by_stream.get("pipelines", [])}
        for uuid, path in sorted(running.items()):
            if round_.after.object(path)["state"]["name"] != "COMPLETED":
                continue
            assert uuid in emitted, f"pipeline {uuid} completed but was not emitted again"
            assert emitted[uuid]["state"]["name"] == "COMPLETED"
            assert emitted[uuid]["completed_on"]
            del running[uuid]
            checked += 1
        previous = round_.result
    assert checked >= 1, "no pipeline that was running completed during the rounds"


def test_pr_commits_and_tasks_only_new_ones_of_changed_prs(round_: Round) -> None:
    names = {uuid: name for name, uuid in round_.after.repo_uuids.items()}
    new_hashes = {h for _, h in changed_commits(round_)}
    since = round_.summary.previous_clock
    want_commits: Counter[tuple[str, int, str]] = Counter()
    want_tasks: Counter[tuple[str, int, int]] = Counter()
    for repo_uuid, pid in changed_prs(round_):
        base = f"/repositories/{names[repo_uuid]}/pullrequests/{pid}"
        for commit in round_.after.collection(base + "/commits"):
            if commit["hash"] in new_hashes:
                want_commits[(repo_uuid, pid, commit["hash"])] += 1
        for task in round_.after.collection(base + "/tasks"):
            if parse_timestamp(task["updated_on"]) > since:
                want_tasks[(repo_uuid, pid, task["id"])] += 1
    got_commits = Counter(
        _keys(_emitted(round_, "pull_request_commits"), "repo_uuid", "pull_request_id", "hash")
    )
    got_tasks = Counter(
        _keys(_emitted(round_, "pull_request_tasks"), "repo_uuid", "pull_request_id", "id")
    )
    assert got_commits == want_commits
    assert got_tasks == want_tasks


def test_changed_projects_exactly(round_: Round) -> None:
    want = Counter(round_.after.object(p)["uuid"] for p in round_.summary.changed["projects"])
    got = Counter(r["uuid"] for r in _emitted(round_, "projects"))
    assert got == want


# ---------------------------------------------------------------------------- requests


def test_children_of_unchanged_pull_requests_cost_no_request(round_: Round) -> None:
    changed = changed_pr_names(round_)
    asked: set[tuple[str, int]] = set()
    for entry in round_.requests:
        m = PR_CHILD_REQUEST.match(unquote(entry.path))
        if m:
            key = (f"{m['w']}/{m['r']}", int(m["id"]))
            assert key in changed, f"request for a child of an unchanged PR: {entry.path}"
            asked.add(key)
    # The changed PRs' children were read (so the check above is not vacuous).
    assert asked == changed


def test_steps_of_unchanged_pipelines_cost_no_request(round_: Round) -> None:
    changed = set(changed_pipelines(round_))
    asked = set()
    for entry in round_.requests:
        m = STEPS_REQUEST.match(unquote(entry.path))
        if m:
            assert m["uuid"] in changed, f"steps request for an unchanged pipeline: {entry.path}"
            asked.add(m["uuid"])
    assert asked == changed


def test_incremental_sync_costs_far_fewer_requests(syncs: dict[str, Any], round_: Round) -> None:
    assert len(round_.requests) < syncs["first_requests"] / 2


# ---------------------------------------------------------------------------- state


def test_final_state_has_no_progress_markers(round_: Round) -> None:
    state = round_.result.last_state
    assert state is not None
    assert [k for k, _ in walk(state) if k == "progress_markers"] == []


def test_state_is_per_repository(syncs: dict[str, Any], round_: Round) -> None:
    """One partition per repository (or workspace, or project): never per PR, pipeline or
    commit, so the state does not grow with the data."""
    state = round_.result.last_state or {}
    repos = set(round_.after.repo_uuids.values())
    workspaces = round_.after.paths(r"/workspaces/[^/]+/projects")
    projects = sum(len(round_.after.collection(p)) for p in workspaces)
    bookmarks = state.get("bookmarks") or {}
    assert bookmarks
    for stream, stream_state in bookmarks.items():
        parts = stream_state.get("partitions") or []
        contexts = [p.get("context") or {} for p in parts]
        for context in contexts:
            assert not {"pull_request_id", "pipeline_uuid", "commit_hash"} & set(context), (
                stream,
                context,
            )
        path = str(STREAM_CLASSES[stream].path)
        if "{repo_slug}" in path:
            assert len(parts) <= len(repos), stream
            assert {c.get("repo_uuid") for c in contexts} <= repos, stream
        elif "{project_key}" in path:
            assert len(parts) <= projects, stream
        else:
            assert len(parts) <= len(workspaces), stream
    first_size = len(json.dumps(syncs["first"].last_state))
    assert len(json.dumps(state)) < 1.5 * first_size


# ---------------------------------------------------------------------------- opt-in streams


def _run_all_streams_round() -> dict[str, Any]:
    """The same, with every stream selected: the per-commit and per-PR fan-out streams
    (`commit_statuses`, `pull_request_diffstats`) must follow their parent's bookmark."""
    emu = Emulator(EmulatorConfig()).start()
    try:
        config = api_token_config(emu)
        catalog = select_all(discovered_catalog())
        first = run_tap(config, catalog=catalog)
        assert first.returncode == 0, first.stderr[-3000:]
        summary = emu.mutate()
        after = Snapshot(emu.dataset)
        diffstats = {}
        for path in summary.changed["pullrequests"]:
            target = emu.dataset.diffstat_target(path)
            diffstats[path] = list(emu.dataset.collection(target) or []) if target else []
        emu.reset_log()
        result = run_tap(config, state=first.last_state, catalog=catalog)
        assert result.returncode == 0, result.stderr[-3000:]
        requests = emu.request_log
    finally:
        emu.stop()
    assert not emu.internal_errors, emu.internal_errors
    return {
        "round": Round(1, summary, after, after, first, result, requests),
        "diffstats": diffstats,
    }


@pytest.fixture(scope="module")
def all_streams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return once_per_session(tmp_path_factory, "incremental-all-streams", _run_all_streams_round)


STATUSES_REQUEST = re.compile(
    r"^/2\.0/repositories/(?P<w>[^/]+)/(?P<r>[^/]+)/commit/(?P<hash>[0-9a-f]+)/statuses$"
)
DIFFSTAT_REQUEST = re.compile(r"^/2\.0/repositories/[^/]+/[^/]+/diffstat/")


def test_statuses_only_of_new_commits(all_streams: dict[str, Any]) -> None:
    round_: Round = all_streams["round"]
    new = changed_commits(round_)
    names = {uuid: name for name, uuid in round_.after.repo_uuids.items()}
    asked = set()
    for entry in round_.requests:
        m = STATUSES_REQUEST.match(unquote(entry.path))
        if m:
            key = (round_.after.repo_uuids[f"{m['w']}/{m['r']}"], m["hash"])
            assert key in new, f"statuses of an old commit requested: {entry.path}"
            asked.add(key)
    assert asked == new
    want = Counter(
        (repo_uuid, commit, status["key"])
        for repo_uuid, commit in new
        for status in round_.after.collection(
            f"/repositories/{names[repo_uuid]}/commit/{commit}/statuses"
        )
    )
    got = Counter(_keys(_emitted(round_, "commit_statuses"), "repo_uuid", "commit_hash", "key"))
    assert got == want


def test_diffstats_only_of_changed_pull_requests(all_streams: dict[str, Any]) -> None:
    round_: Round = all_streams["round"]
    changed = changed_pr_names(round_)
    asked = set()
    redirected = 0
    for entry in round_.requests:
        path = unquote(entry.path)
        m = PR_CHILD_REQUEST.match(path)
        if m and m["child"] == "diffstat":
            key = (f"{m['w']}/{m['r']}", int(m["id"]))
            assert key in changed, f"diffstat of an unchanged PR requested: {entry.path}"
            asked.add(key)
        elif DIFFSTAT_REQUEST.match(path):
            redirected += 1
    assert asked == changed
    assert redirected == len(changed)  # each 302 followed once, nothing else
    want: Counter[tuple[str, int, Any, Any]] = Counter()
    for pr_path, entries in all_streams["diffstats"].items():
        m = PR_PATH.match(pr_path)
        assert m, pr_path
        repo_uuid = round_.after.repo_uuids[f"{m['w']}/{m['r']}"]
        for entry in entries:
            old, new = entry.get("old") or {}, entry.get("new") or {}
            want[(repo_uuid, int(m["id"]), old.get("path"), new.get("path"))] += 1
    got = Counter(
        (
            r["repo_uuid"],
            r["pull_request_id"],
            (r.get("old") or {}).get("path"),
            (r.get("new") or {}).get("path"),
        )
        for r in _emitted(round_, "pull_request_diffstats")
    )
    assert sum(want.values()) > 0
    assert got == want


def test_all_streams_incremental_state_has_no_progress_markers(all_streams: dict[str, Any]) -> None:
    state = all_streams["round"].result.last_state
    assert state is not None
    assert [k for k, _ in walk(state) if k == "progress_markers"] == []
