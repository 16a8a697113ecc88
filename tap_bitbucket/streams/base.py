"""Bookmark helpers shared by the incremental streams."""

from __future__ import annotations

import typing as t
from datetime import datetime

from singer_sdk.helpers.types import Context

from tap_bitbucket.client import BitbucketStream, format_timestamp, overlap, parse_timestamp

if t.TYPE_CHECKING:
    from collections.abc import Iterable


class IncrementalMixin(BitbucketStream):
    """Per-partition bookmarks that the tap promotes itself.

    The SDK promotes progress markers of child-stream partitions only at the very end
    of a sync, and not at all for some partition layouts; a killed sync would then
    restart those partitions from scratch. Promoting each partition's bookmark as soon
    as its last record has been written keeps resumes close to where the kill happened,
    and guarantees that the final STATE holds no ``progress_markers``.
    """

    def bookmark(self, context: Context | None) -> datetime | None:
        """The bookmark this run started from (or start_date), as aware UTC."""
        value = self.get_starting_replication_key_value(context)
        if value is None:
            value = self.config.get("start_date")
        return parse_timestamp(str(value)) if value else None

    def q_since(self, context: Context | None) -> str | None:
        """Server-side filter value: the bookmark minus the look-back window."""
        mark = self.bookmark(context)
        return format_timestamp(mark - overlap(self.config)) if mark else None

    def promote_partition(self, context: Context | None, *, final: bool = True) -> None:
        """Turn the partition's progress markers into its bookmark.

        ``final=False`` promotes in the middle of a partition (records so far are all
        written): the starting value and the signpost stay for the rest of it.
        """
        state = self.get_context_state(context)
        markers = state.pop("progress_markers", None) or {}
        if final:
            state.pop("starting_replication_value", None)
            signpost = state.pop("replication_key_signpost", None)
        else:
            signpost = state.get("replication_key_signpost")
        if "replication_key_value" in markers:
            new = markers["replication_key_value"]
            old = state.get("replication_key_value")
            if signpost and new > signpost:
                new = signpost
            state["replication_key"] = markers.get("replication_key", self.replication_key)
            state["replication_key_value"] = max(new, old) if old else new

    def records_then_promote(
        self, records: Iterable[dict[str, t.Any]], context: Context | None
    ) -> Iterable[dict[str, t.Any]]:
        """Yield records; once the caller has written the last one, promote the bookmark."""
        yield from records
        self.promote_partition(context)
