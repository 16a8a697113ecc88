"""Git data: branches, tags, commits and commit statuses."""

from __future__ import annotations

import typing as t

from singer_sdk.helpers.types import Context

from tap_bitbucket.pages import BitbucketPaginator, newest_first_stop
from tap_bitbucket.streams.repository import REPO_GONE, REPO_KEYS, RepoStream
from tap_bitbucket.timestamps import newer_than

if t.TYPE_CHECKING:
    from collections.abc import Iterable

_EMPTY = "the repository is empty (no commits yet)"


class BranchesStream(RepoStream):
    """Branches: GET /repositories/{w}/{r}/refs/branches (full table: no timestamp)."""

    name = "branches"
    path = "/repositories/{workspace_slug}/{repo_slug}/refs/branches"
    primary_keys = ("repo_uuid", "name")
    tolerated_errors: t.ClassVar[dict[int, str]] = {409: _EMPTY, 404: REPO_GONE}
    follows_git = True


class TagsStream(RepoStream):
    """Tags: GET /repositories/{w}/{r}/refs/tags (full table: tags can be deleted)."""

    name = "tags"
    path = "/repositories/{workspace_slug}/{repo_slug}/refs/tags"
    primary_keys = ("repo_uuid", "name")
    tolerated_errors: t.ClassVar[dict[int, str]] = {409: _EMPTY, 404: REPO_GONE}
    follows_git = True


class CommitsStream(RepoStream):
    """Commits: GET /repositories/{w}/{r}/commits, newest-first scan to the bookmark.

    Bitbucket accepts and ignores `q` and `sort` here and always answers in
    topological newest-first order over all refs, with iterator pagination (notes
    §3.3, §8.15). Author dates are not monotonic in that order, so the scan stops
    only after a whole page older than the bookmark.
    """

    name = "commits"
    path = "/repositories/{workspace_slug}/{repo_slug}/commits"
    primary_keys = ("repo_uuid", "hash")
    replication_key = "date"
    is_sorted = False
    tolerated_errors: t.ClassVar[dict[int, str]] = {409: _EMPTY, 404: REPO_GONE}
    # Unread while the repository's updated_on has not moved (a push moves it, notes
    # §8.11), unless commit statuses are selected: those change without a push.
    follows_git = True

    def paginator_for(self, context: Context | None) -> BitbucketPaginator:
        mark = self.services.bookmarks.start(self.name, context or {})
        return BitbucketPaginator(
            self.services.settings.origin, stop_after_page=newest_first_stop("date", mark)
        )

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        mark = self.services.bookmarks.start(self.name, context or {})
        return (r for r in self.request_records(context) if newer_than(r.get("date"), mark))

    def get_child_context(self, record: dict[str, t.Any], context: Context | None) -> Context:
        assert context is not None
        return {**{k: context[k] for k in REPO_KEYS}, "commit_hash": record["hash"]}


class CommitStatusesStream(RepoStream):
    """Build statuses of each new commit: GET .../commit/{hash}/statuses.

    One request per commit, so it is not selected by default (see README: cost).
    """

    name = "commit_statuses"
    path = "/repositories/{workspace_slug}/{repo_slug}/commit/{commit_hash}/statuses"
    primary_keys = ("repo_uuid", "commit_hash", "key")
    parent_stream_type = CommitsStream
    state_partitioning_keys: t.ClassVar[list[str] | None] = ["repo_uuid"]
    selected_by_default = False
    context_keys = ("workspace_slug", "repo_slug", "repo_uuid", "commit_hash")
    tolerated_errors: t.ClassVar[dict[int, str]] = {404: REPO_GONE}

