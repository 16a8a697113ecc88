"""Tests for the emulator's deterministic dataset (``tests/emulator/data/``)."""

from __future__ import annotations

import csv
import json
import re
import threading
import time
from collections import Counter
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.emulator.data import (
    API,
    DATA_END,
    INITIAL_CLOCK,
    PR_LIST_OMITS,
    Dataset,
    MutationSummary,
    parse_timestamp,
)

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "spec" / "bitbucket-cloud-swagger.v3.json"
ENDPOINTS = ROOT / "spec" / "get-endpoints.tsv"

TS_FIELDS = {
    "created_on",
    "updated_on",
    "date",
    "created_at",
    "completed_on",
    "started_on",
    "resolved_on",
    "participated_on",
    "added_on",
    "last_accessed",
    "last_used",
    "start_date",
    "completion_date",
}
HEX40 = re.compile(r"^[0-9a-f]{40}$")
HEX12 = re.compile(r"^[0-9a-f]{12}$")


# --------------------------------------------------------------------------- fixtures/helpers


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return Dataset(seed=1, scale=1)


def snapshot(d: Dataset) -> tuple[dict[str, str], dict[str, str]]:
    cols = {p: json.dumps(d.collection(p), sort_keys=True) for p in d.collection_paths()}
    objs = {p: json.dumps(d.object(p), sort_keys=True) for p in d.object_paths()}
    return cols, objs


def repo_path(full: str) -> str:
    return f"/repositories/{full}"


def prs_of(d: Dataset, full: str) -> list[dict]:
    return d.collection(f"{repo_path(full)}/pullrequests") or []


def all_prs(d: Dataset) -> list[tuple[str, dict]]:
    return [(r.full_name, pr) for r in d.repos for pr in prs_of(d, r.full_name)]


def walk(node: Any, key: str | None = None):
    """Yield (key, value) for every leaf and container in a JSON tree."""
    yield key, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v, key)


def us_of(value: str) -> datetime:
    return parse_timestamp(value)


def everything(d: Dataset) -> list[Any]:
    return [d.collection(p) for p in d.collection_paths()] + [d.object(p) for p in d.object_paths()]


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_data() -> None:
    a, b = Dataset(seed=7, scale=1), Dataset(seed=7, scale=1)
    assert a.collection_paths() == b.collection_paths()
    assert a.object_paths() == b.object_paths()
    assert json.dumps(everything(a), sort_keys=True) == json.dumps(everything(b), sort_keys=True)


def test_different_seed_gives_different_data() -> None:
    a, b = Dataset(seed=1, scale=1), Dataset(seed=2, scale=1)
    assert [r.full_name for r in a.repos] == [r.full_name for r in b.repos]  # structure is stable
    assert a.repos[0].uuid != b.repos[0].uuid
    pa = a.collection("/repositories/acme/api/commits")
    pb = b.collection("/repositories/acme/api/commits")
    assert pa and pb and pa[0]["hash"] != pb[0]["hash"]


def test_mutations_are_deterministic() -> None:
    a, b = Dataset(seed=3, scale=1), Dataset(seed=3, scale=1)
    sa, sb = a.mutate(), b.mutate()
    assert sa.changed == sb.changed
    assert json.dumps(everything(a), sort_keys=True) == json.dumps(everything(b), sort_keys=True)


def test_generation_is_fast_at_scale_1() -> None:
    # CPU time, not wall time: the suite runs on both cores at once in CI. About 0.1 s on
    # an idle core; the bound only catches an accidentally quadratic generator.
    t0 = time.process_time()
    Dataset(seed=11, scale=1)
    assert time.process_time() - t0 < 2.0


# --------------------------------------------------------------------------- shape of the dataset


def test_scale_1_is_small_with_two_workspaces(ds: Dataset) -> None:
    assert ds.workspaces == ["acme", "globex"]
    assert len(ds.repos) == 8
    for w in ds.workspaces:
        assert 2 <= len(ds.collection(f"/workspaces/{w}/projects")) <= 3
        members = ds.collection(f"/workspaces/{w}/members")
        assert 4 <= len(members) <= 6
        assert ds.collection(f"/workspaces/{w}/hooks")


def test_repo_count_grows_linearly_with_scale() -> None:
    counts = {}
    per_repo_prs = {}
    for scale in (1, 2, 3):
        d = Dataset(seed=1, scale=scale)
        counts[scale] = sum(len(d.collection(f"/repositories/{w}")) for w in d.workspaces)
        per_repo_prs[scale] = sum(len(prs_of(d, r.full_name)) for r in d.repos) / len(d.repos)
    assert counts == {1: 8, 2: 16, 3: 24}
    # Per-repository volumes stay roughly constant.
    assert 0.5 < per_repo_prs[3] / per_repo_prs[1] < 1.5
    # Scale 7 already has >= 50 repositories (the benchmark needs that).
    d7 = Dataset(seed=1, scale=7)
    assert sum(len(d7.collection(f"/repositories/{w}")) for w in d7.workspaces) >= 50


