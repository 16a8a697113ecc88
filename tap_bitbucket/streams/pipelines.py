"""Pipelines and pipeline steps."""

from __future__ import annotations

import typing as t
from datetime import datetime

from singer_sdk.helpers.types import Context

from tap_bitbucket.pages import BitbucketPaginator, response_json
from tap_bitbucket.shapes import as_object
from tap_bitbucket.streams import bookmarks
from tap_bitbucket.streams.batches import BatchChild, BatchedParent
from tap_bitbucket.streams.repository import NO_PIPELINES, RepositoriesStream, RepoStream
from tap_bitbucket.timestamps import format_timestamp, parse_timestamp

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    import requests

_REDACTED = "<redacted>"


def is_finished(pipeline: dict[str, t.Any]) -> bool:
    state = as_object(pipeline.get("state"))
    return str(state.get("name", "")).upper() == "COMPLETED"


class PipelinesStream(BatchedParent, RepoStream):
    """Pipelines: GET /repositories/{w}/{r}/pipelines, newest-first scan to the bookmark.

    * Bitbucket ignores `q` here; `sort=-created_on` works, but the `next` link drops
      `sort` (notes §2.4), so the paginator re-adds it to each `next`.
    * ``created_on`` never changes, so it is the bookmark. Pipelines still running at
      the last sync are remembered (uuid and created_on, per repository) and emitted
      again once they complete; the scan reaches back to the oldest of them.
    * Steps run per batch of emitted pipelines (streams/batches.py).
    """

    name = "pipelines"
    path = "/repositories/{workspace_slug}/{repo_slug}/pipelines"
    primary_keys = ("uuid",)
    replication_key = "created_on"
    parent_stream_type = RepositoriesStream
    # Newest first: the bookmark can only move once the whole scan is written (the SDK
    # keeps it in progress markers until the repository's partition ends).
    is_sorted = False
    static_params: t.ClassVar[dict[str, str | list[str]]] = {"sort": "-created_on"}
    tolerated_errors: t.ClassVar[dict[int, str]] = {404: NO_PIPELINES}
    batch_id_field = "uuid"
    ids_key = "pipeline_uuids"

    def _floor(self, context: Context | None) -> datetime | None:
        marks = self.services.bookmarks
        mark = marks.start(self.name, context or {})
        stamps = [parse_timestamp(v) for v in marks.running(self.name, context or {}).values()]
        return None if mark is None else min([mark, *stamps])

    def paginator_for(self, context: Context | None) -> BitbucketPaginator:
        floor = self._floor(context)

        def past_floor(response: requests.Response) -> bool:
            values = response_json(response).get("values") or []
            return floor is not None and any(
                v.get("created_on") and parse_timestamp(v["created_on"]) <= floor for v in values
            )

        return BitbucketPaginator(
            self.services.settings.origin,
            stop_after_page=past_floor,
            restore_params={"sort": "-created_on"},
        )

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        assert context is not None
        mark = self.services.bookmarks.start(self.name, context)
        running = self.services.bookmarks.running(self.name, context)
        still_running: dict[str, str] = {}
        floor = self._floor(context)
        newest = [mark] if mark else []

        def wanted() -> Iterable[dict[str, t.Any]]:
            for row in self.request_records(context):
                created = row.get("created_on")
                if not created:
                    yield row  # undated: cannot be shown to be old (timestamps.newer_than)
                    continue
                stamp = parse_timestamp(created)
                newest.append(stamp)
                uuid = str(row.get("uuid"))
                if floor is not None and stamp < floor:
                    break
                if not is_finished(row):
                    still_running[uuid] = format_timestamp(stamp)
                if mark is None or stamp > mark or (uuid in running and is_finished(row)):
                    yield row

        yield from self.in_batches(wanted(), context)
        # Running pipelines older than the scan floor cannot exist: the floor covers them.
        bookmarks.end_pipelines(
            self.get_context_state(context), still_running, max(newest, default=None)
        )


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
    context_keys = ("workspace_slug", "repo_slug", "repo_uuid", "pipeline_uuid")
    batch_key = "pipeline_uuid"
    ids_key = PipelinesStream.ids_key
    tolerated_errors: t.ClassVar[dict[int, str]] = {404: NO_PIPELINES}

    def transform(self, row: dict[str, t.Any], context: Context | None) -> dict[str, t.Any]:
        image = row.get("image")
        if isinstance(image, dict):
            for secret in ("password", "username", "email"):
                if image.get(secret):
                    image[secret] = _REDACTED
        return row
