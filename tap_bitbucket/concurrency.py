"""Repositories synced concurrently on a bounded pool, written by one thread.

Each selected child stream of a repository (with its own children) is one unit of work,
run in a worker thread on a private copy of the tap (its own stream objects, so no SDK
stream is shared between threads), with a writer that buffers messages instead of
printing them. The main thread takes the results in repository order, and in stream
order within a repository: it writes the buffered messages, merges the state
partitions, and once the repository is complete writes a STATE message. So output
lines are never interleaved, and STATE never runs ahead of the records already written.

Every worker shares the tap's one :class:`~tap_bitbucket.runtime.Runtime`: the same
authenticator (one OAuth token), the same pacer, the same request counters.
"""

from __future__ import annotations

import copy
import logging
import threading
import typing as t
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from singer_sdk.singerlib import Catalog, StateMessage
from singer_sdk.singerlib.encoding.base import GenericSingerWriter

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from singer_sdk.helpers.types import Context
    from singer_sdk.streams import Stream

    from tap_bitbucket.client import BitbucketStream
    from tap_bitbucket.tap import TapBitbucket


class BufferWriter(GenericSingerWriter[t.Any, t.Any]):
    """Collects messages in memory; the main thread writes them later, in order."""

    def __init__(self) -> None:
        self.messages: list[t.Any] = []

    def serialize_message(self, message: t.Any) -> t.Any:
        return message

    def write_message(self, message: t.Any) -> None:
        self.messages.append(message)


class RepoResult(t.NamedTuple):
    messages: list[t.Any]
    partitions: dict[str, list[dict[str, t.Any]]]


class RepoFanOut:
    """Runs the child streams of each repository on ``max_workers`` threads."""

    def __init__(self, tap: TapBitbucket, parent_name: str, max_workers: int) -> None:
        self.tap = tap
        self.parent_name = parent_name
        self.max_workers = max_workers
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="repo")
        self._state_lock = threading.Lock()
        self._pending: dict[str, list[Future[RepoResult]]] = {}
        parent = tap.streams[parent_name]
        units = [c for c in parent.child_streams if c.selected or c.has_selected_descendents]
        #: The child streams run for each repository, in the SDK's order.
        self.unit_names = [c.name for c in units]
        #: Each unit's stream and its descendants: the bookmarks that unit owns.
        self.unit_streams = {c.name: _descendants(c) for c in units}
        # Worker taps get only the catalog entries they use: applying an entry copies
        # its whole schema, and 8 workers doing that for all 29 streams at once held up
        # the first requests by ~0.3 s. Entries are read-only, so they are shared.
        used = {parent_name}.union(*self.unit_streams.values())
        source = tap.input_catalog or tap.catalog
        self._catalog = Catalog({k: e for k, e in source.items() if e.tap_stream_id in used})
        with self._state_lock:
            self._states = RepoStates(tap.state)
        self._listings: dict[str, Future[list[dict[str, t.Any]]]] = {}
        self._local = threading.local()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- the next workspace's repositories, listed while this one's still run ------------

    def prefetch_listing(self, context: Context) -> None:
        """List a workspace's repositories on a worker, ahead of its turn."""
        slug = str(context["workspace_slug"])
        if slug not in self._listings:
            self._listings[slug] = self._pool.submit(self._list, dict(context))

    def take_listing(self, slug: str) -> list[dict[str, t.Any]] | None:
        """The prefetched listing of a workspace (main thread); None if not prefetched."""
        future = self._listings.pop(slug, None)
        return None if future is None else future.result()

    def _list(self, context: Context) -> list[dict[str, t.Any]]:
        worker, _ = self._worker()
        stream = t.cast("BitbucketStream", worker.streams[self.parent_name])
        return list(stream.request_records(context))

    # -- scheduling ------------------------------------------------------------------

    def read_ahead(
        self,
        rows: Iterable[dict[str, t.Any]],
        context_of: t.Callable[[dict[str, t.Any]], Context],
        upcoming: t.Callable[[], Iterable[Context]] | None = None,
    ) -> Iterator[dict[str, t.Any]]:
        """Yield rows in order while the streams of the next repositories run ahead.

        A row is handed back (and so flushed, which waits for its streams) only once
        ``max_workers`` units of later repositories are queued behind it, so the pool
        never waits for the main thread. When this workspace's rows run out,
        ``upcoming`` (the next workspace's repositories) keeps the pool busy instead
        of letting it drain.
        """
        window: deque[dict[str, t.Any]] = deque()
        for row in rows:
            self.submit(context_of(row))
            window.append(row)
            while window and self._queued_behind(window[0]) >= self.max_workers:
                yield window.popleft()
        following = iter(upcoming() if upcoming is not None else ())
        while window:
            while self._queued_behind(window[0]) < self.max_workers:
                ahead = next(following, None)
                if ahead is None:
                    break
                self.submit(ahead)
            yield window.popleft()

    def _queued_behind(self, row: dict[str, t.Any]) -> int:
        first = str(row["uuid"])
        return sum(len(units) for key, units in self._pending.items() if key != first)

    def submit(self, context: Context) -> None:
        """Queue each selected child stream of one repository as its own unit of work.

        A unit is one child stream (with its own children) for one repository: a
        repository with many streams spreads over several threads, and the pool's
        tail is one stream long, not one repository long.
        """
        key = str(context["repo_uuid"])
        if key not in self._pending:
            self._pending[key] = [
                self._pool.submit(self._run, context, name) for name in self.unit_names
            ]

    def flush(self, context: Context) -> None:
        """Write one repository's buffered output, then its state (main thread only)."""
        key = str(context["repo_uuid"])
        tap = self.tap
        for future in self._pending.pop(key):
            result = future.result()  # re-raises a worker's failure here, in order
            for message in result.messages:
                if not isinstance(message, StateMessage):
                    tap.write_message(message)
            with self._state_lock:
                self._states.merge(tap.state, key, result.partitions)
        tap.state_writer.write_state(tap.state)

    # -- worker ----------------------------------------------------------------------

    def _run(self, context: Context, name: str) -> RepoResult:
        worker, writer = self._worker()
        key = str(context["repo_uuid"])
        live = t.cast("dict[str, t.Any]", worker.state)
        live.clear()
        live.update(self._states.initial(key))
        writer.messages = []
        worker.streams[name].sync(context=dict(context))
        # Only the streams this unit ran: the other units of the repository own theirs.
        owned = self.unit_streams[name]
        partitions = {
            stream: [p for p in (b.get("partitions") or []) if _is_repo(p, key)]
            for stream, b in (worker.state.get("bookmarks") or {}).items()
            if stream in owned
        }
        return RepoResult(writer.messages, partitions)

    def _worker(self) -> tuple[TapBitbucket, BufferWriter]:
        """One private tap per thread, reused for every repository that thread runs."""
        found = getattr(self._local, "worker", None)
        if found is None:
            main = self.tap
            writer = BufferWriter()
            tap = type(main)(
                config=dict(main.config),
                catalog=self._catalog,
                validate_config=False,
                setup_mapper=False,
                message_writer=writer,
            )
            # Stream maps are pure transforms: one mapper serves every thread, and
            # building one per worker cost ~0.5 s of deep copies each.
            tap.mapper = main.mapper
            tap.share_runtime(main)
            # The main tap already logged the stream graph ("Added 'x' as child stream
            # to 'y'", one INFO line per child); each worker would repeat all of it.
            _QUIET.local.on = True
            tap.logger.addFilter(_QUIET)
            try:
                tap.streams  # noqa: B018  (built here, lazily otherwise)
            finally:
                _QUIET.local.on = False
            found = self._local.worker = (tap, writer)
        return t.cast("tuple[TapBitbucket, BufferWriter]", found)