def test_quiet_repositories_add_only_themselves(ds: Dataset) -> None:
    """The scale benchmark's workspaces of mostly quiet repositories: every object of the
    default data is the same, and each quiet repository is a few commits on one branch."""
    quiet = Dataset(quiet_repos=12)
    assert len(quiet.repos) == len(ds.repos) + 12
    # The repository listings grow by the quiet repositories; everything else is equal.
    listings = {f"/repositories/{w}" for w in ds.workspaces}
    for path in ds.collection_paths():
        if path not in listings:
            assert quiet.collection(path) == ds.collection(path), path
    for path in ds.object_paths():
        assert quiet.object(path) == ds.object(path), path
    for w in ds.workspaces:
        listed = quiet.collection(f"/repositories/{w}")
        assert [r for r in listed if not r["slug"].startswith("quiet-")] == ds.collection(
            f"/repositories/{w}"
        )
    new = [r for r in quiet.repos if r.slug.startswith("quiet-")]
    assert len(new) == 12 and {r.workspace for r in new} == set(ds.workspaces)
    for r in new:
        base_path = f"/repositories/{r.full_name}"
        assert len(quiet.collection(f"{base_path}/commits")) == 4
        assert quiet.collection(f"{base_path}/pullrequests") == []
        assert quiet.collection(f"{base_path}/pipelines") == []
        repo = quiet.object(base_path)
        assert parse_timestamp(repo["created_on"]) < parse_timestamp(repo["updated_on"]) < DATA_END


def test_user_and_workspace_access(ds: Dataset) -> None:
    assert ds.object("/user") is ds.user
    assert ds.user["type"] == "user" and ds.user["uuid"].startswith("{")
    assert "@" in ds.email
    access = ds.collection("/user/workspaces")
    assert [a["workspace"]["slug"] for a in access] == sorted(ds.workspaces)
    admin = {a["workspace"]["slug"]: a["administrator"] for a in access}
    assert admin == {"acme": True, "globex": False}
    for w in ds.workspaces:
        uuids = [m["user"]["uuid"] for m in ds.collection(f"/workspaces/{w}/members")]
        assert ds.user["uuid"] in uuids


def test_members_include_deleted_account_and_null_dates(ds: Dataset) -> None:
    for w in ds.workspaces:
        members = ds.collection(f"/workspaces/{w}/members")
        deleted = [m for m in members if m["user"]["account_id"] is None]
        assert len(deleted) == 1 and deleted[0]["user"]["nickname"] is None
        assert any(m["added_on"] is None for m in members)
        assert any(m["added_on"] is not None for m in members)
        assert {m["permission"] for m in members} <= {"owner", "member", "collaborator"}


def test_accounts_look_like_bitbucket_accounts(ds: Dataset) -> None:
    for u in ds.users:
        assert set(u) == {"display_name", "links", "type", "uuid", "account_id", "nickname"}
        assert re.fullmatch(r"\{[0-9a-f-]{36}\}", u["uuid"])
        assert re.fullmatch(r"\d{6}:[0-9a-f-]{36}", u["account_id"])
        assert u["links"]["self"]["href"].startswith(f"{API}/users/%7B")
        assert u["links"]["html"]["href"].startswith("https://bitbucket.org/")


def test_links_point_at_bitbucket_hosts(ds: Dataset) -> None:
    hrefs = [v for obj in everything(ds) for k, v in walk(obj) if k == "href"]
    assert hrefs
    for h in hrefs:
        assert h.startswith(
            (
                "https://api.bitbucket.org/2.0/",
                "https://bitbucket.org/",
                "https://bytebucket.org/",
                "https://avatar-management",
                "git@bitbucket.org:",
                f"https://{ds.user['nickname']}@bitbucket.org/",
            )
        ), h
    assert not any("{" in h or "}" in h for h in hrefs)  # braces are percent-encoded
    assert all(h.isascii() and " " not in h for h in hrefs)


# --------------------------------------------------------------------------- special repositories


def test_exactly_one_empty_repository(ds: Dataset) -> None:
    empty = [r for r in ds.repos if r.empty]
    assert len(empty) == 1
    p = repo_path(empty[0].full_name)
    for suffix in ("/commits", "/refs/branches", "/refs/tags"):
        assert ds.collection(p + suffix) == []
        assert p + suffix not in ds.collection_paths()  # the server answers 409 there
    assert ds.collection(p + "/pullrequests") == []
    repo = ds.object(p)
    assert repo["mainbranch"] is None and repo["size"] == 0
    non_empty = [r for r in ds.repos if not r.empty]
    assert all(ds.collection(repo_path(r.full_name) + "/commits") for r in non_empty)


def test_exactly_one_repository_without_pipelines(ds: Dataset) -> None:
    disabled = [r for r in ds.repos if not r.pipelines_enabled]
    assert len(disabled) == 1
    p = repo_path(disabled[0].full_name)
    for suffix in ("/pipelines", "/deployments", "/environments"):
        assert ds.collection(p + suffix) is None
    assert not any(o.startswith(p + "/pipelines") for o in ds.object_paths())
    assert ds.collection(p + "/commits")  # the repository itself is fine
    others = [r for r in ds.repos if r.pipelines_enabled and not r.empty]
    assert all(ds.collection(repo_path(r.full_name) + "/pipelines") for r in others)


def test_fork_shares_commit_hashes_with_parent(ds: Dataset) -> None:
    forks = [r for r in ds.repos if r.is_fork]
    assert len(forks) == 1
    fork = forks[0]
    parent_full = fork.parent_full_name
    repo = ds.object(repo_path(fork.full_name))
    assert repo["parent"]["full_name"] == parent_full
    assert "parent" not in ds.object(repo_path(parent_full))
    fc = {c["hash"]: c for c in ds.collection(repo_path(fork.full_name) + "/commits")}
    pc = {c["hash"]: c for c in ds.collection(repo_path(parent_full) + "/commits")}
    shared = set(fc) & set(pc)
    assert len(shared) > 20
    assert set(fc) - set(pc)  # the fork has commits of its own
    for h in list(shared)[:20]:
        a, b = fc[h], pc[h]
        assert a is not b
        assert (a["message"], a["date"], [x["hash"] for x in a["parents"]]) == (
            b["message"],
            b["date"],
            [x["hash"] for x in b["parents"]],
        )
        assert a["repository"]["full_name"] == fork.full_name
        assert b["repository"]["full_name"] == parent_full
    # A PR in the parent comes from the fork; its commits exist only in the fork.
    cross = [
        pr
        for pr in prs_of(ds, parent_full)
        if pr["source"]["repository"]["full_name"] == fork.full_name
    ]
    assert len(cross) == 1
    commits = ds.collection(f"{repo_path(parent_full)}/pullrequests/{cross[0]['id']}/commits")
    assert commits and all(c["hash"] in fc and c["hash"] not in pc for c in commits)


