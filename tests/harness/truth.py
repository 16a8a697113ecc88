"""The ground truth: from the emulator's Dataset (the objects it serves), what the tap must
emit, per stream, and which (stream, partition) pairs it must skip with a WARNING.

`expected_rows(dataset, ...)` returns, per stream, one dict per object the tap must emit:
the identity fields of that object plus the join keys the record must carry.
`expected_skips(...)` lists the (stream, partition, status) pairs the emulator answers
with an expected error, derived from its routing table.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tap_bitbucket.streams import STREAM_TYPES
from tests.emulator.server import match_route
from tests.harness.checks import SOURCE
from tests.harness.running import TapResult

STREAM_CLASSES = {cls.name: cls for cls in STREAM_TYPES}
ALL_STREAMS = frozenset(STREAM_CLASSES)
DEFAULT_STREAMS = frozenset(n for n, c in STREAM_CLASSES.items() if c.selected_by_default)

# Primary-key fields the tap derives itself (Bitbucket has no id for them): the ground
# truth identifies those objects by other fields, and their uniqueness is checked apart.
DERIVED_KEYS = {
    "pull_request_activity": {"activity_id"},
    "pull_request_diffstats": {"file_key"},
}


@dataclass(frozen=True)
class Scope:
    """What a sync covers: workspaces (None = every one the user sees) and a repo filter."""

    workspaces: tuple[str, ...] | None = None
    repositories: Callable[[str], bool] | None = None  # full_name -> in scope

    def repo_in_scope(self, full_name: str) -> bool:
        return self.repositories is None or self.repositories(full_name)


def _values(dataset: Any, path: str) -> list[dict[str, Any]]:
    """A collection the emulator serves at `path` ([] where it answers an error)."""
    return list(dataset.collection(path) or [])


def scoped_workspaces(dataset: Any, scope: Scope) -> list[dict[str, Any]]:
    if scope.workspaces is not None:
        return [dataset.object(f"/workspaces/{slug}") for slug in scope.workspaces]
    # The workspaces a user sees, as the full objects (the list carries only uuid and slug).
    return [
        dataset.object(f"/workspaces/{access['workspace']['slug']}")
        for access in _values(dataset, "/user/workspaces")
    ]


def scoped_repositories(dataset: Any, scope: Scope) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workspace object, repository object) of every listed repository in scope."""
    out = []
    for ws in scoped_workspaces(dataset, scope):
        for repo in _values(dataset, f"/repositories/{ws['slug']}"):
            if scope.repo_in_scope(repo["full_name"]):
                out.append((ws, repo))
    return out


def expected_rows(
    dataset: Any, scope: Scope = Scope(), streams: Iterable[str] = ALL_STREAMS
) -> dict[str, list[dict[str, Any]]]:
    """stream -> one dict per object the tap must emit (identity fields + join keys).

    Everything comes from the emulator's collections: an object that the emulator serves
    under a path the tap reads must be emitted once, and nothing else. Paths that answer
    an error (empty repository, Pipelines disabled, deleted repository) contribute nothing.
    """
    wanted = set(streams)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in wanted}

    def add(stream: str, row: dict[str, Any], source: dict[str, Any] | None = None) -> None:
        if stream in rows:
            rows[stream].append({**row, SOURCE: source} if source is not None else row)

    for ws in scoped_workspaces(dataset, scope):
        slug, ws_uuid = ws["slug"], ws["uuid"]
        wkeys = {"workspace_slug": slug, "workspace_uuid": ws_uuid}
        add("workspaces", {"uuid": ws_uuid, "slug": slug}, ws)
        for member in _values(dataset, f"/workspaces/{slug}/members"):
            add("workspace_members", {**wkeys, "user_uuid": member["user"]["uuid"]}, member)
        for hook in _values(dataset, f"/workspaces/{slug}/hooks"):
            add("workspace_webhooks", {**wkeys, "uuid": hook["uuid"]}, hook)
        for proj in _values(dataset, f"/workspaces/{slug}/projects"):
            add("projects", {**wkeys, "uuid": proj["uuid"], "key": proj["key"]}, proj)
            pkeys = {
                "workspace_slug": slug,
                "project_key": proj["key"],
                "project_uuid": proj["uuid"],
            }
            base = f"/workspaces/{slug}/projects/{proj['key']}"
            for perm in _values(dataset, f"{base}/permissions-config/users"):
                add("project_user_permissions", {**pkeys, "user_uuid": perm["user"]["uuid"]}, perm)
            for perm in _values(dataset, f"{base}/permissions-config/groups"):
                add(
                    "project_group_permissions",
                    {**pkeys, "group_slug": perm["group"]["slug"]},
                    perm,
                )
            for rev in _values(dataset, f"{base}/default-reviewers"):
                add("project_default_reviewers", {**pkeys, "user_uuid": rev["user"]["uuid"]}, rev)

    for ws, repo in scoped_repositories(dataset, scope):
        add(
            "repositories",
            {
                "workspace_slug": ws["slug"],
                "workspace_uuid": ws["uuid"],
                "uuid": repo["uuid"],
                "full_name": repo["full_name"],
            },
            repo,
        )
        _repo_rows(dataset, ws["slug"], repo, add)
    return rows


