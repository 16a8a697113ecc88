"""Deterministic Bitbucket Cloud dataset: the emulator's ground truth.

``Dataset(seed, scale)`` builds, eagerly and without any I/O, every JSON object the
emulator serves, in the shapes of Bitbucket Cloud REST API 2.0 (see
``docs/bitbucket-api-notes.md`` and ``tests/emulator/real_responses``).  The server looks
objects up by concrete API path (without the ``/2.0`` prefix):

* ``collection(path)`` -> the full, unfiltered list in Bitbucket's default order, or
  ``None`` when the path is not a collection this dataset serves;
* ``object(path)`` -> a single resource, or ``None``.

``Dataset`` (this module) holds the state and the lookup API; its builders are split by
resource family into the mixin base classes of the sibling modules (accounts, history,
git, pullrequests, pr_events, pipelines, deployments, admin, mutations), which share
``_util`` (time base, formats, id/link helpers), ``_vocab`` (text pools) and ``records``.

Rules that the other emulator modules rely on:

* **Objects are immutable snapshots.**  Nothing here ever modifies a dict after it was
  published; ``mutate()`` replaces changed objects by new dicts (copy-on-write).  Dicts are
  shared between collections (a PR in ``/pullrequests`` *is* the ``/pullrequests/{id}``
  object; commits inside PR commit lists are the repository's commit dicts).  Callers must
  therefore never modify what they get; copy before stripping or filtering fields.
* Pull requests are stored **full** in the ``/pullrequests`` collection; the server strips
  the fields in ``PR_LIST_OMITS`` from list items unless ``fields=`` adds them back.
* Keys are *percent-decoded* paths (``/repositories/acme/api/pipelines/{uuid}``,
  ``.../refs/branches/feature/x``).  ``collection()``/``object()`` accept both decoded and
  percent-encoded forms and ignore a query string.
* The empty repository answers ``[]`` for ``/commits`` and ``/refs/branches|tags`` (the
  server turns that into 409 from ``RepoInfo.empty``); those paths are left out of
  ``collection_paths()``.  A repository with Pipelines disabled has *no* pipelines,
  deployments or environments collections (``None`` -> 404).
* ``/commit/{hash}/statuses`` exists for every commit of a repository (``[]`` for most);
  abbreviated hashes (>= 7 hex digits) are resolved.
"""

from __future__ import annotations

import random
import threading
from datetime import datetime

from ._util import (
    _INITIAL_CLOCK_US,
    API,
    DATA_END,
    EMPTY_REPO_CONFLICT_SUFFIXES,
    INITIAL_CLOCK,
    MINUTE,
    PR_LIST_OMITS,
    WEB,
    _dt,
    _norm,
    parse_timestamp,
)
from .accounts import _AccountsMixin
from .admin import _AdminMixin
from .deployments import _DeploymentsMixin
from .git import _GitMixin
from .history import _HistoryMixin
from .mutations import _MutationsMixin
from .pipelines import _PipelinesMixin
from .pr_events import _PullRequestEventsMixin
from .pullrequests import _PullRequestMixin
from .records import MutationSummary, RepoInfo, _Repo, _Workspace

__all__ = [
    "API",
    "DATA_END",
    "EMPTY_REPO_CONFLICT_SUFFIXES",
    "INITIAL_CLOCK",
    "PR_LIST_OMITS",
    "WEB",
    "Dataset",
    "MutationSummary",
    "RepoInfo",
    "parse_timestamp",
]


# --------------------------------------------------------------------------- the dataset