# --------------------------------------------------------------------------- commits and refs


def test_commits_are_newest_first_topological_with_merges(ds: Dataset) -> None:
    big = 0
    merges = 0
    for r in ds.repos:
        if r.empty:
            continue
        commits = ds.collection(repo_path(r.full_name) + "/commits")
        big = max(big, len(commits))
        pos = {c["hash"]: i for i, c in enumerate(commits)}
        assert len(pos) == len(commits)
        for i, c in enumerate(commits):
            assert HEX40.match(c["hash"]) and c["type"] == "commit"
            for p in c["parents"]:
                assert p["hash"] in pos and pos[p["hash"]] > i  # children before parents
            merges += len(c["parents"]) == 2
            assert ds.object(f"{repo_path(r.full_name)}/commit/{c['hash']}") is c
    assert big > 100  # /commits needs two pages of 100 somewhere
    assert merges > 10


def test_commit_dates_are_git_dates_and_not_always_monotonic(ds: Dataset) -> None:
    commits = ds.collection("/repositories/acme/api/commits")
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", c["date"]) for c in commits)
    dates = [us_of(c["date"]) for c in commits]
    assert any(dates[i] < dates[i + 1] for i in range(len(dates) - 1))  # quirk: not sorted by date
    unmapped = [
        c
        for r in ds.repos
        if not r.empty
        for c in ds.collection(repo_path(r.full_name) + "/commits")
        if "user" not in c["author"]
    ]
    assert unmapped and all(c["author"]["raw"] for c in unmapped)


def test_branches_and_tags(ds: Dataset) -> None:
    annotated = lightweight = 0
    for r in ds.repos:
        if r.empty:
            continue
        p = repo_path(r.full_name)
        commits = {c["hash"] for c in ds.collection(p + "/commits")}
        branches = ds.collection(p + "/refs/branches")
        names = [b["name"] for b in branches]
        assert names == sorted(names) and r.mainbranch in names
        assert ds.object(p)["mainbranch"]["name"] == r.mainbranch
        for b in branches:
            assert b["type"] == "branch" and b["target"]["hash"] in commits
            assert ds.object(f"{p}/refs/branches/{b['name']}") is b
        tags = ds.collection(p + "/refs/tags")
        assert [t["name"] for t in tags] == sorted(t["name"] for t in tags)
        for t in tags:
            assert t["target"]["hash"] in commits
            if t["message"] is None:
                lightweight += 1
                assert t["tagger"] is None and t["date"] is None
            else:
                annotated += 1
                assert t["tagger"]["type"] == "author" and t["date"]
    assert annotated and lightweight
    # every commit is reachable from a branch (commits are listed "over all refs")
    p = "/repositories/acme/api"
    by_hash = {c["hash"]: c for c in ds.collection(p + "/commits")}
    seen, stack = set(), [b["target"]["hash"] for b in ds.collection(p + "/refs/branches")]
    while stack:
        h = stack.pop()
        if h not in seen:
            seen.add(h)
            stack.extend(x["hash"] for x in by_hash[h]["parents"])
    assert seen == set(by_hash)
    assert "feature/ümlaut-support" in [b["name"] for b in ds.collection(p + "/refs/branches")]


def test_commit_statuses(ds: Dataset) -> None:
    found = 0
    for r in ds.repos:
        if r.empty:
            continue
        p = repo_path(r.full_name)
        for c in ds.collection(p + "/commits"):
            sts = ds.collection(f"{p}/commit/{c['hash']}/statuses")
            assert sts is not None
            for s in sts:
                found += 1
                assert s["type"] == "build"
                assert s["state"] in {"SUCCESSFUL", "FAILED", "INPROGRESS", "STOPPED"}
                assert s["commit"]["hash"] == c["hash"][:12]
                assert us_of(s["created_on"]) <= us_of(s["updated_on"])
                assert ds.object(f"{p}/commit/{c['hash']}/statuses/build/{s['key']}") is s
    assert found > 20
    # abbreviated hashes resolve
    c = ds.collection("/repositories/acme/api/commits")[0]
    assert ds.object(f"/repositories/acme/api/commit/{c['hash'][:12]}") is c
    assert ds.collection(
        f"/repositories/acme/api/commit/{c['hash'][:12]}/statuses"
    ) == ds.collection(f"/repositories/acme/api/commit/{c['hash']}/statuses")
    assert ds.collection("/repositories/acme/api/commit/" + "0" * 40 + "/statuses") is None


# --------------------------------------------------------------------------- pull requests


def test_pull_request_states_and_volumes(ds: Dataset) -> None:
    states = Counter(pr["state"] for _, pr in all_prs(ds))
    assert set(states) == {"OPEN", "MERGED", "DECLINED", "SUPERSEDED"}
    sizes = {r.full_name: len(prs_of(ds, r.full_name)) for r in ds.repos if not r.empty}
    assert max(sizes.values()) > 50  # two pages at the 50 cap
    for full, n in sizes.items():
        if not ds.repo(full).is_fork:
            assert 15 <= n <= 70, (full, n)
    for full in sizes:
        ids = [pr["id"] for pr in prs_of(ds, full)]
        assert ids == sorted(ids, reverse=True) and ids[-1] == 1 and len(set(ids)) == len(ids)