def _repo_rows(dataset: Any, ws_slug: str, repo: dict[str, Any], add: Callable[..., None]) -> None:
    r = f"/repositories/{repo['full_name']}"
    rkeys = {"workspace_slug": ws_slug, "repo_slug": repo["slug"], "repo_uuid": repo["uuid"]}
    for perm in _values(dataset, f"{r}/permissions-config/users"):
        add("repository_user_permissions", {**rkeys, "user_uuid": perm["user"]["uuid"]}, perm)
    for perm in _values(dataset, f"{r}/permissions-config/groups"):
        add("repository_group_permissions", {**rkeys, "group_slug": perm["group"]["slug"]}, perm)
    for ref in _values(dataset, f"{r}/refs/branches"):
        add("branches", {**rkeys, "name": ref["name"]}, ref)
    for ref in _values(dataset, f"{r}/refs/tags"):
        add("tags", {**rkeys, "name": ref["name"]}, ref)
    for commit in _values(dataset, f"{r}/commits"):
        add("commits", {**rkeys, "hash": commit["hash"]}, commit)
        for status in _values(dataset, f"{r}/commit/{commit['hash']}/statuses"):
            add(
                "commit_statuses",
                {**rkeys, "commit_hash": commit["hash"], "key": status["key"]},
                status,
            )
    for pr in _values(dataset, f"{r}/pullrequests"):
        add("pull_requests", {**rkeys, "id": pr["id"]}, pr)
        _pull_request_rows(dataset, r, rkeys, pr, add)
    for pipeline in _values(dataset, f"{r}/pipelines"):
        add("pipelines", {**rkeys, "uuid": pipeline["uuid"]}, pipeline)
        for step in _values(dataset, f"{r}/pipelines/{pipeline['uuid']}/steps"):
            add(
                "pipeline_steps",
                {**rkeys, "pipeline_uuid": pipeline["uuid"], "uuid": step["uuid"]},
                step,
            )
    for item in _values(dataset, f"{r}/deployments"):
        add("deployments", {**rkeys, "uuid": item["uuid"]}, item)
    for item in _values(dataset, f"{r}/environments"):
        add("environments", {**rkeys, "uuid": item["uuid"]}, item)
    for item in _values(dataset, f"{r}/branch-restrictions"):
        add("branch_restrictions", {**rkeys, "id": item["id"]}, item)
    for item in _values(dataset, f"{r}/default-reviewers"):
        add("default_reviewers", {**rkeys, "user_uuid": item["uuid"]}, item)
    for item in _values(dataset, f"{r}/hooks"):
        add("repository_webhooks", {**rkeys, "uuid": item["uuid"]}, item)
    for item in _values(dataset, f"{r}/downloads"):
        add("downloads", {**rkeys, "name": item["name"]}, item)
    for item in _values(dataset, f"{r}/deploy-keys"):
        add("deploy_keys", {**rkeys, "id": item["id"]}, item)


def _pull_request_rows(
    dataset: Any,
    r: str,
    rkeys: dict[str, Any],
    pr: dict[str, Any],
    add: Callable[..., None],
) -> None:
    pkeys = {**rkeys, "pull_request_id": pr["id"]}
    base = f"{r}/pullrequests/{pr['id']}"
    for comment in _values(dataset, f"{base}/comments"):
        add("pull_request_comments", {**pkeys, "id": comment["id"]}, comment)
    for _entry in _values(dataset, f"{base}/activity"):
        # No id from Bitbucket: one row per entry, compared as a count per PR.
        add("pull_request_activity", dict(pkeys))
    for commit in _values(dataset, f"{base}/commits"):
        add("pull_request_commits", {**pkeys, "hash": commit["hash"]}, commit)
    for task in _values(dataset, f"{base}/tasks"):
        add("pull_request_tasks", {**pkeys, "id": task["id"]}, task)
    target = dataset.diffstat_target(base)
    for entry in _values(dataset, target) if target else []:
        add(
            "pull_request_diffstats",
            {
                **pkeys,
                "old.path": (entry.get("old") or {}).get("path"),
                "new.path": (entry.get("new") or {}).get("path"),
            },
        )


# ---------------------------------------------------------------------------- skips

_SAMPLE = {
    "pull_request_id": "1",
    "pipeline_uuid": "{00000000-0000-0000-0000-000000000000}",
    "commit_hash": "0" * 40,
}


