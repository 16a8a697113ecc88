"""Pull requests and their children: comments, activity, commits, tasks, diffstats."""

from __future__ import annotations

import hashlib
import json
import typing as t
from datetime import datetime

from singer_sdk.helpers.types import Context

from tap_bitbucket.pages import BitbucketPaginator, newest_first_stop
from tap_bitbucket.shapes import as_object
from tap_bitbucket.streams import bookmarks
from tap_bitbucket.streams.batches import BatchChild, BatchedParent
from tap_bitbucket.streams.repository import RepositoriesStream, RepoStream
from tap_bitbucket.timestamps import newer_than, parse_timestamp

if t.TYPE_CHECKING:
    from collections.abc import Iterable

_GONE = "the repository or pull request no longer exists"
ALL_STATES = ["OPEN", "MERGED", "DECLINED", "SUPERSEDED"]


class PullRequestsStream(BatchedParent, RepoStream):
    """Pull requests: GET /repositories/{w}/{r}/pullrequests, all four states.

    * The list returns only OPEN PRs unless `state` is repeated (notes §8.1).
    * `pagelen` above 50 is a 400 here (notes §2.3).
    * `q=updated_on>=...` with `sort=updated_on` is honoured, so the scan starts at the
      bookmark (minus the look-back window).
    * Children (comments, commits, tasks, diffstats) run once per batch of up to 50
      emitted PRs, before those PRs are written (streams/batches.py).
    * The list omits reviewers and participants; `fields=+values.reviewers,...` adds
      them without a detail call per PR (notes §3.4).
    """

    name = "pull_requests"
    path = "/repositories/{workspace_slug}/{repo_slug}/pullrequests"
    primary_keys = ("repo_uuid", "id")
    replication_key = "updated_on"
    parent_stream_type = RepositoriesStream
    is_sorted = True
    # Sorted by Bitbucket (`sort=updated_on`), but a PR edited during the scan can come
    # back later with a newer date and an older one can follow it: the bookmark may then
    # step back (re-reading a little next time) instead of failing the sync.
    check_sorted = False
    page_size = 50
    tolerated_errors: t.ClassVar[dict[int, str]] = {404: _GONE}
    static_params: t.ClassVar[dict[str, str | list[str]]] = {
        "state": ALL_STATES,
        "sort": "updated_on",
        "fields": "+values.reviewers,+values.participants",
    }
    ids_key = "pull_request_ids"

    def get_url_params(self, context: Context | None, next_page_token: str | None) -> t.Any:
        params = super().get_url_params(context, next_page_token)
        since = self.services.bookmarks.since(self.name, context or {})
        if since:
            params["q"] = f"updated_on >= {since}"
        return params

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        assert context is not None
        marks = self.services.bookmarks
        state = self.get_context_state(context)
        mark = marks.start(self.name, context)
        since = marks.children_since(self.name, context)
        bookmarks.begin_pull_requests(state, since)
        seen = marks.recent_keys(self.name, context)
        window = marks.overlap
        recent: list[tuple[datetime, str]] = []

        def fresh() -> Iterable[dict[str, t.Any]]:
            for row in self.request_records(context):
                updated = row.get("updated_on")
                stamp = parse_timestamp(updated) if updated else None
                key = f"{row.get('id')}@{updated}"
                if mark is not None and stamp is not None and stamp <= mark and key in seen:
                    continue
                if stamp is not None:
                    recent.append((stamp, key))
                    while recent and recent[0][0] < recent[-1][0] - window:
                        recent.pop(0)
                yield row

        yield from self.in_batches(fresh(), context, since=since)
        bookmarks.end_pull_requests(state, [key for _, key in recent])


class PullRequestChildStream(BatchChild):
    """Base of the PR children: one partition per batch of emitted PRs of a repository
    (so children of unchanged PRs cost no request); state per repository.

    What to read comes from the context's ``since``, the PR bookmark this run started
    from; their own bookmarks (per repository, promoted by the SDK at the end of the
    sync) only tell a target how far each child got.
    """

    parent_stream_type = PullRequestsStream
    context_keys = ("workspace_slug", "repo_slug", "repo_uuid", "pull_request_id")
    batch_key = "pull_request_id"
    ids_key = PullRequestsStream.ids_key
    tolerated_errors: t.ClassVar[dict[int, str]] = {404: _GONE}
    replication_key: str | None = None

    @staticmethod
    def since(context: Context | None) -> datetime | None:
        value = (context or {}).get("since")
        return parse_timestamp(value) if value else None


class UpdatedSincePullRequestChild(PullRequestChildStream):
    """A PR child where Bitbucket honours `q` on updated_on: ask only for what changed
    after the PR bookmark this run started from (the context's ``since``)."""

    replication_key = "updated_on"
    is_sorted = False

    def get_url_params(self, context: Context | None, next_page_token: str | None) -> t.Any:
        params = super().get_url_params(context, next_page_token)
        since = (context or {}).get("since")
        if since:
            params["q"] = f"updated_on > {since}"
        return params


class PullRequestCommentsStream(UpdatedSincePullRequestChild):
    """PR comments: GET .../pullrequests/{id}/comments, filtered with `q` on updated_on.

    Posting or editing a comment bumps the PR's updated_on (notes §8.12), so comments of
    unchanged PRs need no request at all.
    """

    name = "pull_request_comments"
    path = "/repositories/{workspace_slug}/{repo_slug}/pullrequests/{pull_request_id}/comments"
    primary_keys = ("repo_uuid", "pull_request_id", "id")
    static_params: t.ClassVar[dict[str, str | list[str]]] = {"sort": "id"}