def test_pull_request_fields(ds: Dataset) -> None:
    assert PR_LIST_OMITS == ("reviewers", "participants")
    deleted_author = null_description = 0
    for full, pr in all_prs(ds):
        p = f"{repo_path(full)}/pullrequests/{pr['id']}"
        assert ds.object(p) is pr  # list items are the full objects; the server strips
        for f in PR_LIST_OMITS:
            assert f in pr
        for side in ("source", "destination"):
            assert HEX12.match(pr[side]["commit"]["hash"])
            src_full = pr[side]["repository"]["full_name"]
            hashes = {c["hash"][:12] for c in ds.collection(repo_path(src_full) + "/commits")}
            assert pr[side]["commit"]["hash"] in hashes
        if pr["state"] == "MERGED":
            mc = pr["merge_commit"]["hash"]
            assert HEX12.match(mc)
            full_commit = ds.object(f"{repo_path(full)}/commit/{mc}")
            assert full_commit is not None and len(full_commit["parents"]) == 2
            assert pr["closed_by"] is not None
        else:
            assert pr["merge_commit"] is None
        if pr["state"] == "OPEN":
            assert pr["closed_by"] is None
        else:
            assert pr["draft"] is False
        if pr["state"] == "DECLINED":
            assert pr["reason"]
        assert pr["summary"]["type"] == "rendered"
        assert us_of(pr["created_on"]) <= us_of(pr["updated_on"])
        deleted_author += pr["author"] is None
        null_description += pr["description"] is None
        assert pr["links"]["diffstat"]["href"].startswith(f"{API}{repo_path(full)}/diffstat/")
    assert deleted_author >= 1 and null_description >= 1


def test_comments(ds: Dataset) -> None:
    kinds = Counter()
    for full, pr in all_prs(ds):
        p = f"{repo_path(full)}/pullrequests/{pr['id']}"
        comments = ds.collection(p + "/comments")
        ids = [c["id"] for c in comments]
        assert ids == sorted(ids)
        by_id = {c["id"]: c for c in comments}
        assert pr["comment_count"] == sum(not c["deleted"] for c in comments)
        for c in comments:
            assert c["type"] == "pullrequest_comment" and c["pullrequest"]["id"] == pr["id"]
            assert us_of(c["created_on"]) <= us_of(c["updated_on"]) <= us_of(pr["updated_on"])
            assert us_of(c["created_on"]) >= us_of(pr["created_on"])
            assert ds.object(f"{p}/comments/{c['id']}") is c
            if c["deleted"]:
                kinds["deleted"] += 1
                assert c["content"]["raw"] == ""
            if "parent" in c:
                kinds["reply"] += 1
                assert c["parent"]["id"] in by_id and c["parent"]["id"] < c["id"]
            if "inline" in c:
                kinds["inline"] += 1
                assert c["inline"]["path"] and c["inline"]["to"] >= 1
    assert kinds["deleted"] and kinds["reply"] and kinds["inline"]


def test_activity_is_consistent_with_comments(ds: Dataset) -> None:
    kinds = Counter()
    for r in ds.repos:
        p = repo_path(r.full_name)
        repo_level: list[dict] = []
        for pr in prs_of(ds, r.full_name):
            act = ds.collection(f"{p}/pullrequests/{pr['id']}/activity")
            repo_level.extend(act)
            dates = []
            for e in act:
                assert (
                    e["pull_request"]["id"] == pr["id"]
                    and e["pull_request"]["type"] == "pullrequest"
                )
                (kind,) = [k for k in e if k != "pull_request"]
                kinds[kind] += 1
                d = e[kind]["created_on"] if kind == "comment" else e[kind]["date"]
                dates.append(us_of(d))
                assert us_of(d) <= us_of(pr["updated_on"])
            assert dates == sorted(dates, reverse=True)
            comment_ids = {c["id"] for c in ds.collection(f"{p}/pullrequests/{pr['id']}/comments")}
            assert comment_ids == {e["comment"]["id"] for e in act if "comment" in e}
            updates = [e["update"] for e in act if "update" in e]
            assert updates[-1]["state"] == "OPEN"
            if pr["state"] != "OPEN":
                assert updates[0]["state"] == pr["state"]
        all_repo = ds.collection(f"{p}/pullrequests/activity")
        assert len(all_repo) == len(repo_level)
        keys = [
            us_of(
                e["comment"]["created_on"]
                if "comment" in e
                else next(v["date"] for k, v in e.items() if k != "pull_request")
            )
            for e in all_repo
        ]
        assert keys == sorted(keys, reverse=True)
    assert {"update", "approval", "changes_requested", "comment"} <= set(kinds)


def test_tasks(ds: Dataset) -> None:
    states = Counter()
    for full, pr in all_prs(ds):
        tasks = ds.collection(f"{repo_path(full)}/pullrequests/{pr['id']}/tasks")
        assert pr["task_count"] == sum(t["state"] == "UNRESOLVED" for t in tasks)
        for t in tasks:
            assert "type" not in t
            states[t["state"]] += 1
            if t["state"] == "RESOLVED":
                assert t["resolved_on"] and t["resolved_by"]
                assert us_of(t["created_on"]) < us_of(t["resolved_on"])
            else:
                assert t["resolved_on"] is None and t["resolved_by"] is None
    assert states["RESOLVED"] and states["UNRESOLVED"]


