"""The public records (``RepoInfo``, ``MutationSummary``) and the builders' raw internal records."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from ._util import (
    API,
    WEB,
)

# --------------------------------------------------------------------------- public records


@dataclass
class RepoInfo:
    workspace: str
    slug: str
    full_name: str
    uuid: str
    empty: bool = False
    pipelines_enabled: bool = True
    is_fork: bool = False
    deleted: bool = False
    parent_full_name: str | None = None
    mainbranch: str | None = None


@dataclass
class MutationSummary:
    """What one ``mutate()`` changed.

    ``changed`` maps a kind to concrete API paths (decoded, without ``/2.0``):
    ``repositories``, ``projects``, ``pullrequests`` (new or updated PR objects),
    ``pullrequest_comments`` (new comment objects), ``pullrequest_activity`` (PR object
    paths whose activity log gained entries), ``commits`` (new commit objects),
    ``branches`` (new or moved branches), ``branches_deleted``, ``pipelines`` (new or
    completed), ``pipeline_steps`` and ``collections`` (every pre-existing or new
    collection path whose list changed).  Every object path not listed is byte-identical
    to before; every timestamp the mutation wrote is in ``(previous_clock, clock)``.
    """

    changed: dict[str, list[str]]
    clock: datetime
    previous_clock: datetime
    number: int = 0


# --------------------------------------------------------------------------- internal records


class _C:
    """A raw commit."""

    __slots__ = ("author", "branch", "date_us", "hash", "idx", "message", "parents", "tick", "us")

    def __init__(
        self,
        idx: int,
        h: str,
        parents: list[int],
        branch: str,
        author: dict | None,
        message: str,
        tick: int | None,
    ) -> None:
        self.idx = idx
        self.hash = h
        self.parents = parents
        self.branch = branch
        self.author = author  # account dict or None (unmapped git author)
        self.message = message
        self.tick = tick
        self.us = 0
        self.date_us = 0


class _PR:
    __slots__ = (
        "activity",
        "author",
        "close_source_branch",
        "closed_by",
        "closed_tick",
        "closed_us",
        "comment_us",
        "comments",
        "commits",
        "created_tick",
        "created_us",
        "description",
        "diffstat_key",
        "draft",
        "dst_branch",
        "dst_idx",
        "id",
        "merge_idx",
        "queued",
        "reason",
        "ref",
        "reviewers",
        "src_branch",
        "src_idx",
        "src_repo",
        "state",
        "tasks",
        "title",
        "updated_us",
        "votes",
    )

    def __init__(self, pid: int) -> None:
        self.id = pid
        self.title = ""
        self.description: str | None = ""
        self.author: dict | None = None
        self.src_branch = ""
        self.dst_branch = ""
        self.src_repo: _Repo | None = None
        self.src_idx = 0
        self.dst_idx = 0
        self.merge_idx: int | None = None
        self.state = "OPEN"
        self.created_tick = 0
        self.closed_tick: int | None = None
        self.created_us = 0
        self.closed_us: int | None = None
        self.updated_us = 0
        self.closed_by: dict | None = None
        self.reason = ""
        self.close_source_branch = False
        self.draft = False
        self.queued = False
        self.reviewers: list[dict] = []
        self.comments: list[dict] = []
        self.comment_us: dict[int, int] = {}
        self.votes: list[tuple[int, str, dict]] = []  # (us, "approval"|"changes_requested", user)
        self.tasks: list[dict] = []
        self.activity: list[tuple[int, int, dict]] = []  # (us, seq, entry)
        self.commits: list[dict] = []
        self.diffstat_key = ""
        self.ref: dict = {}


class _Episode:
    __slots__ = (
        "author",
        "branch",
        "dst",
        "need",
        "plan",
        "pr",
        "pushed",
        "release",
        "synced",
        "title",
    )

    def __init__(
        self,
        branch: str,
        dst: str,
        plan: list[str],
        need: int,
        author: dict | None,
        release: bool = False,
    ) -> None:
        self.branch = branch
        self.dst = dst
        self.plan = plan
        self.need = need
        self.pushed = 0
        self.pr: _PR | None = None
        self.author = author
        self.release = release
        self.synced = False
        self.title = ""


class _Pipeline:
    __slots__ = (
        "build",
        "commit_idx",
        "completed_us",
        "created_us",
        "creator",
        "nanos",
        "ref_name",
        "result",
        "state",
        "steps",
        "trigger",
        "uuid",
    )

    def __init__(self) -> None:
        self.uuid = ""
        self.build = 0
        self.commit_idx = 0
        self.ref_name = ""
        self.created_us = 0
        self.completed_us: int | None = None
        self.state = "COMPLETED"  # PENDING | IN_PROGRESS | COMPLETED
        self.result: str | None = "SUCCESSFUL"
        self.nanos: int | None = None
        self.trigger = "PUSH"
        self.creator: dict | None = None
        self.steps: list[dict] = []  # raw step records (plain dicts, internal)


class _Workspace:
    def __init__(self) -> None:
        self.slug = ""
        self.name = ""
        self.uuid = ""
        self.obj: dict = {}
        self.ref: dict = {}
        self.team: dict = {}
        self.members: list[dict] = []  # accounts (non-deleted), for contributors
        self.groups: dict[str, dict] = {}
        self.projects: dict[str, dict] = {}
        self.project_refs: dict[str, dict] = {}
        self.repos: list[_Repo] = []
        self.created_us = 0


class _Repo:
    def __init__(
        self, info: RepoInfo, ws: _Workspace, idx: int, kind: str, project_key: str, seed: int
    ) -> None:
        self.info = info
        self.ws = ws
        self.idx = idx
        self.kind = kind
        self.project_key = project_key
        self.rng = random.Random(f"bb-emu:{seed}:repo:{info.full_name}")
        self.full = info.full_name
        self.path = f"/repositories/{info.full_name}"
        self.api = API + self.path
        self.web = f"{WEB}/{info.full_name}"
        self.ref: dict = {}
        self.obj: dict = {}
        self.created_us = 0
        self.pushed_us = 0
        self.t_start = 0
        self.t_end = 0
        self.mainbranch = "main"
        self.develop: str | None = None
        self.language = "python"
        self.contributors: list[dict] = []
        self.commits: list[_C] = []
        self.anc: list[int] = []
        self.cdicts: list[dict] = []
        self.by_hash: dict[str, int] = {}
        self.heads: dict[str, int] = {}
        self.main_history: list[tuple[int, int]] = []  # (tick, idx) of main-branch heads
        self.tick = 0
        self.prs: dict[int, _PR] = {}
        self.pipelines: list[_Pipeline] = []
        self.comment_seq = 0
        self.task_seq = 0
        self.fork_base_idx: int | None = None
        self.upstream_branch: str | None = None
        self.branch_names: set[str] = set()
        self.author_cache: dict[str, dict] = {}
        self.act_seq = 0
