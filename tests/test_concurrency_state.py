"""The worker pool's state bookkeeping (tap_bitbucket.concurrency.RepoStates).

A sync of thousands of repositories must not rescan the whole state per repository,
so RepoStates indexes partitions by repository. These tests pin that its in-place merge
gives exactly what the plain rule gives: drop the repository's old partitions of a
stream, keep everyone else's, add the new ones.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from tap_bitbucket.concurrency import RepoStates


def part(repo: str, value: int, extra: str | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {"repo_uuid": repo}
    if extra is not None:
        context["pull_request_id"] = extra
    return {"context": context, "replication_key_value": value}


def plain_merge(state: dict[str, Any], repo: str, parts: dict[str, list[dict[str, Any]]]) -> None:
    for name, new in parts.items():
        if not new:
            continue
        stream = state.setdefault("bookmarks", {}).setdefault(name, {})
        kept = [p for p in stream.get("partitions", []) if p["context"]["repo_uuid"] != repo]
        stream["partitions"] = kept + new


def as_sets(state: dict[str, Any]) -> dict[str, list[str]]:
    return {
        name: sorted(repr(sorted(p.items(), key=str)) for p in s.get("partitions", []))
        for name, s in state.get("bookmarks", {}).items()
    }


def test_initial_is_a_private_copy_of_one_repository() -> None:
    state = {"bookmarks": {"commits": {"partitions": [part("a", 1), part("b", 2)]}}}
    states = RepoStates(state)
    mine = states.initial("a")
    assert mine == {"bookmarks": {"commits": {"partitions": [part("a", 1)]}}}
    mine["bookmarks"]["commits"]["partitions"][0]["replication_key_value"] = 99
    assert state["bookmarks"]["commits"]["partitions"][0]["replication_key_value"] == 1
    assert states.initial("zzz") == {"bookmarks": {}}


def test_random_merges_match_the_plain_rule() -> None:
    rng = random.Random(7)
    repos = [f"r{i}" for i in range(30)]
    start = {
        "bookmarks": {
            "commits": {"partitions": [part(r, 0) for r in repos[:10]]},
            "pull_requests": {"partitions": [part(r, 0) for r in repos[5:15]]},
        }
    }
    fast, plain = copy.deepcopy(start), copy.deepcopy(start)
    states = RepoStates(fast)
    for step in range(400):
        repo = rng.choice(repos)
        name = rng.choice(["commits", "pull_requests", "pipelines"])
        count = rng.choice([0, 1, 1, 1, 2])  # a second partition: a legacy per-PR context
        new = [part(repo, step, extra=None if i == 0 else str(i)) for i in range(count)]
        states.merge(fast, repo, {name: new})
        plain_merge(plain, repo, {name: copy.deepcopy(new)})
        assert as_sets(fast) == as_sets(plain), step


def test_merge_survives_a_list_reordered_behind_its_back() -> None:
    state = {"bookmarks": {"commits": {"partitions": [part("a", 1), part("b", 1)]}}}
    states = RepoStates(state)
    states.merge(state, "a", {"commits": [part("a", 2)]})
    state["bookmarks"]["commits"]["partitions"].reverse()
    states.merge(state, "b", {"commits": [part("b", 3)]})
    assert as_sets(state) == as_sets(
        {"bookmarks": {"commits": {"partitions": [part("a", 2), part("b", 3)]}}}
    )