def test_pr_commits_and_diffstat(ds: Dataset) -> None:
    statuses = Counter()
    without_commits: list[str] = []
    for full, pr in all_prs(ds):
        p = f"{repo_path(full)}/pullrequests/{pr['id']}"
        src = pr["source"]["repository"]["full_name"]
        order = {c["hash"]: i for i, c in enumerate(ds.collection(repo_path(src) + "/commits"))}
        commits = ds.collection(p + "/commits")
        assert commits is not None, p
        if commits:
            idx = [order[c["hash"]] for c in commits]
            assert idx == sorted(idx)  # newest first, same order as the repository's list
            assert commits[0]["hash"].startswith(pr["source"]["commit"]["hash"])
        else:
            # Empty when the source branch was deleted (notes 8.18); the diffstat stays.
            without_commits.append(p)
            assert pr["state"] == "MERGED" and pr["close_source_branch"], p
            branch = pr["source"]["branch"]["name"]
            assert ds.object(f"{repo_path(src)}/refs/branches/{branch}") is None, p
        target = ds.diffstat_target(p)
        assert target == pr["links"]["diffstat"]["href"][len(API) :]
        assert "%0D" in target and "from_pullrequest_id=" in target
        assert ds.diffstat_target(p + "/diffstat") == target
        entries = ds.collection(target)
        assert entries
        for e in entries:
            statuses[e["status"]] += 1
            assert e["type"] == "diffstat"
            if e["status"] == "added":
                assert e["old"] is None and e["new"]["type"] == "commit_file"
            elif e["status"] == "removed":
                assert e["new"] is None and e["old"]["type"] == "commit_file"
            else:
                assert e["old"]["path"] and e["new"]["path"]
                assert (e["old"]["path"] != e["new"]["path"]) == (e["status"] == "renamed")
    assert set(statuses) == {"added", "removed", "modified", "renamed"}
    assert without_commits, "no pull request without commits (the analytics need one)"
    assert ds.diffstat_target("/repositories/acme/api/pullrequests/99999") is None


# --------------------------------------------------------------------------- pipelines and friends


def test_pipelines(ds: Dataset) -> None:
    states = Counter()
    nanos = False
    creds = 0
    for r in ds.repos:
        pls = ds.collection(repo_path(r.full_name) + "/pipelines")
        if not pls:
            continue
        assert [p["build_number"] for p in pls] == list(range(1, len(pls) + 1))  # oldest first
        created = [us_of(p["created_on"]) for p in pls]
        assert created == sorted(created)
        for pl in pls:
            st = pl["state"]
            states[st["name"] if st["name"] != "COMPLETED" else st["result"]["name"]] += 1
            assert pl["created_on"].endswith("Z") and pl["target"]["type"] == "pipeline_ref_target"
            assert HEX40.match(pl["target"]["commit"]["hash"])
            nanos |= bool(re.search(r"\.\d{9}Z$", pl["created_on"]))
            if st["name"] == "COMPLETED":
                assert st["type"] == "pipeline_state_completed"
                assert (
                    st["result"]["type"]
                    == "pipeline_state_completed_" + st["result"]["name"].lower()
                )
                assert us_of(pl["created_on"]) < us_of(pl["completed_on"])
            else:
                assert pl["completed_on"] is None
            steps = ds.collection(f"{repo_path(r.full_name)}/pipelines/{pl['uuid']}/steps")
            assert 1 <= len(steps) <= 4
            assert ds.object(f"{repo_path(r.full_name)}/pipelines/{pl['uuid']}") is pl
            for s in steps:
                assert s["pipeline"]["uuid"] == pl["uuid"]
                if s["state"]["name"] in ("PENDING", "READY"):
                    assert s["started_on"] is None and s["completed_on"] is None
                if s["started_on"] and s["completed_on"]:
                    assert us_of(s["started_on"]) <= us_of(s["completed_on"])
                if "password" in s["image"]:
                    creds += 1
                    assert s["image"]["username"] and s["image"]["email"]
    assert {"SUCCESSFUL", "FAILED", "IN_PROGRESS"} <= set(states)
    assert states["ERROR"] + states["STOPPED"] > 0
    assert nanos and creds


def test_deployments_and_environments(ds: Dataset) -> None:
    seen = Counter()
    for r in ds.repos:
        p = repo_path(r.full_name)
        envs = ds.collection(p + "/environments")
        deps = ds.collection(p + "/deployments")
        if envs is None:
            assert deps is None
            continue
        if r.empty:
            continue
        assert [e["name"] for e in envs] == ["Test", "Staging", "Production"]
        env_ids = {e["uuid"] for e in envs}
        for dep in deps:
            assert dep["environment"]["uuid"] in env_ids
            seen[dep["state"]["name"]] += 1
            assert HEX40.match(dep["release"]["commit"]["hash"])
    assert seen["COMPLETED"] and (seen["UNDEPLOYED"] or seen["IN_PROGRESS"])


