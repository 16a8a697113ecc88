"""Repositories synced concurrently on a bounded pool, written by one thread.

Each repository's child streams run in a worker thread on a private copy of the tap
(its own stream objects, so no SDK stream is shared between threads), with a writer
that buffers messages instead of printing them. The main thread takes the results in
repository order: it writes the buffered messages, then merges that repository's
state partitions and writes a STATE message. So output lines are never interleaved,
and STATE never runs ahead of the records already written.

Every worker shares the tap's one :class:`~tap_bitbucket.runtime.Runtime`: the same
authenticator (one OAuth token), the same pacer, the same request counters.
"""

from __future__ import annotations

import copy
import threading
import typing as t
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from singer_sdk.singerlib import StateMessage
from singer_sdk.singerlib.encoding.base import GenericSingerWriter

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from singer_sdk.helpers.types import Context

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
        self._pending: dict[str, Future[RepoResult]] = {}
        self._local = threading.local()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- scheduling ------------------------------------------------------------------

    def read_ahead(
        self, rows: Iterable[dict[str, t.Any]], context_of: t.Callable[[dict[str, t.Any]], Context]
    ) -> Iterator[dict[str, t.Any]]:
        """Yield rows in order while the next ``max_workers`` repositories run ahead."""
        window: deque[dict[str, t.Any]] = deque()
        for row in rows:
            ctx = context_of(row)
            self._pending[str(ctx["repo_uuid"])] = self._pool.submit(self._run, ctx)
            window.append(row)
            if len(window) > self.max_workers:
                yield window.popleft()
        while window:
            yield window.popleft()

    def flush(self, context: Context) -> None:
        """Write one repository's buffered output, then its state (main thread only)."""
        future = self._pending.pop(str(context["repo_uuid"]))
        result = future.result()  # re-raises a worker's failure here, in order
        tap = self.tap
        for message in result.messages:
            if not isinstance(message, StateMessage):
                tap.write_message(message)
        with self._state_lock:
            _merge_partitions(tap.state, result.partitions, str(context["repo_uuid"]))
        tap.state_writer.write_state(tap.state)

    # -- worker ----------------------------------------------------------------------

    def _run(self, context: Context) -> RepoResult:
        worker, writer = self._worker()
        with self._state_lock:
            state = _repo_state(self.tap.state, str(context["repo_uuid"]))
        live = t.cast("dict[str, t.Any]", worker.state)
        live.clear()
        live.update(state)
        writer.messages = []
        parent = worker.streams[self.parent_name]
        for child in parent.child_streams:
            if child.selected or child.has_selected_descendents:
                child.sync(context=dict(context))
        partitions = {
            name: [p for p in (b.get("partitions") or []) if _is_repo(p, str(context["repo_uuid"]))]
            for name, b in (worker.state.get("bookmarks") or {}).items()
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
                catalog=main.input_catalog or main.catalog,
                validate_config=False,
                setup_mapper=False,
                message_writer=writer,
            )
            # Stream maps are pure transforms: one mapper serves every thread, and
            # building one per worker cost ~0.5 s of deep copies each.
            tap.mapper = main.mapper
            tap.share_runtime(main)
            found = self._local.worker = (tap, writer)
        return t.cast("tuple[TapBitbucket, BufferWriter]", found)


def _repo_state(state: t.Any, repo_uuid: str) -> dict[str, t.Any]:
    """A copy of the state holding only this repository's partitions.

    A worker touches nothing else, and copying the whole state for every repository
    would cost time quadratic in the number of repositories.
    """
    bookmarks: dict[str, t.Any] = {}
    for name, stream_state in (state.get("bookmarks") or {}).items():
        parts = [p for p in stream_state.get("partitions") or [] if _is_repo(p, repo_uuid)]
        bookmarks[name] = {"partitions": copy.deepcopy(parts)}
    return {"bookmarks": bookmarks}


def _is_repo(partition: dict[str, t.Any], repo_uuid: str) -> bool:
    return str((partition.get("context") or {}).get("repo_uuid")) == repo_uuid


def _merge_partitions(
    state: t.Any,
    partitions: dict[str, list[dict[str, t.Any]]],
    repo_uuid: str,
) -> None:
    bookmarks = state.setdefault("bookmarks", {})
    for name, new_parts in partitions.items():
        if not new_parts:
            continue
        stream_state = bookmarks.setdefault(name, {})
        kept = [p for p in stream_state.get("partitions") or [] if not _is_repo(p, repo_uuid)]
        stream_state["partitions"] = kept + new_parts
