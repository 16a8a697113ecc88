"""The fewest requests a sync can make, computed from the emulator's ground truth.

One request per page of data at each endpoint's maximum ``pagelen``, and at least one
request per partition (an empty list still costs the request that says so). This is
the physical floor for the tap's endpoint choices:

* PR activity is read with one repository-level walk (``/pullrequests/activity``),
  the cheapest correct way: one page per 50 entries instead of one request per PR.
* Children of a PR or pipeline cost nothing when their parent did not change.
* An incremental sync with nothing changed still needs one page per list whose
  changes cannot be asked for by date (deployments, and the newest-first scans of
  pipelines and activity, which ignore ``q``), and one for pull requests and projects.
  Streams that follow git (commits, branches, tags: the stream class says
  ``follows_git``) cost nothing while the repository's ``updated_on`` stands still, and
  slow-changing settings tables (``slow_changing``) only when their refresh falls due:
  the caller passes the partitions the run refreshed (:func:`refreshed_partitions`),
  since that depends on the clock.
"""

from __future__ import annotations

import math
import typing as t

from tap_bitbucket.streams import STREAM_TYPES
from tests.emulator.server import ROUTES

_CLASSES = {str(c.name): c for c in STREAM_TYPES}


def refreshed_partitions(
    before: dict[str, t.Any] | None, after: dict[str, t.Any] | None
) -> set[tuple[str, str]]:
    """(stream, workspace/slug | workspace/KEY | workspace) of every partition whose
    ``refreshed_at`` differs between two states: those a run read again."""

    def stamps(state: dict[str, t.Any] | None) -> dict[tuple[str, str], str]:
        out = {}
        for stream, stream_state in ((state or {}).get("bookmarks") or {}).items():
            for part in stream_state.get("partitions") or []:
                ctx = part.get("context") or {}
                where = "/".join(
                    str(ctx[k])
                    for k in ("workspace_slug", "repo_slug", "project_key")
                    if k in ctx
                )
                if "refreshed_at" in part:
                    out[(stream, where)] = str(part["refreshed_at"])
        return out

    old, new = stamps(before), stamps(after)
    return {key for key, value in new.items() if old.get(key) != value}

if t.TYPE_CHECKING:
    from tests.emulator.data import Dataset


def _max_pagelen(template: str) -> int:
    for route in ROUTES:
        if route.template == template:
            return int(route.max_pagelen)
    raise KeyError(template)


def pages(items: int, pagelen: int) -> int:
    return max(1, math.ceil(items / pagelen))


# Repository-level lists read in full on every run (no usable bookmark).
FULL_TABLE_REPO = {
    "repository_user_permissions": "/permissions-config/users",
    "repository_group_permissions": "/permissions-config/groups",
    "branches": "/refs/branches",
    "tags": "/refs/tags",
    "deployments": "/deployments",
    "environments": "/environments",
    "branch_restrictions": "/branch-restrictions",
    "default_reviewers": "/default-reviewers",
    "repository_webhooks": "/hooks",
    "downloads": "/downloads",
    "deploy_keys": "/deploy-keys",
}
_R = "/repositories/{workspace}/{repo_slug}"


def minimum_requests(
    dataset: Dataset,
    *,
    incremental_nochange: bool,
    refreshed: set[tuple[str, str]] | None = None,
) -> dict[str, int]:
    """Minimum requests per default-selected stream for a full or a no-change sync
    (``refreshed``: the slow-changing partitions the no-change run read again)."""
    out: dict[str, int] = {}
    due = refreshed or set()

    def add(stream: str, n: int, where: str | None = None) -> None:
        if incremental_nochange and where is not None:
            cls = _CLASSES[stream]
            if cls.follows_git or (cls.slow_changing and (stream, where) not in due):
                n = 0
        out[stream] = out.get(stream, 0) + n

    def size(path: str) -> int:
        return len(dataset.collection(path) or [])

    # /user/workspaces items carry only uuid, slug and links (a `workspace_base`), so the
    # name, dates and flags need GET /workspaces/{slug}: one request per workspace.
    add("workspaces", pages(size("/user/workspaces"), 100) + len(dataset.workspaces))
    for ws in dataset.workspaces:
        add("workspace_members", pages(size(f"/workspaces/{ws}/members"), 100), ws)
        add("workspace_webhooks", pages(size(f"/workspaces/{ws}/hooks"), 100), ws)
        projects = dataset.collection(f"/workspaces/{ws}/projects") or []
        add("projects", pages(len(projects), 100))
        for project in projects:
            base = f"/workspaces/{ws}/projects/{project['key']}"
            where = f"{ws}/{project['key']}"
            for stream, suffix in (
                ("project_user_permissions", "/permissions-config/users"),
                ("project_group_permissions", "/permissions-config/groups"),
                ("project_default_reviewers", "/default-reviewers"),
            ):
                add(stream, pages(size(base + suffix), 100), where)
        add("repositories", pages(size(f"/repositories/{ws}"), 100))

    for repo in dataset.repos:
        if repo.deleted:
            continue
        base = f"/repositories/{repo.workspace}/{repo.slug}"
        for stream, suffix in FULL_TABLE_REPO.items():
            add(stream, pages(size(base + suffix), _max_pagelen(_R + suffix)), repo.full_name)
        prs = dataset.collection(base + "/pullrequests") or []
        commits = size(base + "/commits")
        pipelines = dataset.collection(base + "/pipelines") or []
        activity = size(base + "/pullrequests/activity")
        if incremental_nochange:
            # One page each to learn that nothing is newer than the bookmark.
            for stream in ("pull_requests", "pipelines", "pull_request_activity"):
                add(stream, 1)
            add("commits", 1, repo.full_name)  # follows git: nothing while updated_on stands
            continue
        add("pull_requests", pages(len(prs), 50))
        add("commits", pages(commits, 100))
        add("pull_request_activity", pages(activity, 50))
        add("pipelines", pages(len(pipelines), 100))
        for pr in prs:
            pr_base = f"{base}/pullrequests/{pr['id']}"
            add("pull_request_comments", pages(size(pr_base + "/comments"), 100))
            add("pull_request_commits", pages(size(pr_base + "/commits"), 100))
            add("pull_request_tasks", pages(size(pr_base + "/tasks"), 100))
        for pipeline in pipelines:
            add("pipeline_steps", pages(size(f"{base}/pipelines/{pipeline['uuid']}/steps"), 100))
    return out