def test_settings_collections(ds: Dataset) -> None:
    for r in ds.repos:
        p = repo_path(r.full_name)
        assert all(
            x["type"] == "repository_user_permission"
            for x in ds.collection(p + "/permissions-config/users")
        )
        assert all(
            x["group"]["type"] == "group" for x in ds.collection(p + "/permissions-config/groups")
        )
        br = ds.collection(p + "/branch-restrictions")
        assert br and all(isinstance(b["id"], int) for b in br)
        assert {b["branch_match_kind"] for b in br} <= {"glob", "branching_model"}
        assert all(x["type"] == "user" for x in ds.collection(p + "/default-reviewers"))
        for h in ds.collection(p + "/hooks"):
            assert h["subject_type"] == "repository" and "created_at" in h
        for k in ds.collection(p + "/deploy-keys"):
            assert k["type"] == "deploy_key" and k["key"].startswith("ssh-")
        for dl in ds.collection(p + "/downloads"):
            assert dl["type"] == "download" and dl["size"] > 0
    assert any(ds.collection(repo_path(r.full_name) + "/downloads") for r in ds.repos)
    assert any(ds.collection(repo_path(r.full_name) + "/deploy-keys") for r in ds.repos)
    for w in ds.workspaces:
        for proj in ds.collection(f"/workspaces/{w}/projects"):
            base = f"/workspaces/{w}/projects/{proj['key']}"
            assert ds.object(base) is proj
            assert ds.collection(base + "/permissions-config/users")
            groups = ds.collection(base + "/permissions-config/groups")
            assert groups and all(g["group"]["full_slug"].startswith(w + ":") for g in groups)
            assert all(
                x["reviewer_type"] == "project" for x in ds.collection(base + "/default-reviewers")
            )


# --------------------------------------------------------------------------- text and timestamps


def test_unicode_emoji_and_nul_bytes(ds: Dataset) -> None:
    blob = json.dumps(everything(ds), ensure_ascii=False)
    assert "🚀" in blob and "中文" in blob and "é" in blob
    commits = ds.collection("/repositories/acme/api/commits")
    assert any("\x00" in c["message"] for c in commits)
    assert any(pr["description"] and "\x00" in pr["description"] for pr in prs_of(ds, "acme/api"))
    raw = [
        c["content"]["raw"]
        for pr in prs_of(ds, "acme/api")
        for c in ds.collection(f"/repositories/acme/api/pullrequests/{pr['id']}/comments")
    ]
    assert any("\x00" in t for t in raw)
    assert any("🚀" in pr["title"] for pr in prs_of(ds, "acme/api"))


def test_timestamps_parse_are_ordered_and_before_the_clock(ds: Dataset) -> None:
    forms = Counter()
    clock = ds.clock
    assert clock == INITIAL_CLOCK
    for obj in everything(ds):
        for k, v in walk(obj):
            if k in TS_FIELDS and isinstance(v, str):
                t = us_of(v)
                assert t < clock, (k, v)
                if v.endswith("Z"):
                    forms["z9" if re.search(r"\.\d{9}Z$", v) else "z3"] += 1
                elif re.search(r"\.\d{6}\+00:00$", v):
                    forms["micro"] += 1
                elif re.search(r":\d\d\+00:00$", v):
                    forms["nofrac"] += 1
            if (
                isinstance(v, dict)
                and isinstance(v.get("created_on"), str)
                and isinstance(v.get("updated_on"), str)
            ):
                assert us_of(v["created_on"]) <= us_of(v["updated_on"])
    assert set(forms) == {"z9", "z3", "micro", "nofrac"}


def test_parse_timestamp_forms() -> None:
    a = parse_timestamp("2024-05-21T01:50:36.611482242Z")
    assert (a.year, a.microsecond, a.utcoffset().total_seconds()) == (2024, 611482, 0)
    assert parse_timestamp("2023-10-08T17:31:20+00:00").second == 20
    assert parse_timestamp("2020-10-28T12:00:00.0+00:00").microsecond == 0
    assert parse_timestamp("2015-03-04T14:08:59.123+02:00").hour == 12
    assert parse_timestamp("2015-03-04").hour == 0
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


# --------------------------------------------------------------------------- lookups


def test_lookups_copy_decode_and_ignore_queries(ds: Dataset) -> None:
    p = "/repositories/acme/api/pullrequests"
    a = ds.collection(p)
    a.clear()
    assert ds.collection(p)  # a shallow copy was returned
    assert ds.collection(p + "?state=OPEN&pagelen=50") == ds.collection(p)
    assert ds.collection("/2.0" + p + "/") == ds.collection(p)
    pl = ds.collection("/repositories/acme/api/pipelines")[0]
    enc = "/repositories/acme/api/pipelines/" + pl["uuid"].replace("{", "%7B").replace("}", "%7D")
    assert ds.object(enc) is pl
    assert ds.object("/repositories/acme/api/refs/branches/feature/%C3%BCmlaut-support") is not None
    assert ds.collection("/repositories/acme/nope/commits") is None
    assert ds.object("/repositories/acme/api/pullrequests/0") is None
    assert ds.repo_for_path("/repositories/acme/api/pullrequests/1").full_name == "acme/api"
    assert ds.repo("globex/api-fork").is_fork


def test_every_listed_path_answers(ds: Dataset) -> None:
    for p in ds.collection_paths():
        assert isinstance(ds.collection(p), list), p
    for p in ds.object_paths():
        assert isinstance(ds.object(p), dict), p


def test_reads_are_safe_during_mutation() -> None:
    d = Dataset(seed=5, scale=1)
    errors: list[BaseException] = []
    stop = threading.Event()
    paths = [p for p in d.collection_paths() if "/pullrequests" in p or "/commits" in p][:200]

    def reader() -> None:
        try:
            while not stop.is_set():
                for p in paths:
                    json.dumps(d.collection(p))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(3):
        d.mutate()
    stop.set()
    for t in threads:
        t.join()
    assert not errors


# --------------------------------------------------------------------------- mutation


def changed_paths(s: MutationSummary) -> set[str]:
    return {p for k, v in s.changed.items() if k != "collections" for p in v}


