"""Git data: branches, tags, commits and commit statuses."""

from __future__ import annotations

import typing as t

from singer_sdk.helpers.types import Context

from tap_bitbucket.client import BitbucketPaginator, newest_first_stop, parse_timestamp
from tap_bitbucket.streams.base import IncrementalMixin
from tap_bitbucket.streams.repository import RepoChildStream

if t.TYPE_CHECKING:
    from collections.abc import Iterable

_EMPTY = "the repository is empty (no commits yet)"
_GONE = "the repository no longer exists (deleted during the sync?)"


class BranchesStream(RepoChildStream):
    """Branches: GET /repositories/{w}/{r}/refs/branches (full table: no timestamp)."""

    name = "branches"
    path = "/repositories/{workspace_slug}/{repo_slug}/refs/branches"
    primary_keys = ("repo_uuid", "name")
    tolerated_errors: t.ClassVar[dict[int, str]] = {409: _EMPTY, 404: _GONE}


class TagsStream(RepoChildStream):
    """Tags: GET /repositories/{w}/{r}/refs/tags (full table: tags can be deleted)."""

    name = "tags"
    path = "/repositories/{workspace_slug}/{repo_slug}/refs/tags"
    primary_keys = ("repo_uuid", "name")
    tolerated_errors: t.ClassVar[dict[int, str]] = {409: _EMPTY, 404: _GONE}


class CommitsStream(IncrementalMixin, RepoChildStream):
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
    tolerated_errors: t.ClassVar[dict[int, str]] = {409: _EMPTY, 404: _GONE}

    def get_new_paginator(self) -> BitbucketPaginator:
        context = self.context
        mark = self.bookmark(dict(context) if context else None)
        return BitbucketPaginator(
            self.runtime.origin, stop_after_page=newest_first_stop("date", mark)
        )

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        mark = self.bookmark(context)
        rows = (
            row
            for row in self.request_records(context)
            if mark is None or (row.get("date") and parse_timestamp(row["date"]) > mark)
        )
        return self.records_then_promote(rows, context)

    def get_child_context(self, record: dict[str, t.Any], context: Context | None) -> Context:
        assert context is not None
        return {**_repo_keys(context), "commit_hash": record["hash"]}


class CommitStatusesStream(RepoChildStream):
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
    tolerated_errors: t.ClassVar[dict[int, str]] = {404: _GONE}


def _repo_keys(context: Context) -> dict[str, t.Any]:
    return {k: context[k] for k in ("workspace_slug", "repo_slug", "repo_uuid")}
