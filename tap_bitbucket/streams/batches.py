"""Children that run once per batch of parent records, not once per parent record.

PR comments, commits and tasks need one request per changed PR, and pipeline steps one
per new pipeline: those requests cannot be saved. What can be saved is the SDK's work
around each child partition: an INFO line, three METRIC lines and the state
bookkeeping, which cost more CPU than the request itself. So the parent collects the
ids of the records it emits, and after every ``CHILD_BATCH`` of them it runs each child
stream once, as one partition (context: the repository) covering the whole batch.
One page of parents per batch keeps a killed sync resuming near the kill.
"""

from __future__ import annotations

import typing as t

from singer_sdk import metrics
from singer_sdk.helpers.types import Context

from tap_bitbucket.client import BitbucketStream, RepoStream

if t.TYPE_CHECKING:
    from collections.abc import Iterable

CHILD_BATCH = 50


class BatchedParent(BitbucketStream):
    """A repository-level stream whose children run per batch of emitted records."""

    #: The record field that identifies a parent in the children's path.
    batch_id_field: t.ClassVar[str] = "id"

    _batch: list[t.Any]

    def start_batches(self) -> None:
        self._batch = []

    def generate_child_contexts(
        self, record: dict[str, t.Any], context: Context | None
    ) -> Iterable[Context | None]:
        # No partition per record: the children run per batch (run_batch), for the
        # records collected here (those the stream maps do not filter out).
        if self.stream_maps[0].get_filter_result(record):
            self._batch.append(record[self.batch_id_field])
        return ()

    def batch_full(self) -> bool:
        return len(self._batch) >= CHILD_BATCH

    def run_batch(self, context: Context, **extra: t.Any) -> None:
        """Run every selected child for the parents collected since the last batch."""
        if self._batch:
            self.sync_children_of(
                {
                    "workspace_slug": context["workspace_slug"],
                    "repo_slug": context["repo_slug"],
                    "repo_uuid": context["repo_uuid"],
                    **extra,
                }
            )
            self._batch = []

    def batch_ids(self) -> list[t.Any]:
        """Ids of the parents of the batch being run, in emitted order."""
        return self._batch


class BatchChild(RepoStream):
    """A child stream of a :class:`BatchedParent`: one partition per batch."""

    #: The context key (and record field) naming the parent in ``path``.
    batch_key: t.ClassVar[str]

    _batch_requests: BatchRequestCounter | None = None

    def get_http_request_counter(self) -> metrics.Counter:
        return self._batch_requests or super().get_http_request_counter()

    def rows_of_each_parent(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """Rows of every parent of the batch, each tagged with its parent's id."""
        parent_name = self.parent_stream_type.name  # type: ignore[misc,union-attr]
        parent = t.cast("BatchedParent", self._tap.streams[parent_name])
        self._batch_requests = BatchRequestCounter(self.name, self.path, context)
        try:
            for parent_id in parent.batch_ids():
                for row in self.request_records({**(context or {}), self.batch_key: parent_id}):
                    row[self.batch_key] = parent_id
                    yield row
        finally:
            counter, self._batch_requests = self._batch_requests, None
            counter.exit()

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        return self.rows_of_each_parent(context)


class BatchRequestCounter(metrics.Counter):
    """One ``http_request_count`` METRIC line for a whole batch.

    The SDK's request_records opens the stream's request counter once per call, that
    is once per parent here, and every close logs a line. This counter ignores those
    per-call opens, closes and contexts; its owner closes it once per batch.
    """

    def __init__(self, stream: str, endpoint: str, context: Context | None) -> None:
        super().__init__(
            metrics.Metric.HTTP_REQUEST_COUNT,
            {metrics.Tag.STREAM: stream, metrics.Tag.ENDPOINT: endpoint},
        )
        super().with_context(context)

    def __exit__(self, *exc: object) -> None:
        return None

    def with_context(self, value: Context | None) -> None:
        return None
