"""Repositories and the repository-level settings tables (permissions, hooks, keys...)."""

from __future__ import annotations

import hashlib
import typing as t

from singer_sdk.helpers.types import Context

from tap_bitbucket.client import BitbucketStream, RepoStream
from tap_bitbucket.streams.workspace import WorkspacesStream

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from tap_bitbucket.concurrency import RepoFanOut
    from tap_bitbucket.tap import TapBitbucket

# Repositories whose children run at once. Bitbucket's budget (1,000 requests/h per
# user) is what limits a sync, so more threads only hide latency; 4 does that without
# bursting through the budget when no pacer is set.
DEFAULT_WORKERS = 4

_GONE = "the repository no longer exists (deleted during the sync?)"
_NO_ADMIN = "the credential lacks repository admin rights or the scope for this"
_NO_PIPELINES = "Pipelines is disabled for this repository, or the repository no longer exists"


def shard_of(repo_uuid: str, shard_count: int) -> int:
    """Stable shard of a repository: the same on every machine and Python version."""
    digest = hashlib.sha256(repo_uuid.strip("{}").lower().encode()).digest()
    return int.from_bytes(digest[:8], "big") % shard_count


class RepositoriesStream(BitbucketStream):
    """Repositories: GET /repositories/{workspace} (full table).

    Every repository in scope is emitted and its children always run: a repository's
    ``updated_on`` moves only on git activity, never on PRs or pipelines (notes §8.11),
    so it must not gate them.
    """

    name = "repositories"
    path = "/repositories/{workspace_slug}"
    primary_keys = ("uuid",)
    replication_key = None
    parent_stream_type = WorkspacesStream
    context_keys = ("workspace_slug", "workspace_uuid")

    _fanout: RepoFanOut | None = None  # set while this stream reads one workspace

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        tap = t.cast("TapBitbucket", self._tap)
        if not self.fans_out():
            yield from self.in_scope(self.listing(context))
            return
        fanout = tap.fanout(self.name, self.workers())
        following = tap.workspace_after(str((context or {}).get("workspace_slug")))
        if following is not None:
            # Listed on a worker while this workspace's repositories run, so the pool
            # moves on to the next workspace without draining.
            self.prefetch(following)
        self._fanout = fanout

        def upcoming() -> Iterable[Context]:
            if following is None:
                return
            for row in self.in_scope(self.listing(following, peek=True)):
                yield self.get_child_context(row, following)

        try:
            yield from fanout.read_ahead(
                self.in_scope(self.listing(context)),
                lambda r: self.get_child_context(r, context),
                upcoming,
            )
        finally:
            self._fanout = None

    def workers(self) -> int:
        return int(self.config.get("max_workers") or DEFAULT_WORKERS)

    def fans_out(self) -> bool:
        """Whether the children of each repository run on the worker pool."""
        children = [c for c in self.child_streams if c.selected or c.has_selected_descendents]
        # A dry run (`--test`) caps records per stream object; workers have their own.
        return self.workers() > 1 and bool(children) and self.ABORT_AT_RECORD_COUNT is None

    def in_scope(self, rows: Iterable[dict[str, t.Any]]) -> Iterable[dict[str, t.Any]]:
        tap = t.cast("TapBitbucket", self._tap)
        return (
            row
            for row in rows
            if tap.repository_in_scope(row.get("full_name") or "", row.get("uuid") or "")
        )

    _prefetched: dict[str, list[dict[str, t.Any]]] | None = None

    def prefetch(self, context: Context) -> None:
        """Have the worker pool list a workspace's repositories ahead of its turn."""
        fanout = t.cast("TapBitbucket", self._tap).active_fanout
        if fanout is not None and str(context["workspace_slug"]) not in (self._prefetched or {}):
            fanout.prefetch_listing(context)

    def listing(
        self, context: Context | None, *, keep: bool = False, peek: bool = False
    ) -> Iterable[dict[str, t.Any]]:
        """The workspace's repositories, listed once per run.

        The up-front scope check (globs that match nothing) reads the list with
        ``keep=True``, and the worker pool may have listed it ahead of its turn; the
        sync then uses those rows instead of listing again. ``peek`` reads them without
        using them up.
        """
        slug = str((context or {}).get("workspace_slug"))
        prefetched = self._prefetched if self._prefetched is not None else {}
        fanout = t.cast("TapBitbucket", self._tap).active_fanout
        if slug not in prefetched and fanout is not None:
            listed = fanout.take_listing(slug)
            if listed is not None:
                prefetched[slug] = listed
                self._prefetched = prefetched
        if slug in prefetched:
            yield from (prefetched[slug] if peek else prefetched.pop(slug))
            return
        if not keep:
            yield from self.request_records(context)
            return
        rows = list(self.request_records(context))
        self._prefetched = {**prefetched, slug: rows}
        yield from rows

    def generate_child_contexts(
        self, record: dict[str, t.Any], context: Context | None
    ) -> Iterable[Context | None]:
        if self._fanout is None:
            yield self.get_child_context(record, context)
            return
        # The children already ran on a worker: write their output here, in order.
        self._fanout.flush(self.get_child_context(record, context))

    def get_child_context(self, record: dict[str, t.Any], context: Context | None) -> Context:
        workspace, _, slug = str(record["full_name"]).partition("/")
        return {
            "workspace_slug": (context or {}).get("workspace_slug", workspace),
            "repo_slug": record.get("slug") or slug,
            "repo_uuid": record["uuid"],
        }


