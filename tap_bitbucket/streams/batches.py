"""Children that run once per batch of parent records, not once per parent record.

PR comments, commits and tasks need one request per changed PR, and pipeline steps one
per new pipeline: those requests cannot be saved. What can be saved is the SDK's work
around each child partition: an INFO line, three METRIC lines and the state
bookkeeping, which cost more CPU than the request itself. So the parent reads up to
``CHILD_BATCH`` records ahead, and the first of them that the stream maps keep carries
one child context naming the whole batch (``{ids_key: (...)}``). The SDK then syncs
each child once for the batch, before that batch's parents are written: a STATE that
covers a parent always covers its children, so a killed sync resumes within one batch.
The children's requests are handed to the prefetch pool when the batch is formed.
"""

from __future__ import annotations

import typing as t

from singer_sdk import metrics
from singer_sdk.helpers.types import Context

from tap_bitbucket.client import BitbucketStream
from tap_bitbucket.streams.repository import REPO_KEYS, RepoStream

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

CHILD_BATCH = 50


class BatchedParent(BitbucketStream):
    """A repository-level stream whose children run per batch of emitted records."""

    #: The record field that identifies a parent in the children's path.
    batch_id_field: t.ClassVar[str] = "id"
    #: The child-context key that lists the batch's parent ids.
    ids_key: t.ClassVar[str] = "ids"

    _carrier: tuple[t.Any, Context] | None = None

    def in_batches(
        self, rows: Iterable[dict[str, t.Any]], context: Context, **extra: t.Any
    ) -> Iterator[dict[str, t.Any]]:
        """Yield ``rows``, arranging one child context per batch of them."""
        batch: list[dict[str, t.Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= CHILD_BATCH:
                yield from self._release(batch, context, extra)
                batch = []
        yield from self._release(batch, context, extra)

    def _release(
        self, batch: list[dict[str, t.Any]], context: Context, extra: dict[str, t.Any]
    ) -> Iterator[dict[str, t.Any]]:
        kept = [r[self.batch_id_field] for r in batch if self.passes_stream_maps(r, context)]
        if kept and self.selected_children():
            child_context = {
                **{k: context[k] for k in REPO_KEYS},
                **extra,
                self.ids_key: tuple(kept),
            }
            self._carrier = (kept[0], child_context)
            for child in self.selected_children():
                if isinstance(child, BatchChild):
                    child.prefetch_batch(child_context)
        yield from batch

    def generate_child_contexts(
        self, record: dict[str, t.Any], context: Context | None
    ) -> Iterable[Context | None]:
        carrier = self._carrier
        if carrier is not None and record.get(self.batch_id_field) == carrier[0]:
            self._carrier = None
            # Every record before this one is written: offer that state now, so the
            # resume point moves with each batch and not only at the repository's end.
            self.services.write_state()
            yield carrier[1]


class BatchChild(RepoStream):
    """A child stream of a :class:`BatchedParent`: one partition per batch."""

    #: The context key (and record field) naming the parent in ``path``.
    batch_key: t.ClassVar[str]
    #: The parent's context key listing the batch (its ``ids_key``).
    ids_key: t.ClassVar[str]
    state_partitioning_keys: t.ClassVar[list[str] | None] = ["repo_uuid"]

    _batch_requests: BatchRequestCounter | None = None

    def parent_contexts(self, context: Context | None) -> list[Context]:
        """One request context per parent of the batch."""
        base = {k: v for k, v in (context or {}).items() if k != self.ids_key}
        return [{**base, self.batch_key: pid} for pid in (context or {}).get(self.ids_key, ())]

    def prefetch_batch(self, context: Context) -> None:
        for parent_context in self.parent_contexts(context):
            self.prefetch(parent_context)

    def get_http_request_counter(self) -> metrics.Counter:
        return self._batch_requests or super().get_http_request_counter()

    def rows_of_each_parent(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """Rows of every parent of the batch, each tagged with its parent's id."""
        self._batch_requests = BatchRequestCounter(self.name, self.path, context)
        try:
            for parent_context in self.parent_contexts(context):
                for row in self.request_records(parent_context):
                    row[self.batch_key] = parent_context[self.batch_key]
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