def test_mutate_changes_only_what_it_reports() -> None:
    d = Dataset(seed=1, scale=1)
    cols0, objs0 = snapshot(d)
    prev = d.clock
    s = d.mutate()
    cols1, objs1 = snapshot(d)
    assert s.previous_clock == prev and s.clock > prev and d.clock == s.clock
    assert (s.clock - prev).total_seconds() <= 600
    reported = changed_paths(s)
    # unchanged objects are byte-identical; reported ones changed or are new/deleted
    for p, before in objs0.items():
        if p in reported:
            assert objs1.get(p) != before, p
        else:
            assert objs1[p] == before, p
    for p in set(objs1) - set(objs0):
        assert p in reported or re.search(r"/commit/[0-9a-f]{40}$", p), p
    for p, before in cols0.items():
        if p in s.changed["collections"]:
            assert cols1.get(p) != before, p
        elif p in cols1:
            assert cols1[p] == before, p
    for p in s.changed["branches_deleted"]:
        assert d.object(p) is None
    # every timestamp the mutation wrote lies in (previous_clock, clock)
    for p in reported - set(s.changed["branches_deleted"]):
        obj = d.object(p)
        stamps = [us_of(v) for k, v in walk(obj) if k in TS_FIELDS and isinstance(v, str)]
        if not stamps:  # a new step that has not started yet
            assert p in s.changed["pipeline_steps"] and p not in objs0, p
            continue
        assert max(stamps) > prev, p
        assert all(t < s.clock for t in stamps)


def test_mutate_covers_every_kind_of_change() -> None:
    d = Dataset(seed=1, scale=1)
    running_before = {
        (r.full_name, pl["uuid"])
        for r in d.repos
        for pl in d.collection(repo_path(r.full_name) + "/pipelines") or []
        if pl["state"]["name"] == "IN_PROGRESS"
    }
    prev = d.clock
    s = d.mutate()
    ch = s.changed
    assert len(ch["pullrequests"]) >= 2 and ch["pullrequest_comments"] and ch["commits"]
    assert ch["pipelines"] and ch["pipeline_steps"] and ch["projects"] and ch["repositories"]
    # a new OPEN PR exists, created after the previous clock
    new = [d.object(p) for p in ch["pullrequests"] if us_of(d.object(p)["created_on"]) > prev]
    assert len(new) == 1 and new[0]["state"] == "OPEN"
    # updated PRs: updated_on moved past the previous clock; new comments bump their PR
    for p in ch["pullrequests"]:
        assert us_of(d.object(p)["updated_on"]) > prev
    for cp in ch["pullrequest_comments"]:
        c = d.object(cp)
        pr = d.object(cp.rsplit("/comments/", 1)[0])
        assert us_of(c["created_on"]) > prev and us_of(pr["updated_on"]) >= us_of(c["updated_on"])
        act = d.collection(cp.rsplit("/comments/", 1)[0] + "/activity")
        assert any("comment" in e and e["comment"]["id"] == c["id"] for e in act)
    # new commits lead /commits; branch targets moved to them
    for cp in ch["commits"]:
        full = "/".join(cp.split("/")[2:4])
        assert d.object(cp)["hash"] in {
            c["hash"] for c in d.collection(repo_path(full) + "/commits")[:10]
        }
    for bp in ch["branches"]:
        assert d.object(bp)["target"]["hash"] in {d.object(c)["hash"] for c in ch["commits"]}
    # pipelines: a new running one, and a formerly running one completed
    states = {p: d.object(p)["state"] for p in ch["pipelines"]}
    assert any(st["name"] == "IN_PROGRESS" for st in states.values())
    done = [p for p, st in states.items() if st["name"] == "COMPLETED"]
    assert len(done) == 1
    full = "/".join(done[0].split("/")[2:4])
    assert (full, d.object(done[0])["uuid"]) in running_before
    assert us_of(d.object(done[0])["completed_on"]) > prev
    steps = d.collection(done[0] + "/steps")
    assert all(st["state"]["name"] == "COMPLETED" and st["completed_on"] for st in steps)
    # projects and repositories
    for pp in ch["projects"]:
        assert us_of(d.object(pp)["updated_on"]) > prev
    for rp in ch["repositories"]:
        assert us_of(d.object(rp)["updated_on"]) > prev
        w = rp.split("/")[2]
        assert d.object(rp) in d.collection(f"/repositories/{w}")


def test_repeated_mutations_move_forward() -> None:
    d = Dataset(seed=2, scale=1)
    last = d.clock
    for n in range(1, 5):
        s = d.mutate()
        assert s.number == n and s.previous_clock == last and s.clock > last
        for p in s.changed["pullrequests"]:
            assert last < us_of(d.object(p)["updated_on"]) < s.clock
        last = s.clock
    # data stays internally consistent after several mutations
    test_commits_are_newest_first_topological_with_merges(d)
    test_activity_is_consistent_with_comments(d)
    test_pr_commits_and_diffstat(d)


# --------------------------------------------------------------------------- deletion


def test_delete_repository() -> None:
    d = Dataset(seed=1, scale=1)
    full = "globex/storefront"
    p = repo_path(full)
    assert d.object(p) and d.collection(p + "/pullrequests")
    d.delete_repository(full)
    info = d.repo(full)
    assert info is not None and info.deleted
    assert d.object(p) is None
    assert d.collection(p + "/pullrequests") is None
    assert d.object(p + "/pullrequests/1") is None
    c = "/repositories/globex/analytics/commits"
    assert d.collection(c)  # other repositories are untouched
    assert full not in [r["full_name"] for r in d.collection("/repositories/globex")]
    assert not any(x.startswith(p + "/") or x == p for x in d.collection_paths() + d.object_paths())
    for _ in range(3):
        s = d.mutate()
        assert not any(x.startswith(p) for v in s.changed.values() for x in v)
    with pytest.raises(KeyError):
        d.delete_repository("globex/does-not-exist")