class RepoChildStream(RepoStream):
    parent_stream_type: type[BitbucketStream] | None = RepositoriesStream
    replication_key: str | None = None
    tolerated_errors: t.ClassVar[dict[int, str]] = {404: _GONE}


class _AdminRepoStream(RepoChildStream):
    tolerated_errors: t.ClassVar[dict[int, str]] = {403: _NO_ADMIN, 404: _GONE}


class RepositoryUserPermissionsStream(_AdminRepoStream):
    """Explicit user permissions: GET /repositories/{w}/{r}/permissions-config/users."""

    name = "repository_user_permissions"
    path = "/repositories/{workspace_slug}/{repo_slug}/permissions-config/users"
    primary_keys = ("repo_uuid", "user_uuid")

    def transform(self, row: dict[str, t.Any], context: Context | None) -> dict[str, t.Any]:
        row["user_uuid"] = (row.get("user") or {}).get("uuid")
        return row


class RepositoryGroupPermissionsStream(_AdminRepoStream):
    """Explicit group permissions: GET /repositories/{w}/{r}/permissions-config/groups."""

    name = "repository_group_permissions"
    path = "/repositories/{workspace_slug}/{repo_slug}/permissions-config/groups"
    primary_keys = ("repo_uuid", "group_slug")

    def transform(self, row: dict[str, t.Any], context: Context | None) -> dict[str, t.Any]:
        row["group_slug"] = (row.get("group") or {}).get("slug")
        return row


class BranchRestrictionsStream(_AdminRepoStream):
    """Branch restrictions: GET /repositories/{w}/{r}/branch-restrictions (repository:admin)."""

    name = "branch_restrictions"
    path = "/repositories/{workspace_slug}/{repo_slug}/branch-restrictions"
    primary_keys = ("repo_uuid", "id")


class DefaultReviewersStream(RepoChildStream):
    """Repository default reviewers: GET /repositories/{w}/{r}/default-reviewers."""

    name = "default_reviewers"
    path = "/repositories/{workspace_slug}/{repo_slug}/default-reviewers"
    primary_keys = ("repo_uuid", "user_uuid")
    tolerated_errors: t.ClassVar[dict[int, str]] = {403: _NO_ADMIN, 404: _GONE}

    def transform(self, row: dict[str, t.Any], context: Context | None) -> dict[str, t.Any]:
        row["user_uuid"] = row.get("uuid")
        return row


class RepositoryWebhooksStream(_AdminRepoStream):
    """Repository webhooks: GET /repositories/{w}/{r}/hooks (webhook scope)."""

    name = "repository_webhooks"
    path = "/repositories/{workspace_slug}/{repo_slug}/hooks"
    primary_keys = ("uuid",)


class DownloadsStream(RepoChildStream):
    """Download artifacts: GET /repositories/{w}/{r}/downloads."""

    name = "downloads"
    path = "/repositories/{workspace_slug}/{repo_slug}/downloads"
    primary_keys = ("repo_uuid", "name")


class DeployKeysStream(_AdminRepoStream):
    """Deploy keys: GET /repositories/{w}/{r}/deploy-keys (repository:admin)."""

    name = "deploy_keys"
    path = "/repositories/{workspace_slug}/{repo_slug}/deploy-keys"
    primary_keys = ("repo_uuid", "id")


class EnvironmentsStream(RepoChildStream):
    """Deployment environments: GET /repositories/{w}/{r}/environments."""

    name = "environments"
    path = "/repositories/{workspace_slug}/{repo_slug}/environments"
    primary_keys = ("uuid",)
    tolerated_errors: t.ClassVar[dict[int, str]] = {404: _NO_PIPELINES}


class DeploymentsStream(RepoChildStream):
    """Deployments: GET /repositories/{w}/{r}/deployments (full table).

    Bitbucket ignores `q` here and answers 400 to `sort` (notes §3.3, §8.17), and a
    deployment has no top-level timestamp: there is nothing safe to bookmark.
    """

    name = "deployments"
    path = "/repositories/{workspace_slug}/{repo_slug}/deployments"
    primary_keys = ("uuid",)
    tolerated_errors: t.ClassVar[dict[int, str]] = {404: _NO_PIPELINES}
