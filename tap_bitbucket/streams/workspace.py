"""Workspace-level streams: the 'Information' tables (workspaces, members, projects...)."""

from __future__ import annotations

import typing as t

import requests
from singer_sdk.helpers.types import Context

from tap_bitbucket.client import BitbucketStream, SkipPartition, error_message, response_json
from tap_bitbucket.errors import AuthError, ConfigError
from tap_bitbucket.streams.base import IncrementalMixin

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from tap_bitbucket.tap import TapBitbucket

_NO_ADMIN = "the credential lacks the scope or admin rights to read this"


class WorkspacesStream(BitbucketStream):
    """Workspaces: GET /workspaces/{workspace} per configured slug, else /user/workspaces.

    GET /workspaces answers 410 since CHANGE-2770 (notes §1.1); /user/workspaces is
    its replacement and also says whether the caller administers each workspace.
    """

    name = "workspaces"
    path = "/user/workspaces"
    primary_keys = ("uuid",)
    replication_key = None

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        first_shard = int(self.config.get("shard_index") or 0) == 0
        for workspace in self._workspaces(context):
            if first_shard:
                yield workspace
            else:
                # Workspace-level tables belong to shard 0, so N shards emit them once;
                # the other shards only need each workspace to reach its repositories.
                child_context = self.get_child_context(workspace, context)
                self.sync_children_of(child_context, only=("repositories",))

    def _workspaces(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        tap = t.cast("TapBitbucket", self._tap)
        slugs = [str(s) for s in self.config.get("workspaces") or []]
        if slugs:
            tap.visit_workspaces(slugs)
            yield from (self.workspace(slug) for slug in slugs)
            return
        # The whole (short) list first: the worker pool lists the next workspace's
        # repositories while this one's run, so it must know which workspace is next.
        accesses = self.accesses()
        tap.visit_workspaces(workspace_slug(a) for a in accesses)
        for access in accesses:
            # The list item carries only uuid, slug and links: read the workspace itself
            # (one request per workspace) so the record has its name, dates and flags.
            workspace = dict(self.workspace(workspace_slug(access)))
            workspace["administrator"] = access.get("administrator")
            yield workspace

    _accesses: list[dict[str, t.Any]] | None = None

    def accesses(self) -> list[dict[str, t.Any]]:
        """GET /user/workspaces, once per run (the up-front scope check reads it too)."""
        if self._accesses is None:
            self._accesses = list(self.request_records(None))
        return self._accesses

    _fetched: dict[str, dict[str, t.Any]] | None = None

    def workspace(self, slug: str) -> dict[str, t.Any]:
        """GET /workspaces/{slug}, once per run (the up-front scope check reads it too)."""
        if self._fetched is None:
            self._fetched = {}
        if slug not in self._fetched:
            self._fetched[slug] = self._get_workspace(slug)
        return self._fetched[slug]

    def _get_workspace(self, slug: str) -> dict[str, t.Any]:
        url = f"{self.url_base}/workspaces/{slug}"
        prepared = self.build_prepared_request(method="GET", url=url, headers=self.http_headers)
        try:
            response = self.request_decorator(self._request)(prepared, None)
        except SkipPartition as skip:
            raise ConfigError(
                "workspaces",
                f"workspace '{slug}' was not found or is not visible to this credential "
                f"(HTTP {skip.status}); check the slug in the workspace URL",
            ) from None
        workspace = dict(response_json(response))
        workspace.setdefault("administrator", None)
        return workspace

    # GET /workspaces/{slug} answering 404/403 means a wrong slug: that is bad config.
    tolerated_errors: t.ClassVar[dict[int, str]] = {404: "not found", 403: "forbidden"}

    def get_child_context(self, record: dict[str, t.Any], context: Context | None) -> Context:
        return {"workspace_slug": record["slug"], "workspace_uuid": record["uuid"]}


def workspace_slug(access: dict[str, t.Any]) -> str:
    """The slug of a GET /user/workspaces item (a workspace access, not a workspace)."""
    return str((access.get("workspace") or {}).get("slug"))


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

    def transform(self, row: dict[str, t.Any], context: Context | None) -> dict[str, t.Any]:
        row["user_uuid"] = (row.get("user") or {}).get("uuid")
        return row


class WorkspaceWebhooksStream(WorkspaceChildStream):
    """Workspace webhooks: GET /workspaces/{workspace}/hooks (needs the webhook scope)."""

    name = "workspace_webhooks"
    path = "/workspaces/{workspace_slug}/hooks"
    primary_keys = ("uuid",)
    replication_key = None
    tolerated_errors: t.ClassVar[dict[int, str]] = {403: _NO_ADMIN}


class ProjectsStream(IncrementalMixin, WorkspaceChildStream):
    """Projects: GET /workspaces/{workspace}/projects, bookmarked on ``updated_on``.

    ``q=updated_on>=`` works here (notes §3.3). Project permissions and default
    reviewers do not move ``updated_on``, so when one of those children is selected the
    whole (small) list is read once and the children run for every project, while only
    changed projects are emitted.
    """

    name = "projects"
    path = "/workspaces/{workspace_slug}/projects"
    primary_keys = ("uuid",)
    replication_key = "updated_on"
    is_sorted = True

    def _children_selected(self) -> bool:
        return any(c.selected or c.has_selected_descendents for c in self.child_streams)

    def get_url_params(self, context: Context | None, next_page_token: str | None) -> t.Any:
        params = super().get_url_params(context, next_page_token)
        since = self.q_since(context)
        if since and not self._children_selected():
            params["q"] = f"updated_on >= {since}"
        params["sort"] = "updated_on"
        return params

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        mark = self.bookmark(context)
        for row in self.request_records(context):
            if mark is None or _after(row.get("updated_on"), mark):
                yield row
            elif self._children_selected():
                # Unchanged project: not emitted again, but its permissions may have changed.
                self.sync_children_of(self.get_child_context(row, context))

    def get_child_context(self, record: dict[str, t.Any], context: Context | None) -> Context:
        assert context is not None
        return {
            "workspace_slug": context["workspace_slug"],
            "project_key": record["key"],
            "project_uuid": record["uuid"],
        }


class ProjectChildStream(BitbucketStream):
    parent_stream_type = ProjectsStream
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

    def transform(self, row: dict[str, t.Any], context: Context | None) -> dict[str, t.Any]:
        row["user_uuid"] = (row.get("user") or {}).get("uuid")
        return row


class ProjectGroupPermissionsStream(ProjectChildStream):
    """Explicit group permissions on a project: GET .../permissions-config/groups."""

    name = "project_group_permissions"
    path = "/workspaces/{workspace_slug}/projects/{project_key}/permissions-config/groups"
    primary_keys = ("project_uuid", "group_slug")
    replication_key = None

    def transform(self, row: dict[str, t.Any], context: Context | None) -> dict[str, t.Any]:
        row["group_slug"] = (row.get("group") or {}).get("slug")
        return row


class ProjectDefaultReviewersStream(ProjectChildStream):
    """Project default reviewers: GET /workspaces/{workspace}/projects/{key}/default-reviewers."""

    name = "project_default_reviewers"
    path = "/workspaces/{workspace_slug}/projects/{project_key}/default-reviewers"
    primary_keys = ("project_uuid", "user_uuid")
    replication_key = None

    def transform(self, row: dict[str, t.Any], context: Context | None) -> dict[str, t.Any]:
        row["user_uuid"] = (row.get("user") or {}).get("uuid")
        return row


def _after(value: str | None, mark: t.Any) -> bool:
    from tap_bitbucket.client import parse_timestamp  # noqa: PLC0415

    return bool(value) and parse_timestamp(str(value)) > mark


def check_credentials(tap: TapBitbucket) -> None:
    """One cheap authenticated call that fails fast on bad credentials.

    GET /workspaces/{slug} when workspaces are configured (works for every credential,
    access tokens included), else GET /user/workspaces?pagelen=10.
    """
    runtime = tap.runtime
    runtime.authenticator.prepare()
    slugs = list(tap.config.get("workspaces") or [])
    url = (
        f"{runtime.api_url}/workspaces/{slugs[0]}"
        if slugs
        else f"{runtime.api_url}/user/workspaces?pagelen=10"
    )
    prepared = requests.Request("GET", url, headers={"Accept": "application/json"}).prepare()
    authed = runtime.authenticator(prepared)
    try:
        response = runtime.session().send(authed, timeout=30)
    except requests.RequestException as exc:
        msg = f"Cannot reach {runtime.api_url}: {type(exc).__name__}. Check 'api_url' and the network."
        raise AuthError(msg) from None
    if response.status_code == 401:
        msg = (
            f"Bitbucket rejected the credentials (HTTP 401: {error_message(response)}). "
            "For API tokens use the Atlassian account email as 'username'."
        )
        raise AuthError(msg)
    if response.status_code >= 400:
        path = url.split("?", maxsplit=1)[0].removeprefix(runtime.api_url)
        msg = f"GET {path} answered HTTP {response.status_code}: {error_message(response)}."
        raise AuthError(msg)
