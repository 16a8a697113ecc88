"""Workspace-level streams: the 'Information' tables (workspaces, members, projects...)."""

from __future__ import annotations

import typing as t

from singer_sdk.helpers.types import Context

from tap_bitbucket.client import BitbucketStream
from tap_bitbucket.shapes import as_object
from tap_bitbucket.streams import bookmarks
from tap_bitbucket.timestamps import newer_than

if t.TYPE_CHECKING:
    from collections.abc import Iterable

_NO_ADMIN = "the credential lacks the scope or admin rights to read this"


def user_uuid(
    stream: BitbucketStream, row: dict[str, t.Any], context: Context | None
) -> dict[str, t.Any]:
    """The transform of every permission and member table: the user's uuid as a key."""
    row["user_uuid"] = as_object(row.get("user")).get("uuid")
    return row


def group_slug(
    stream: BitbucketStream, row: dict[str, t.Any], context: Context | None
) -> dict[str, t.Any]:
    """The transform of the group permission tables: the group's slug as a key."""
    row["group_slug"] = as_object(row.get("group")).get("slug")
    return row


class WorkspacesStream(BitbucketStream):
    """Workspaces: GET /workspaces/{workspace} per configured slug, else /user/workspaces.

    GET /workspaces answers 410 since CHANGE-2770 (notes §1.1); /user/workspaces is
    its replacement and also says whether the caller administers each workspace. Both
    listings come from the directory, which never tolerates an error (bug 2).
    """

    name = "workspaces"
    path = "/user/workspaces"
    primary_keys = ("uuid",)
    child_context_fields = ("slug",)
    replication_key = None

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        services = self.services
        directory = services.directory
        administrator = (
            {}
            if services.settings.workspaces
            else {
                str(as_object(a.get("workspace")).get("slug")): a.get("administrator")
                for a in directory.accesses()
            }
        )
        state = self.get_context_state(context)
        slugs = directory.workspace_slugs()
        start = services.bookmarks.resume_at(self.name, {})
        if start in slugs:
            # A capped run stopped in this workspace: start there (issue 13, rotation).
            slugs = slugs[slugs.index(start) :] + slugs[: slugs.index(start)]
        for index, slug in enumerate(slugs):
            if not services.progress.room_for_a_repository():
                bookmarks.set_resume_at(state, slug)
                return
            yield from self._workspace(slug, administrator, context)
            if services.progress.capped:
                # Stopped inside this workspace, which keeps its own place: the next run
                # starts with the next workspace, so none waits on a large one.
                bookmarks.set_resume_at(state, slugs[(index + 1) % len(slugs)])
                return
        bookmarks.set_resume_at(state, None)

    def _workspace(
        self, slug: str, administrator: dict[str, t.Any], context: Context | None
    ) -> Iterable[dict[str, t.Any]]:
        services = self.services
        # The list item carries only uuid, slug and links: read the workspace itself
        # (one request per workspace) so the record has its name, dates and flags.
        workspace = dict(services.directory.workspace(slug))
        if slug in administrator:
            workspace["administrator"] = administrator[slug]
        if services.scope.emits_workspace_tables:
            yield workspace
        else:
            # Workspace-level tables belong to shard 0, so N shards emit them once;
            # the other shards only need each workspace to reach its repositories.
            child_context = self.get_child_context(workspace, context)
            for child in self.selected_children():
                if child.name == "repositories":
                    child.sync(context=child_context)

    def get_child_context(self, record: dict[str, t.Any], context: Context | None) -> Context:
        return {"workspace_slug": record["slug"], "workspace_uuid": record["uuid"]}


class WorkspaceChildStream(BitbucketStream):
    parent_stream_type = WorkspacesStream
    context_keys = ("workspace_slug", "workspace_uuid")


