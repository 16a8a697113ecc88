"""Pipelines and pipeline steps."""

from __future__ import annotations

import typing as t
from datetime import datetime

from singer_sdk.helpers.types import Context

from tap_bitbucket.client import (
    BitbucketPaginator,
    RepoStream,
    format_timestamp,
    parse_timestamp,
    response_json,
)
from tap_bitbucket.streams.base import IncrementalMixin
from tap_bitbucket.streams.batches import BatchChild, BatchedParent
from tap_bitbucket.streams.repository import RepositoriesStream

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    import requests

_NO_PIPELINES = "Pipelines is disabled for this repository, or the repository no longer exists"
_REDACTED = "<redacted>"
# A pipeline that had not finished at the last sync is re-read until it finishes.
RUNNING = "running"


def is_finished(pipeline: dict[str, t.Any]) -> bool:
    state = pipeline.get("state") or {}
    return str(state.get("name", "")).upper() == "COMPLETED"


class PipelinesStream(IncrementalMixin, BatchedParent, RepoStream):
    """Pipelines: GET /repositories/{w}/{r}/pipelines, newest-first scan to the bookmark.

    * Bitbucket ignores `q` here; `sort=-created_on` works, but the `next` link drops
      `sort` (notes §2.4), so the paginator re-adds it to each `next`.
    * ``created_on`` never changes, so it is the bookmark. Pipelines still running at
      the last sync are remembered (uuid and created_on, per repository) and emitted
      again once they complete; the scan reaches back to the oldest of them.
    * Steps run per batch of emitted pipelines; the bookmark moves only at the end.
    """

    name = "pipelines"
    path = "/repositories/{workspace_slug}/{repo_slug}/pipelines"
    primary_keys = ("uuid",)
    replication_key = "created_on"
    parent_stream_type = RepositoriesStream
    is_sorted = False
    static_params: t.ClassVar[dict[str, str | list[str]]] = {"sort": "-created_on"}
    tolerated_errors: t.ClassVar[dict[int, str]] = {404: _NO_PIPELINES}
    batch_id_field = "uuid"

    def _floor(self, context: Context | None) -> datetime | None:
        mark = self.bookmark(context)
        running = self.get_context_state(context).get(RUNNING) or {}
        stamps = [parse_timestamp(v) for v in running.values()]
        if mark is None:
            return None
        return min([mark, *stamps])

    def get_new_paginator(self) -> BitbucketPaginator:
        floor = self._floor(dict(self.context) if self.context else None)

        def past_floor(response: requests.Response) -> bool:
            values = response_json(response).get("values") or []
            return floor is not None and any(
                v.get("created_on") and parse_timestamp(v["created_on"]) <= floor for v in values
            )

        return BitbucketPaginator(
            self.runtime.origin, stop_after_page=past_floor, restore_params={"sort": "-created_on"}
        )

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        assert context is not None
        state = self.get_context_state(context)
        mark = self.bookmark(context)
        running: dict[str, str] = dict(state.get(RUNNING) or {})
        still_running: dict[str, str] = {}
        floor = self._floor(context)
        self.start_batches()
        for row in self.request_records(context):
            created = row.get("created_on")
            if not created:
                continue
            stamp = parse_timestamp(created)
            uuid = str(row.get("uuid"))
            if floor is not None and stamp < floor:
                break
            is_new = mark is None or stamp > mark
            finished_now = uuid in running and is_finished(row)
            if not is_finished(row):
                still_running[uuid] = format_timestamp(stamp)
            if is_new or finished_now:
                yield row
                if self.batch_full():
                    self.run_batch(context)
        self.run_batch(context)
        # Running pipelines older than the scan floor cannot exist: the floor covers them.
        state[RUNNING] = still_running
        self.promote_partition(context)


class PipelineStepsStream(BatchChild):
    """Steps of each emitted pipeline: GET .../pipelines/{uuid}/steps (one partition
    per batch of pipelines).

    Steps carry Docker registry credentials in ``image`` for private images (notes
    §8.6); they are redacted before the record leaves the tap.
    """

    name = "pipeline_steps"
    path = "/repositories/{workspace_slug}/{repo_slug}/pipelines/{pipeline_uuid}/steps"
    primary_keys = ("uuid",)
    replication_key = None
    parent_stream_type = PipelinesStream
    state_partitioning_keys: t.ClassVar[list[str] | None] = ["repo_uuid"]
    context_keys = ("workspace_slug", "repo_slug", "repo_uuid", "pipeline_uuid")
    batch_key = "pipeline_uuid"
    tolerated_errors: t.ClassVar[dict[int, str]] = {404: _NO_PIPELINES}

    def transform(self, row: dict[str, t.Any], context: Context | None) -> dict[str, t.Any]:
        image = row.get("image")
        if isinstance(image, dict):
            for secret in ("password", "username", "email"):
                if image.get(secret):
                    image[secret] = _REDACTED
        return row