# --------------------------------------------------------------------------- schema conformance

# Endpoints without a 200 schema in the vendored spec, and what is checked instead.
_R = "/repositories/{workspace}/{repo_slug}"
NO_SCHEMA = {
    f"{_R}/downloads": "no schema in the spec; shape checked in test_settings_collections",
    f"{_R}/pullrequests/activity": "no schema; embedded comments validated as pullrequest_comment",
    f"{_R}/pullrequests/{{pull_request_id}}/activity": "no schema; as above",
    f"{_R}/pullrequests/{{pull_request_id}}/commits": "no schema; validated as commit (proxy)",
}
PROXY = {f"{_R}/pullrequests/{{pull_request_id}}/commits": "commit"}


@cache
def schema_book() -> tuple[dict, list[tuple[re.Pattern, str, str, str]]]:
    spec = json.loads(SPEC.read_text())
    comps = spec["components"]["schemas"]

    def relax(node: Any, required: frozenset[str] = frozenset()) -> Any:
        # OpenAPI 3.0 -> JSON schema, with the relaxations live Bitbucket needs:
        # properties may be null (no `nullable` anywhere in the spec, yet live objects carry
        # nulls), and resource objects accept extra keys (only Link objects stay strict).
        if isinstance(node, list):
            return [relax(x) for x in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        req = frozenset(node.get("required", ()))
        for k, v in node.items():
            if k == "$ref":
                out[k] = "#/$defs/" + v.rsplit("/", 1)[1]
            elif k in ("discriminator", "example", "format"):
                continue
            elif k == "properties":
                out[k] = {
                    name: (relax(sub) if name in req else {"anyOf": [{"type": "null"}, relax(sub)]})
                    for name, sub in v.items()
                }
            elif k == "additionalProperties" and v is False and node.get("title") != "Link":
                continue
            else:
                out[k] = relax(v)
        return out

    defs = {name: relax(s) for name, s in comps.items()}
    routes = []
    with ENDPOINTS.open() as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            tpl = row["path"]
            rx = re.escape(tpl)
            rx = re.sub(r"\\\{(name|spec|path)\\\}", ".+", rx)
            rx = re.sub(r"\\\{[^}]+\\\}", "[^/]+", rx)
            routes.append((re.compile(rx), tpl, row["response"], row["item"]))
    return defs, routes


def route(path: str) -> tuple[str, str, str] | None:
    _, routes = schema_book()
    hits = [
        (tpl.count("{"), -len(tpl), tpl, resp, item)
        for rx, tpl, resp, item in routes
        if rx.fullmatch(path)
    ]
    if not hits:
        return None
    _, _, tpl, resp, item = min(hits)
    return tpl, resp, item


@cache
def validator(name: str) -> jsonschema.protocols.Validator:
    defs, _ = schema_book()
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": defs})


def check(name: str, obj: Any, where: str) -> None:
    errors = sorted(validator(name).iter_errors(obj), key=lambda e: list(e.path))
    assert not errors, f"{where} as {name}: {errors[0].message} at {list(errors[0].path)}"


def test_every_object_validates_against_the_spec(ds: Dataset) -> None:
    seen_ids: set[int] = set()
    covered = Counter()
    for p in ds.collection_paths():
        r = route(p)
        assert r is not None, f"no spec endpoint for {p}"
        tpl, _, item = r
        schema = item or PROXY.get(tpl)
        items = ds.collection(p)
        if not schema:
            assert tpl in NO_SCHEMA, f"{tpl} has no item schema and is not listed"
            if tpl.endswith("/activity"):
                for e in items:
                    if "comment" in e:
                        check("pullrequest_comment", e["comment"], p)
            continue
        for it in items:
            if id(it) in seen_ids:
                continue
            seen_ids.add(id(it))
            check(schema, it, p)
            covered[schema] += 1
    for p in ds.object_paths():
        obj = ds.object(p)
        r = route(p)
        assert r is not None, f"no spec endpoint for {p}"
        tpl, resp, _ = r
        assert resp, f"{tpl} has no response schema"
        if id(obj) not in seen_ids:
            check(resp, obj, p)
        covered[resp] += 1
    expected = {
        "repository",
        "pullrequest",
        "pullrequest_comment",
        "pullrequest_comment_task",
        "base_commit",
        "commit",
        "branch",
        "tag",
        "commitstatus",
        "pipeline",
        "pipeline_step",
        "deployment",
        "deployment_environment",
        "branchrestriction",
        "webhook_subscription",
        "deploy_key",
        "diffstat",
        "workspace",
        "workspace_access",
        "workspace_membership",
        "project",
        "project_user_permission",
        "project_group_permission",
        "default_reviewer_and_type",
        "repository_user_permission",
        "repository_group_permission",
        "account",
    }
    assert expected <= set(covered), expected - set(covered)


def test_validator_can_fail() -> None:
    with pytest.raises(AssertionError):
        check("pullrequest", {"type": "pullrequest", "state": "MERGEDISH"}, "bad")
    with pytest.raises(AssertionError):
        check(
            "branchrestriction", {"type": "branchrestriction", "kind": "push"}, "missing required"
        )
    with pytest.raises(AssertionError):
        check(
            "repository",
            {"type": "repository", "links": {"self": {"href": "x", "extra": 1}}},
            "bad link",
        )
