"""Repositories and the repository-level settings tables (permissions, hooks, keys...)."""

from __future__ import annotations

import typing as t

from singer_sdk.helpers.types import Context

from tap_bitbucket.client import BitbucketStream
from tap_bitbucket.streams import bookmarks
from tap_bitbucket.streams.workspace import WorkspacesStream, group_slug, user_uuid

if t.TYPE_CHECKING:
    from collections.abc import Iterable

REPO_KEYS = ("workspace_slug", "repo_slug", "repo_uuid")
REPO_GONE = "the repository no longer exists (deleted during the sync?)"
NO_ADMIN = "the credential lacks repository admin rights or the scope for this"
NO_PIPELINES = "Pipelines is disabled for this repository, or the repository no longer exists"
#: Repositories whose child requests are planned ahead of the one being written.
LOOKAHEAD = 8


class RepositoriesStream(BitbucketStream):
    """Repositories: GET /repositories/{workspace} (full table).

    Every repository in scope is emitted and its children always run: a repository's
    ``updated_on`` moves only on git activity, never on PRs or pipelines (notes §8.11),
    so it must not gate them. The listing comes from the directory (read once, shared
    with the scope check); while a repository's children are synced, the first pages
    of the next repositories' children are already being fetched (prefetch.py), for
    the repositories the stream maps keep only (issue 12, bug 1).
    """

    name = "repositories"
    path = "/repositories/{workspace_slug}"
    primary_keys = ("uuid",)
    child_context_fields = ("full_name",)
    replication_key = None
    parent_stream_type = WorkspacesStream
    context_keys = ("workspace_slug", "workspace_uuid")

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        assert context is not None
        services = self.services
        slug = str(context["workspace_slug"])
        listed = [
            r for r in services.directory.repositories(slug) if services.scope.includes_record(r)
        ]
        state = self.get_context_state(context)
        rows = rotated(listed, services.bookmarks.resume_at(self.name, self.partition_of(context)))
        prefetcher, counter = services.transport.prefetcher, services.progress
        planned = 0
        for index, row in enumerate(rows):
            if not counter.room_for_a_repository():
                # The cap of a scheduled run: stop before this repository, and start the
                # next run here (issue 13: every repository gets its turn).
                bookmarks.set_resume_at(state, str(row["uuid"]))
                return
            if prefetcher.enabled:
                planned = max(planned, index)
                budget = 3 * prefetcher.workers
                while planned < len(rows) and planned <= index + LOOKAHEAD and (
                    planned == index or prefetcher.pending() < budget
                ):
                    self._plan(rows[planned], context)
                    planned += 1
            counter.repository_started()
            yield row
            counter.repository_done()
        bookmarks.set_resume_at(state, None)

    def _plan(self, row: dict[str, t.Any], context: Context) -> None:
        """Prefetch the children's first pages of one repository the maps keep."""
        if not self.passes_stream_maps(row, context):
            return
        child_context = self.get_child_context(row, context)
        for child in self.selected_children():
            child.prefetch(child_context)

    def get_child_context(self, record: dict[str, t.Any], context: Context | None) -> Context:
        workspace, _, slug = str(record["full_name"]).partition("/")
        return {
            "workspace_slug": (context or {}).get("workspace_slug", workspace),
            "repo_slug": record.get("slug") or slug,
            "repo_uuid": record["uuid"],
        }


def rotated(rows: list[dict[str, t.Any]], start_uuid: str | None) -> list[dict[str, t.Any]]:
    """The rows from the one a capped run stopped at, then the rest (unknown: as listed)."""
    for index, row in enumerate(rows):
        if str(row.get("uuid")) == start_uuid:
            return rows[index:] + rows[:index]
    return rows


class RepoStream(BitbucketStream):
    """A child of ``repositories``: one partition (and one bookmark) per repository.

    The context is exactly (workspace_slug, repo_slug, repo_uuid), so each repository
    is one state partition. Streams whose context adds a PR id or pipeline uuid set
    state_partitioning_keys = ["repo_uuid"], so state never grows with PRs or commits.
    """

    parent_stream_type: type[BitbucketStream] | None = RepositoriesStream
    replication_key: str | None = None
    context_keys: tuple[str, ...] = REPO_KEYS
    tolerated_errors: t.ClassVar[dict[int, str]] = {404: REPO_GONE}