class _QuietInThisThread(logging.Filter):
    """Drops records logged by the thread that turned it on, while it is on."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "on", False)


_QUIET = _QuietInThisThread()


def _descendants(stream: Stream) -> set[str]:
    names = {stream.name}
    for child in stream.child_streams:
        names |= _descendants(child)
    return names


def _is_repo(partition: dict[str, t.Any], repo_uuid: str) -> bool:
    return str((partition.get("context") or {}).get("repo_uuid")) == repo_uuid


class RepoStates:
    """The state partitions of each repository, found without scanning the whole state.

    Workers start from the partitions the sync began with (a repository's partitions
    change only when the main thread flushes that repository, after all its units
    ran), and the main thread replaces a repository's partitions in place. Both cost
    time per repository, not per repository times every repository in the state.
    """

    def __init__(self, state: t.Any) -> None:
        self._initial: dict[str, dict[str, list[dict[str, t.Any]]]] = {}
        for name, stream_state in (state.get("bookmarks") or {}).items():
            for partition in stream_state.get("partitions") or []:
                key = str((partition.get("context") or {}).get("repo_uuid"))
                self._initial.setdefault(key, {}).setdefault(name, []).append(partition)
        self._positions: dict[str, tuple[int, dict[str, list[int]]]] = {}

    def initial(self, repo_uuid: str) -> dict[str, t.Any]:
        """A private copy of the repository's starting partitions, as a whole state."""
        found = self._initial.get(repo_uuid) or {}
        return {
            "bookmarks": {
                name: {"partitions": copy.deepcopy(parts)} for name, parts in found.items()
            }
        }

    def merge(
        self, state: t.Any, repo_uuid: str, partitions: dict[str, list[dict[str, t.Any]]]
    ) -> None:
        bookmarks = state.setdefault("bookmarks", {})
        for name, new_parts in partitions.items():
            if not new_parts:
                continue
            current = bookmarks.setdefault(name, {}).setdefault("partitions", [])
            where = self._where(name, current)
            old = where.get(repo_uuid) or []
            if not all(i < len(current) and _is_repo(current[i], repo_uuid) for i in old):
                self._positions.pop(name, None)  # the list changed behind our back
                where = self._where(name, current)
                old = where.get(repo_uuid) or []
            if len(old) == len(new_parts):
                for index, part in zip(old, new_parts, strict=True):
                    current[index] = part
                continue
            if not old:  # the repository's first bookmark for this stream
                where[repo_uuid] = list(range(len(current), len(current) + len(new_parts)))
                current.extend(new_parts)
                continue
            # A different number of partitions for this repository: rebuild the list.
            kept = [p for p in current if not _is_repo(p, repo_uuid)]
            current[:] = kept + new_parts
            self._positions.pop(name, None)

    def _where(self, name: str, current: list[dict[str, t.Any]]) -> dict[str, list[int]]:
        """Positions of each repository's partitions in ``current`` (built once)."""
        cached = self._positions.get(name)
        if cached is None or cached[0] != id(current):
            index: dict[str, list[int]] = {}
            for position, partition in enumerate(current):
                key = str((partition.get("context") or {}).get("repo_uuid"))
                index.setdefault(key, []).append(position)
            cached = (id(current), index)
            self._positions[name] = cached
        return cached[1]
