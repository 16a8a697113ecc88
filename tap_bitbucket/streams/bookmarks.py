"""The state's keys: the only code that reads or writes them by name.

The SDK owns ``replication_key_value`` and its progress markers; the tap adds three
keys of its own to a repository's partition:

* ``children_since`` (pull requests): the bookmark the interrupted run started from,
  kept until the repository is done, so a resumed run still reads the children of PRs
  it did not reach (they may have changed before the newer bookmark);
* ``recent_keys`` (pull requests): ``id@updated_on`` of PRs emitted inside the
  look-back window, re-read on purpose but not emitted twice;
* ``running`` (pipelines): uuid → created_on of pipelines not finished at the last
  sync, re-emitted once they finish;
* ``high_water`` (pipelines): the newest created_on the scan has seen. Re-emitting a
  pipeline that finished moves the SDK's bookmark back to its old created_on (the SDK
  promotes the partition's progress markers as they are), so the start of the next
  scan is the later of the two.

Three more serve scheduled runs (issue 13):

* ``refreshed_at`` (slow-changing settings tables): when the partition was last read
  whole; it is read again once per ``admin_refresh_hours`` (see :meth:`Bookmarks.refresh_due`);
* ``repo_updated_on`` (commits, branches, tags): the repository's ``updated_on`` when
  they were last read; unchanged means no git activity, so nothing to read (notes §8.11);
* ``resume_at`` (workspaces and repositories): where a capped run stopped, so the next
  run goes on from there (rotation: no repository starves).

:class:`Bookmarks` answers "where does this partition start?" for the main thread and
for prefetch planning alike. It reads a snapshot of the state taken before any
partition of this run moved (each repository-level partition is visited once per run),
so a plan made for the next repository asks for exactly what its sync will ask for.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import threading
import typing as t
from datetime import datetime, timedelta, timezone

from tap_bitbucket.timestamps import format_timestamp, parse_timestamp

if t.TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tap_bitbucket.settings import Settings

CHILDREN_SINCE = "children_since"
RECENT_KEYS = "recent_keys"
RUNNING = "running"
HIGH_WATER = "high_water"
REFRESHED_AT = "refreshed_at"
REPO_UPDATED_ON = "repo_updated_on"
RESUME_AT = "resume_at"


def partition_context(
    context: Mapping[str, t.Any] | None, partitioning_keys: Sequence[str] | None
) -> dict[str, t.Any]:
    """The state partition a context belongs to (the SDK's rule for partitioning keys)."""
    if not context:
        return {}
    if partitioning_keys is None:
        return dict(context)
    return {k: context[k] for k in partitioning_keys if k in context}


def _key(stream: str, context: Mapping[str, t.Any]) -> str:
    return json.dumps([stream, context], sort_keys=True, default=str)


class Bookmarks:
    """Starting points of the run's partitions; see the module docstring."""

    def __init__(
        self, state: Mapping[str, t.Any], settings: Settings, now: datetime | None = None
    ) -> None:
        self._state = state
        self.start_date = settings.start_date
        self.overlap = timedelta(seconds=settings.lookback_seconds)
        self.refresh_seconds = settings.admin_refresh_hours * 3600.0
        #: The run's clock for refresh decisions and stamps: one value for the whole run.
        self.now = now or datetime.now(timezone.utc)
        self._lock = threading.Lock()
        self._index: dict[str, dict[str, t.Any]] | None = None
        self._read_empty: set[str] = set()

    def _partition(self, stream: str, context: Mapping[str, t.Any]) -> dict[str, t.Any]:
        with self._lock:
            if self._index is None:
                self._index = _index(self._state)
            return self._index.get(_key(stream, context), {})

    def start(self, stream: str, context: Mapping[str, t.Any]) -> datetime | None:
        """The partition's bookmark when the run began, or start_date; the later one."""
        partition = self._partition(stream, context)
        marks = [partition.get("replication_key_value"), partition.get(HIGH_WATER)]
        mark = max((parse_timestamp(str(v)) for v in marks if v), default=None)
        if self.start_date is not None and (mark is None or self.start_date > mark):
            return self.start_date
        return mark

    def since(self, stream: str, context: Mapping[str, t.Any]) -> str | None:
        """The server-side filter value: the starting bookmark minus the look-back."""
        mark = self.start(stream, context)
        return format_timestamp(mark - self.overlap) if mark else None

    def running(self, stream: str, context: Mapping[str, t.Any]) -> dict[str, str]:
        """Pipelines not finished at the last sync: uuid → created_on."""
        found = self._partition(stream, context).get(RUNNING)
        return dict(found) if isinstance(found, dict) else {}

    def recent_keys(self, stream: str, context: Mapping[str, t.Any]) -> set[str]:
        found = self._partition(stream, context).get(RECENT_KEYS)
        return {str(k) for k in found} if isinstance(found, list) else set()

    def known(self, stream: str, context: Mapping[str, t.Any]) -> bool:
        """Whether the state holds this partition (an earlier run read it)."""
        return bool(self._partition(stream, context))

    def never_had_records(self, stream: str, context: Mapping[str, t.Any]) -> bool:
        """At the run's start: an unfiltered earlier read of the partition found nothing."""
        partition = self._partition(stream, context)
        return (
            self.start_date is None
            and bool(partition)
            and not partition.get("replication_key_value")
            and not partition.get(HIGH_WATER)
        )

    def note_read(self, stream: str, context: Mapping[str, t.Any], records: int) -> None:
        """A whole read of the partition this run; an empty one that was not filtered
        (no bookmark, no start_date) proves the partition holds nothing right now."""
        if records == 0 and self.start(stream, context) is None:
            with self._lock:
                self._read_empty.add(_key(stream, context))

    def read_empty(self, stream: str, context: Mapping[str, t.Any]) -> bool:
        """Whether this run read the whole partition and found nothing (note_read)."""
        with self._lock:
            return _key(stream, context) in self._read_empty

    def refresh_due(self, stream: str, context: Mapping[str, t.Any]) -> bool:
        """Whether a slow-changing partition is read this run.

        Each partition has its own phase (a hash of its stream and context) within the
        refresh interval, and is due when one of its phase boundaries passed since its
        last read. So no partition is older than one interval, and after a full sync
        the partitions fall due evenly over the next interval instead of all at once.
        """
        stamp = self._partition(stream, context).get(REFRESHED_AT)
        if self.refresh_seconds <= 0 or not isinstance(stamp, str):
            return True
        interval = self.refresh_seconds
        digest = hashlib.sha1(_key(stream, context).encode(), usedforsecurity=False)
        phase = int(digest.hexdigest()[:8], 16) / 2**32 * interval

        def slot(moment: datetime) -> int:
            return math.floor((moment.timestamp() - phase) / interval)

        return slot(self.now) > slot(parse_timestamp(stamp))

    def git_unchanged(
        self, stream: str, context: Mapping[str, t.Any], repo_updated_on: str | None
    ) -> bool:
        """Whether the repository's ``updated_on`` is the one of the last full read."""
        seen = self._partition(stream, context).get(REPO_UPDATED_ON)
        return bool(seen and repo_updated_on and seen == repo_updated_on)

    def resume_at(self, stream: str, context: Mapping[str, t.Any]) -> str | None:
        found = self._partition(stream, context).get(RESUME_AT)
        return str(found) if found else None

    # The writers and the partition rule, for the base stream (which cannot import
    # this package without a cycle: streams import the base stream).
    partition_context = staticmethod(partition_context)

    @staticmethod
    def stamp_read(
        state: dict[str, t.Any], *, refreshed_at: datetime | None, repo_updated_on: str | None
    ) -> None:
        stamp_read(state, refreshed_at=refreshed_at, repo_updated_on=repo_updated_on)

    def children_since(self, stream: str, context: Mapping[str, t.Any]) -> str | None:
        """The ``since`` of an interrupted run's children, else this run's bookmark."""
        partition = self._partition(stream, context)
        if CHILDREN_SINCE in partition:
            value = partition[CHILDREN_SINCE]
            return str(value) if value else None
        mark = self.start(stream, context)
        return mark.isoformat() if mark else None


def _index(state: Mapping[str, t.Any]) -> dict[str, dict[str, t.Any]]:
    index: dict[str, dict[str, t.Any]] = {}
    bookmarks = state.get("bookmarks") if isinstance(state, dict) else None
    for stream, stream_state in (bookmarks or {}).items():
        if not isinstance(stream_state, dict):
            continue
        index[_key(stream, {})] = copy.deepcopy(
            {k: v for k, v in stream_state.items() if k != "partitions"}
        )
        for partition in stream_state.get("partitions") or []:
            if isinstance(partition, dict) and isinstance(partition.get("context"), dict):
                index[_key(stream, partition["context"])] = copy.deepcopy(partition)
    return index


# -- writing the tap's keys into the live partition state (the SDK's public dict) -------


def begin_pull_requests(state: dict[str, t.Any], children_since: str | None) -> None:
    state.setdefault(CHILDREN_SINCE, children_since)


def end_pull_requests(state: dict[str, t.Any], recent: list[str]) -> None:
    state.pop(CHILDREN_SINCE, None)
    if recent:
        state[RECENT_KEYS] = recent


def end_pipelines(
    state: dict[str, t.Any], running: dict[str, str], high_water: datetime | None
) -> None:
    state[RUNNING] = running
    if high_water is not None:
        state[HIGH_WATER] = format_timestamp(high_water)


def stamp_read(
    state: dict[str, t.Any], *, refreshed_at: datetime | None, repo_updated_on: str | None
) -> None:
    """After a whole read of a partition: when, and at which repository ``updated_on``."""
    if refreshed_at is not None:
        state[REFRESHED_AT] = format_timestamp(refreshed_at)
    if repo_updated_on:
        state[REPO_UPDATED_ON] = repo_updated_on


def set_resume_at(state: dict[str, t.Any], key: str | None) -> None:
    if key:
        state[RESUME_AT] = key
    else:
        state.pop(RESUME_AT, None)
