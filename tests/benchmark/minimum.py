"""The fewest requests a sync can make, computed from the emulator's ground truth.

One request per page of data at each endpoint's maximum ``pagelen`` (the emulator's
route for the path), and at least one request per partition (an empty list still costs
the request that says so). This is the physical floor for the tap's endpoint choices:

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
  since that depends on the clock. Streams whose records exist only with another's
  (``records_only_with``: PR activity, deployments) cost nothing where that one is
  empty.

The streams, their paths and parents come from the stream registry: every full-table
stream (no replication key) under workspaces, projects or repositories costs its pages
per partition; the incremental streams below have a cost model of their own.
"""

from __future__ import annotations

import math
import typing as t

from tap_bitbucket.streams import STREAM_TYPES
from tests.emulator.server import match_route

if t.TYPE_CHECKING:
    from tests.emulator.data import Dataset

STREAMS = {cls.name: cls for cls in STREAM_TYPES}
DEFAULT = [cls for cls in STREAM_TYPES if cls.selected_by_default]
#: Streams whose cost is modelled below, not by the full-table rule.
MODELLED = {
    "workspaces",
    "projects",
    "pull_requests",
    "commits",
    "pipelines",
    "pull_request_activity",
    "pull_request_comments",
    "pull_request_commits",
    "pull_request_tasks",
    "pipeline_steps",
}
#: The newest-first scans a no-change sync still reads one page of.
NOCHANGE_SCANS = ("pull_requests", "commits", "pipelines", "pull_request_activity")
PR_CHILDREN = ("pull_request_comments", "pull_request_commits", "pull_request_tasks")


def pages(items: int, pagelen: int) -> int:
    return max(1, math.ceil(items / pagelen))


def path_of(stream: str, **context: t.Any) -> str:
    return str(STREAMS[stream].path).format(**context)


def _max_pagelen(path: str) -> int:
    route, _ = match_route(path)
    if route is None:
        raise KeyError(path)
    return int(route.max_pagelen)


def full_table_streams(parent: str) -> list[str]:
    """Default-selected streams under ``parent`` read in full on every run."""
    return [
        cls.name
        for cls in DEFAULT
        if cls.name not in MODELLED
        and cls.parent_stream_type is not None
        and cls.parent_stream_type.name == parent
        and cls.replication_key is None
    ]


def _check_coverage() -> None:
    covered = MODELLED | {
        s
        for parent in ("workspaces", "projects", "repositories")
        for s in full_table_streams(parent)
    }
    missing = sorted(cls.name for cls in DEFAULT if cls.name not in covered)
    if missing:
        raise KeyError(f"no minimum-request model for default streams {missing}")


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
                where = _where(ctx)
                if "refreshed_at" in part:
                    out[(stream, where)] = str(part["refreshed_at"])
        return out

    old, new = stamps(before), stamps(after)
    return {key for key, value in new.items() if old.get(key) != value}


def _where(context: dict[str, t.Any]) -> str:
    keys = ("workspace_slug", "repo_slug", "project_key")
    return "/".join(str(context[k]) for k in keys if k in context)


def minimum_requests(
    dataset: Dataset,
    *,
    incremental_nochange: bool,
    refreshed: set[tuple[str, str]] | None = None,
) -> dict[str, int]:
    """Minimum requests per default-selected stream for a full or a no-change sync
    (``refreshed``: the slow-changing partitions the no-change run read again)."""
    _check_coverage()
    out: dict[str, int] = {}
    due = refreshed or set()

    def add(stream: str, n: int) -> None:
        out[stream] = out.get(stream, 0) + n

    def skipped(stream: str, context: dict[str, t.Any]) -> bool:
        """What a no-change run leaves unread (see the module docstring)."""
        cls = STREAMS[stream]
        if not incremental_nochange:
            return False
        # Nothing where the stream it depends on has nothing, or answers a tolerated
        # 404 (Pipelines off).
        if (
            cls.records_only_with
            and "repo_slug" in context
            and not dataset.collection(path_of(cls.records_only_with, **context))
        ):
            return True
        return bool(cls.follows_git) or (
            bool(cls.slow_changing) and (stream, _where(context)) not in due
        )

    def size(path: str) -> int:
        return len(dataset.collection(path) or [])

    def read(stream: str, **context: t.Any) -> None:
        if skipped(stream, context):
            add(stream, 0)
            return
        path = path_of(stream, **context)
        add(stream, pages(size(path), _max_pagelen(path)))

    # /user/workspaces items carry only uuid, slug and links (a `workspace_base`), so the
    # name, dates and flags need GET /workspaces/{slug}: one request per workspace.
    add("workspaces", pages(size("/user/workspaces"), 100) + len(dataset.workspaces))
    for ws in dataset.workspaces:
        for stream in full_table_streams("workspaces"):
            if stream != "repositories":
                read(stream, workspace_slug=ws)
        # The whole (small) project list is read on every run: its children do not move
        # a project's updated_on (tap_bitbucket/streams/workspace.py).
        projects = dataset.collection(path_of("projects", workspace_slug=ws)) or []
        read("projects", workspace_slug=ws)
        for project in projects:
            for stream in full_table_streams("projects"):
                read(stream, workspace_slug=ws, project_key=project["key"])
        read("repositories", workspace_slug=ws)

    for repo in dataset.repos:
        if repo.deleted:
            continue
        where = {"workspace_slug": repo.workspace, "repo_slug": repo.slug}
        for stream in full_table_streams("repositories"):
            read(stream, **where)
        if incremental_nochange:
            # One page each to learn that nothing is newer than the bookmark.
            for stream in NOCHANGE_SCANS:
                add(stream, 0 if skipped(stream, where) else 1)
            continue
        for stream in NOCHANGE_SCANS:
            read(stream, **where)
        for pr in dataset.collection(path_of("pull_requests", **where)) or []:
            for stream in PR_CHILDREN:
                read(stream, **where, pull_request_id=pr["id"])
        for pipeline in dataset.collection(path_of("pipelines", **where)) or []:
            read("pipeline_steps", **where, pipeline_uuid=pipeline["uuid"])
    return out