def _route_for(stream: str, workspace: str, repo_slug: str = "r", project_key: str = "K") -> Any:
    cls = STREAM_CLASSES[stream]
    path = str(cls.path).format(
        workspace_slug=workspace, repo_slug=repo_slug, project_key=project_key, **_SAMPLE
    )
    route, _ = match_route(path)
    assert route is not None, f"the emulator has no route for {stream} ({path})"
    return route


def _ancestors(stream: str) -> list[str]:
    out = []
    parent = STREAM_CLASSES[stream].parent_stream_type
    while parent is not None:
        out.append(parent.name)
        parent = parent.parent_stream_type
    return out


def expected_skips(
    dataset: Any,
    scope: Scope = Scope(),
    streams: Iterable[str] = ALL_STREAMS,
    *,
    access_token: bool = False,
) -> set[tuple[str, str, int]]:
    """(stream, "repository w/r" | "project w/KEY", status) of every expected-error skip.

    From the emulator's routing table: `git` routes answer 409 on the empty repository,
    `pipelines` routes 404 where Pipelines is disabled, `permission` routes 403 to access
    tokens. A stream whose parent was skipped for the partition is never requested.
    """
    selected = set(streams)
    skips: set[tuple[str, str, int]] = set()

    def status_for(stream: str, info: Any, ws: str, slug: str) -> int | None:
        route = _route_for(stream, ws, slug)
        if info is not None and route.git and info.empty:
            return 409
        if info is not None and route.pipelines and not info.pipelines_enabled:
            return 404
        if route.permission and access_token:
            return 403
        return None

    for ws, repo in scoped_repositories(dataset, scope):
        info = dataset.repo(repo["full_name"])
        where = f"repository {repo['full_name']}"
        failing = {}
        for stream in sorted(selected):
            cls = STREAM_CLASSES[stream]
            if "{repo_slug}" not in str(cls.path):
                continue
            status = status_for(stream, info, ws["slug"], repo["slug"])
            if status is not None:
                failing[stream] = status
        for stream, status in failing.items():
            if not any(a in failing for a in _ancestors(stream)):
                skips.add((stream, where, status))

    for ws in scoped_workspaces(dataset, scope):
        for proj in _values(dataset, f"/workspaces/{ws['slug']}/projects"):
            for stream in sorted(selected):
                if "{project_key}" not in str(STREAM_CLASSES[stream].path):
                    continue
                status = status_for(stream, None, ws["slug"], "r")
                if status is not None:
                    skips.add((stream, f"project {ws['slug']}/{proj['key']}", status))
    return skips


_SKIP_LINE = re.compile(
    r"Skipping stream '(?P<stream>[^']+)' for (?P<where>(?:repository|project|workspace) \S+):"
    r" HTTP (?P<status>\d{3}), (?P<reason>.+)$"
)


def parse_skip(line: str) -> tuple[str, str, int, str] | None:
    match = _SKIP_LINE.search(line)
    if not match:
        return None
    return match["stream"], match["where"], int(match["status"]), match["reason"]


def check_skip_warnings(result: TapResult, expected: set[tuple[str, str, int]]) -> list[str]:
    """Problems with the skip WARNINGs: exactly one per expected (stream, partition)."""
    problems = []
    lines = result.skip_lines()
    parsed = [parse_skip(line) for line in lines]
    for line, item in zip(lines, parsed, strict=True):
        if item is None:
            problems.append(f"unparsable skip line: {line}")
    seen = Counter((p[0], p[1], p[2]) for p in parsed if p)
    for key in sorted(expected):
        if seen[key] != 1:
            problems.append(f"{key}: {seen[key]} WARNING lines (want exactly 1)")
    for key in sorted(set(seen) - expected):
        problems.append(f"unexpected skip {key}")
    reasons = {
        403: ("scope", "admin", "permission"),
        404: ("Pipelines", "no longer exists"),
        409: ("empty",),
    }
    for item in parsed:
        if item and not any(word in item[3] for word in reasons.get(item[2], ("",))):
            problems.append(f"skip reason does not explain HTTP {item[2]}: {item}")
    return problems


def drop_skipped(
    rows: dict[str, list[dict[str, Any]]], skips: set[tuple[str, str, int]]
) -> dict[str, list[dict[str, Any]]]:
    """The expected rows without those of skipped (stream, partition) pairs."""
    skipped = {(stream, where) for stream, where, _ in skips}

    def partition(row: dict[str, Any]) -> str | None:
        if "repo_slug" in row:
            return f"repository {row['workspace_slug']}/{row['repo_slug']}"
        if "project_key" in row:
            return f"project {row['workspace_slug']}/{row['project_key']}"
        return None

    out = {}
    for stream, stream_rows in rows.items():
        lineage = {stream, *_ancestors(stream)}
        out[stream] = [
            row
            for row in stream_rows
            if not any((name, partition(row)) in skipped for name in lineage)
        ]
    return out
