"""The fewest requests a sync can make, computed from the emulator's ground truth.

One request per page of data at each endpoint's maximum ``pagelen``, and at least one
request per partition (an empty list still costs the request that says so). This is
the physical floor for the tap's endpoint choices:

* PR activity is read with one repository-level walk (``/pullrequests/activity``),
  the cheapest correct way: one page per 50 entries instead of one request per PR.
* Children of a PR or pipeline cost nothing when their parent did not change.
* An incremental sync with nothing changed still needs one page per list whose
  changes cannot be asked for by date (full-table lists, and the newest-first scans of
  commits, pipelines and activity, which ignore ``q``).
"""

from __future__ import annotations

import math
import typing as t

from tests.emulator.server import ROUTES

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


def minimum_requests(dataset: Dataset, *, incremental_nochange: bool) -> dict[str, int]:
    """Minimum requests per default-selected stream for a full or a no-change sync."""
    out: dict[str, int] = {}

    def add(stream: str, n: int) -> None:
        out[stream] = out.get(stream, 0) + n

    def size(path: str) -> int:
        return len(dataset.collection(path) or [])

    # /user/workspaces items carry only uuid, slug and links (a `workspace_base`), so the
    # name, dates and flags need GET /workspaces/{slug}: one request per workspace.
    add("workspaces", pages(size("/user/workspaces"), 100) + len(dataset.workspaces))
    for ws in dataset.workspaces:
        add("workspace_members", pages(size(f"/workspaces/{ws}/members"), 100))
        add("workspace_webhooks", pages(size(f"/workspaces/{ws}/hooks"), 100))
        projects = dataset.collection(f"/workspaces/{ws}/projects") or []
        add("projects", pages(len(projects), 100))
        for project in projects:
            base = f"/workspaces/{ws}/projects/{project['key']}"
            add("project_user_permissions", pages(size(base + "/permissions-config/users"), 100))
            add("project_group_permissions", pages(size(base + "/permissions-config/groups"), 100))
            add("project_default_reviewers", pages(size(base + "/default-reviewers"), 100))
        add("repositories", pages(size(f"/repositories/{ws}"), 100))

    for repo in dataset.repos:
        if repo.deleted:
            continue
        base = f"/repositories/{repo.workspace}/{repo.slug}"
        for stream, suffix in FULL_TABLE_REPO.items():
            add(stream, pages(size(base + suffix), _max_pagelen(_R + suffix)))
        prs = dataset.collection(base + "/pullrequests") or []
        commits = size(base + "/commits")
        pipelines = dataset.collection(base + "/pipelines") or []
        activity = size(base + "/pullrequests/activity")
        if incremental_nochange:
            # One page each to learn that nothing is newer than the bookmark.
            for stream in ("pull_requests", "commits", "pipelines", "pull_request_activity"):
                add(stream, 1)
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