class PullRequestActivityStream(RepoStream):
    """PR activity of a repository: GET /repositories/{w}/{r}/pullrequests/activity.

    One newest-first walk covers every PR of the repository (notes §7, PostHog PR
    #99812): a full sync costs one request per 50 entries instead of one per PR, and
    an incremental sync reads until a whole page is older than the bookmark. The
    endpoint ignores `q` and `sort` and rejects `pagelen` above 50 (notes §2.3, §3.3).
    Entries have no id: ``activity_id`` hashes the PR, the kind and the entry's
    identifying fields, so it is stable across runs.
    """

    name = "pull_request_activity"
    path = "/repositories/{workspace_slug}/{repo_slug}/pullrequests/activity"
    primary_keys = ("repo_uuid", "pull_request_id", "activity_id")
    replication_key = "activity_date"
    parent_stream_type = RepositoriesStream
    is_sorted = False
    page_size = 50
    tolerated_errors: t.ClassVar[dict[int, str]] = {404: _GONE}
    # Every entry belongs to a pull request, and a new one shows in the PR list (its
    # created_on and updated_on are new): a repository without any has no activity.
    records_only_with = "pull_requests"

    def paginator_for(self, context: Context | None) -> BitbucketPaginator:
        mark = self.services.bookmarks.start(self.name, context or {})
        return BitbucketPaginator(
            self.services.settings.origin, stop_after_page=newest_first_stop(_activity_date, mark)
        )

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        mark = self.services.bookmarks.start(self.name, context or {})
        return (r for r in self.request_records(context) if newer_than(_activity_date(r), mark))

    def replication_value(self, row: dict[str, t.Any]) -> t.Any:
        return _activity_date(row)

    def transform(self, row: dict[str, t.Any], context: Context | None) -> dict[str, t.Any]:
        kind = next(
            (k for k in ("update", "approval", "changes_requested", "comment") if k in row),
            "other",
        )
        pull_request = as_object(row.get("pull_request"))
        row["pull_request_id"] = pull_request.get("id")
        row["activity_kind"] = kind
        row["activity_date"] = _activity_date(row)
        body = row.get(kind) if kind != "other" else row
        # A comment entry is identified by the comment (edits update the same row);
        # the other kinds are events, identified by who did what when.
        identity = [str((context or {}).get("repo_uuid")), str(row["pull_request_id"]), kind]
        if kind == "comment":
            identity.append(str(as_object(body).get("id")))
        else:
            identity += [str(row["activity_date"]), _actor(body)]
        digest = hashlib.sha1("|".join(identity).encode(), usedforsecurity=False)
        row["activity_id"] = digest.hexdigest()
        return row


def _activity_date(row: dict[str, t.Any]) -> str | None:
    for kind, field in (("update", "date"), ("approval", "date"), ("changes_requested", "date")):
        if kind in row and isinstance(row[kind], dict):
            return t.cast("str | None", row[kind].get(field))
    comment = row.get("comment")
    if isinstance(comment, dict):
        return t.cast("str | None", comment.get("updated_on") or comment.get("created_on"))
    return None


def _actor(body: t.Any) -> str:
    if not isinstance(body, dict):
        return ""
    who = body.get("user") or body.get("author") or {}
    return str(who.get("uuid") if isinstance(who, dict) else "")


class PullRequestCommitsStream(PullRequestChildStream):
    """Commits of a PR: GET .../pullrequests/{id}/commits (iterator pagination).

    Empty when the source branch was deleted (notes §8.18); 404 if the source fork was
    deleted, which is skipped with a warning.
    """

    name = "pull_request_commits"
    path = "/repositories/{workspace_slug}/{repo_slug}/pullrequests/{pull_request_id}/commits"
    primary_keys = ("repo_uuid", "pull_request_id", "hash")
    replication_key = "date"
    is_sorted = False

    def paginator_for(self, context: Context | None) -> BitbucketPaginator:
        return BitbucketPaginator(
            self.services.settings.origin,
            stop_after_page=newest_first_stop("date", self.since(context)),
        )

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        since = self.since(context)
        return (r for r in self.rows_of_each_parent(context) if newer_than(r.get("date"), since))


class PullRequestTasksStream(UpdatedSincePullRequestChild):
    """PR tasks: GET .../pullrequests/{id}/tasks, filtered with `q` on updated_on."""

    name = "pull_request_tasks"
    path = "/repositories/{workspace_slug}/{repo_slug}/pullrequests/{pull_request_id}/tasks"
    primary_keys = ("repo_uuid", "pull_request_id", "id")


class PullRequestDiffstatsStream(PullRequestChildStream):
    """Files changed by a PR: GET .../pullrequests/{id}/diffstat (302 to /diffstat/{spec}).

    Refreshed whole whenever the PR changes. Costs one request per changed PR, so it is
    not selected by default. PRs without a computable diff answer 400 or 555 (notes
    §8.10); those are skipped per PR.
    """

    name = "pull_request_diffstats"
    path = "/repositories/{workspace_slug}/{repo_slug}/pullrequests/{pull_request_id}/diffstat"
    primary_keys = ("repo_uuid", "pull_request_id", "file_key")
    selected_by_default = False
    tolerated_errors: t.ClassVar[dict[int, str]] = {
        404: _GONE,
        400: "no computable diff (branches share no history)",
        555: "Bitbucket could not compute the diff",
    }

    def transform(self, row: dict[str, t.Any], context: Context | None) -> dict[str, t.Any]:
        old = as_object(row.get("old")).get("path")
        new = as_object(row.get("new")).get("path")
        row["file_key"] = json.dumps([old, new], ensure_ascii=False)
        return row