class WorkspaceMembersStream(WorkspaceChildStream):
    """Workspace members: GET /workspaces/{workspace}/members (full table).

    ``added_on``/``last_accessed`` vanish for workspaces managed in admin.atlassian.com
    (notes §7), so nothing here can serve as a bookmark.
    """

    name = "workspace_members"
    path = "/workspaces/{workspace_slug}/members"
    primary_keys = ("workspace_uuid", "user_uuid")
    replication_key = None
    tolerated_errors: t.ClassVar[dict[int, str]] = {403: _NO_ADMIN}
    # Membership changes are rare next to an hourly schedule, and nothing dates them.
    slow_changing = True

    transform = user_uuid


class WorkspaceWebhooksStream(WorkspaceChildStream):
    """Workspace webhooks: GET /workspaces/{workspace}/hooks (needs the webhook scope)."""

    name = "workspace_webhooks"
    path = "/workspaces/{workspace_slug}/hooks"
    primary_keys = ("uuid",)
    replication_key = None
    tolerated_errors: t.ClassVar[dict[int, str]] = {403: _NO_ADMIN}
    slow_changing = True


class ProjectsStream(WorkspaceChildStream):
    """Projects: GET /workspaces/{workspace}/projects, bookmarked on ``updated_on``.

    ``q=updated_on>=`` works here (notes §3.3). Project permissions and default
    reviewers do not move ``updated_on``, so when one of those children is selected the
    whole (small) list is read once and the children run for every project, while only
    changed projects are emitted.
    """

    name = "projects"
    path = "/workspaces/{workspace_slug}/projects"
    primary_keys = ("uuid",)
    child_context_fields = ("key",)
    replication_key = "updated_on"
    is_sorted = True

    def _children_selected(self) -> bool:
        return bool(self.selected_children())

    def get_url_params(self, context: Context | None, next_page_token: str | None) -> t.Any:
        params = super().get_url_params(context, next_page_token)
        since = self.services.bookmarks.since(self.name, context or {})
        if since and not self._children_selected():
            params["q"] = f"updated_on >= {since}"
        params["sort"] = "updated_on"
        return params

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        mark = self.services.bookmarks.start(self.name, context or {})
        for row in self.request_records(context):
            if newer_than(row.get("updated_on"), mark):
                yield row
            elif self._children_selected():
                # Unchanged project: not emitted again, but its permissions may have changed.
                for child in self.selected_children():
                    child.sync(context=self.get_child_context(row, context))

    def get_child_context(self, record: dict[str, t.Any], context: Context | None) -> Context:
        assert context is not None
        return {
            "workspace_slug": context["workspace_slug"],
            "project_key": record["key"],
            "project_uuid": record["uuid"],
        }


class ProjectChildStream(BitbucketStream):
    """A project's settings table: slow-changing, read once per ``admin_refresh_hours``."""

    parent_stream_type = ProjectsStream
    slow_changing = True
    context_keys = ("workspace_slug", "project_key", "project_uuid")
    tolerated_errors: t.ClassVar[dict[int, str]] = {
        403: "the credential lacks project admin rights (project:admin)",
        404: "the project no longer exists",
    }


class ProjectUserPermissionsStream(ProjectChildStream):
    """Explicit user permissions on a project: GET .../projects/{key}/permissions-config/users."""

    name = "project_user_permissions"
    path = "/workspaces/{workspace_slug}/projects/{project_key}/permissions-config/users"
    primary_keys = ("project_uuid", "user_uuid")
    replication_key = None

    transform = user_uuid


class ProjectGroupPermissionsStream(ProjectChildStream):
    """Explicit group permissions on a project: GET .../permissions-config/groups."""

    name = "project_group_permissions"
    path = "/workspaces/{workspace_slug}/projects/{project_key}/permissions-config/groups"
    primary_keys = ("project_uuid", "group_slug")
    replication_key = None

    transform = group_slug


class ProjectDefaultReviewersStream(ProjectChildStream):
    """Project default reviewers: GET /workspaces/{workspace}/projects/{key}/default-reviewers."""

    name = "project_default_reviewers"
    path = "/workspaces/{workspace_slug}/projects/{project_key}/default-reviewers"
    primary_keys = ("project_uuid", "user_uuid")
    replication_key = None

    transform = user_uuid