class Dataset(
    _AccountsMixin,
    _HistoryMixin,
    _GitMixin,
    _PullRequestMixin,
    _PullRequestEventsMixin,
    _PipelinesMixin,
    _DeploymentsMixin,
    _AdminMixin,
    _MutationsMixin,
):
    """Deterministic Bitbucket Cloud data (see module docstring)."""

    def __init__(self, seed: int = 1, scale: int = 1, quiet_repos: int = 0) -> None:
        if scale < 1:
            raise ValueError("scale must be >= 1")
        if quiet_repos < 0:
            raise ValueError("quiet_repos must be >= 0")
        self.seed = int(seed)
        self.scale = int(scale)
        # Quiet repositories: a few commits, no pull requests or pipelines, like most of a
        # large workspace. Built after every other repository from their own seeds, so
        # adding them changes nothing else (test_quiet_repositories_add_only_themselves).
        self.quiet_repos = int(quiet_repos)
        self.lock = threading.RLock()
        self._clock_us = _INITIAL_CLOCK_US
        self._mutations = 0
        self._cols: dict[str, list[dict]] = {}
        self._objs: dict[str, dict] = {}
        self._repo_by_name: dict[str, _Repo] = {}
        self._repo_list: list[_Repo] = []
        self._ws: list[_Workspace] = []
        self._deleted: set[str] = set()
        self._rng = random.Random(f"bb-emu:{self.seed}:global")
        self.workspaces: list[str] = []
        self.repos: list[RepoInfo] = []
        self.users: list[dict] = []
        self.deleted_account: dict = {}
        self.user: dict = {}
        self.email = ""
        self._build()

    # ------------------------------------------------------------------ public API

    @property
    def clock(self) -> datetime:
        """The dataset's "now": later than every timestamp in the data."""
        return _dt(self._clock_us)

    @property
    def mutation_count(self) -> int:
        return self._mutations

    def collection(self, path: str) -> list[dict] | None:
        p = _norm(path)
        with self.lock:
            r = self._repo_of(p)
            if r is not None and r.info.deleted:
                return None
            lst = self._cols.get(p)
            if lst is not None:
                return list(lst)
            if r is None:
                return None
            rest = p[len(r.path) :]
            if r.info.empty and rest in EMPTY_REPO_CONFLICT_SUFFIXES:
                return []
            parts = rest.split("/")
            # ['', 'commit', '{hash}', 'statuses']
            if len(parts) == 4 and parts[1] == "commit" and parts[3] == "statuses":
                full = self._resolve_hash(r, parts[2])
                if full is None:
                    return None
                return list(self._cols.get(f"{r.path}/commit/{full}/statuses", []))
            return None

    def object(self, path: str) -> dict | None:
        p = _norm(path)
        with self.lock:
            r = self._repo_of(p)
            if r is not None and r.info.deleted:
                return None
            obj = self._objs.get(p)
            if obj is not None or r is None:
                return obj
            parts = p[len(r.path) :].split("/")
            # ['', 'commit', '{hash}'] or ['', 'commit', '{hash}', 'statuses', 'build', '{key}']
            if len(parts) >= 3 and parts[1] == "commit":
                full = self._resolve_hash(r, parts[2])
                if full is not None and full != parts[2]:
                    return self._objs.get("/".join([r.path, "commit", full, *parts[3:]]))
            return None

    def collection_paths(self) -> list[str]:
        """Every collection path ``collection()`` answers with a list (200 on the server)."""
        with self.lock:
            out = [p for p in self._cols if not self._is_deleted(p)]
            for r in self._repo_list:
                if r.info.deleted or r.info.empty:
                    continue
                for c in r.commits:
                    sp = f"{r.path}/commit/{c.hash}/statuses"
                    if sp not in self._cols:
                        out.append(sp)
            return sorted(out)

    def object_paths(self) -> list[str]:
        with self.lock:
            return sorted(p for p in self._objs if not self._is_deleted(p))

    def diffstat_target(self, pr_path: str) -> str | None:
        """Where ``GET {pr_path}/diffstat`` redirects (302) to.

        ``pr_path`` is the PR path (``/repositories/w/r/pullrequests/3``, with or without a
        trailing ``/diffstat``).  Returns the path *without* ``/2.0``, percent-encoded and
        with its query string, exactly as in the PR's ``links.diffstat.href``, e.g.
        ``/repositories/w/r/diffstat/w/r:0123456789ab%0Dba9876543210?from_pullrequest_id=3&topic=true``.
        ``collection()`` accepts that string as is.  ``None`` if the PR does not exist.
        """
        p = _norm(pr_path)
        if p.endswith("/diffstat"):
            p = p[: -len("/diffstat")]
        pr = self.object(p)
        if pr is None or pr.get("type") != "pullrequest":
            return None
        return pr["links"]["diffstat"]["href"][len(API) :]

    def repo(self, full_name: str) -> RepoInfo | None:
        r = self._repo_by_name.get(full_name)
        return r.info if r else None

    def repo_for_path(self, path: str) -> RepoInfo | None:
        """The repository a ``/repositories/{w}/{r}/...`` path belongs to (deleted ones too)."""
        r = self._repo_of(_norm(path))
        return r.info if r else None

    def add_item(self, path: str, item: dict, *, touch_repo: bool) -> datetime:
        """A test's change: append ``item`` to the collection at ``path`` (a new tag, a
        deploy key, a member...) one minute later on the clock. With ``touch_repo``, the
        repository's ``updated_on`` moves to that time, as Bitbucket moves it on git
        activity and only then (notes §8.11). Returns the new clock."""
        p = _norm(path)
        with self.lock:
            if p not in self._cols:
                raise KeyError(f"no collection at {path}")
            self._clock_us += MINUTE
            self._cols[p] = [*self._cols[p], item]
            r = self._repo_of(p)
            if touch_repo:
                if r is None:
                    raise KeyError(f"{path} is not a repository's collection")
                r.pushed_us = self._clock_us
                self._mut_touch_repo(r, lambda *_: None)
            return _dt(self._clock_us)

    def delete_repository(self, full_name: str) -> None:
        with self.lock:
            r = self._repo_by_name.get(full_name)
            if r is None:
                raise KeyError(full_name)
            if r.info.deleted:
                return
            r.info.deleted = True
            self._deleted.add(full_name)
            self._rebuild_repo_list(r.ws)

    # ------------------------------------------------------------------ lookup internals

    def _repo_of(self, p: str) -> _Repo | None:
        if not p.startswith("/repositories/"):
            return None
        parts = p.split("/", 4)
        if len(parts) < 4:
            return None
        return self._repo_by_name.get(parts[2] + "/" + parts[3])

    def _is_deleted(self, p: str) -> bool:
        if not self._deleted or not p.startswith("/repositories/"):
            return False
        parts = p.split("/", 4)
        return len(parts) >= 4 and (parts[2] + "/" + parts[3]) in self._deleted

    @staticmethod
    def _resolve_hash(r: _Repo, h: str) -> str | None:
        if h in r.by_hash:
            return h
        if len(h) < 7 or len(h) >= 40 or not all(ch in "0123456789abcdef" for ch in h):
            return None
        found = [c.hash for c in r.commits if c.hash.startswith(h)]
        return found[0] if len(found) == 1 else None