class SettingsRepoStream(RepoStream):
    """A slow-changing repository settings table, read once per ``admin_refresh_hours``.

    Nothing in Bitbucket says when these change (no timestamp, no event in the
    repository's ``updated_on``), so they are re-read on a schedule (issue 13).
    """

    slow_changing = True


class AdminRepoStream(SettingsRepoStream):
    """A repository setting that needs admin rights (or a scope) to read."""

    tolerated_errors: t.ClassVar[dict[int, str]] = {403: NO_ADMIN, 404: REPO_GONE}


class RepositoryUserPermissionsStream(AdminRepoStream):
    """Explicit user permissions: GET /repositories/{w}/{r}/permissions-config/users."""

    name = "repository_user_permissions"
    path = "/repositories/{workspace_slug}/{repo_slug}/permissions-config/users"
    primary_keys = ("repo_uuid", "user_uuid")

    transform = user_uuid


class RepositoryGroupPermissionsStream(AdminRepoStream):
    """Explicit group permissions: GET /repositories/{w}/{r}/permissions-config/groups."""

    name = "repository_group_permissions"
    path = "/repositories/{workspace_slug}/{repo_slug}/permissions-config/groups"
    primary_keys = ("repo_uuid", "group_slug")

    transform = group_slug


class BranchRestrictionsStream(AdminRepoStream):
    """Branch restrictions: GET /repositories/{w}/{r}/branch-restrictions (repository:admin)."""

    name = "branch_restrictions"
    path = "/repositories/{workspace_slug}/{repo_slug}/branch-restrictions"
    primary_keys = ("repo_uuid", "id")


class DefaultReviewersStream(SettingsRepoStream):
    """Repository default reviewers: GET /repositories/{w}/{r}/default-reviewers."""

    name = "default_reviewers"
    path = "/repositories/{workspace_slug}/{repo_slug}/default-reviewers"
    primary_keys = ("repo_uuid", "user_uuid")
    tolerated_errors: t.ClassVar[dict[int, str]] = {403: NO_ADMIN, 404: REPO_GONE}

    def transform(self, row: dict[str, t.Any], context: Context | None) -> dict[str, t.Any]:
        row["user_uuid"] = row.get("uuid")
        return row


class RepositoryWebhooksStream(AdminRepoStream):
    """Repository webhooks: GET /repositories/{w}/{r}/hooks (webhook scope)."""

    name = "repository_webhooks"
    path = "/repositories/{workspace_slug}/{repo_slug}/hooks"
    primary_keys = ("uuid",)


class DownloadsStream(SettingsRepoStream):
    """Download artifacts: GET /repositories/{w}/{r}/downloads."""

    name = "downloads"
    path = "/repositories/{workspace_slug}/{repo_slug}/downloads"
    primary_keys = ("repo_uuid", "name")


class DeployKeysStream(AdminRepoStream):
    """Deploy keys: GET /repositories/{w}/{r}/deploy-keys (repository:admin)."""

    name = "deploy_keys"
    path = "/repositories/{workspace_slug}/{repo_slug}/deploy-keys"
    primary_keys = ("repo_uuid", "id")


class EnvironmentsStream(SettingsRepoStream):
    """Deployment environments: GET /repositories/{w}/{r}/environments."""

    name = "environments"
    path = "/repositories/{workspace_slug}/{repo_slug}/environments"
    primary_keys = ("uuid",)
    tolerated_errors: t.ClassVar[dict[int, str]] = {404: NO_PIPELINES}


class DeploymentsStream(RepoStream):
    """Deployments: GET /repositories/{w}/{r}/deployments (full table).

    Bitbucket ignores `q` here and answers 400 to `sort` (notes §3.3, §8.17), and a
    deployment has no top-level timestamp: there is nothing safe to bookmark.
    """

    name = "deployments"
    path = "/repositories/{workspace_slug}/{repo_slug}/deployments"
    primary_keys = ("uuid",)
    tolerated_errors: t.ClassVar[dict[int, str]] = {404: NO_PIPELINES}
    # A deployment is a pipeline step's (its release is the pipeline run, and the
    # endpoint 404s with Pipelines off, notes §8.8): no pipeline ever, no deployment.
    records_only_with = "pipelines"
