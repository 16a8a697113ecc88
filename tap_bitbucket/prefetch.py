"""Concurrency as pure I/O: answers fetched ahead of the request that will want them.

The SDK's sequential sync loop stays the only place where records, state, stream maps
and child streams happen (issue 12: concurrency that cannot change semantics). Streams
plan the requests the main thread is about to make (the first page of each child
stream of the next repositories, the children of a batch of pull requests), worker
threads send them, and :class:`~tap_bitbucket.transport.StreamSession` hands the main
thread the answer when it asks for that exact URL; without one it sends the request
itself. A worker that gets a page follows its ``next`` link with the paginator the
stream would use, registering the next page before the current one is handed over, so
the main thread never misses a page that is on its way.

Only final answers are kept: a retriable failure (429, 5xx, a reset) is dropped, and
the main thread's own request then runs the retry policy.
"""

from __future__ import annotations

import threading
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor

if t.TYPE_CHECKING:
    from collections.abc import Callable

    import requests

#: Fetch one URL; None when the answer is not final (the main thread retries it).
Fetch = t.Callable[[str], "requests.Response | None"]
#: The next page's URL of an answer, or None at the last page.
NextPage = t.Callable[["requests.Response"], "str | None"]


class Prefetcher:
    """A bounded pool of fetches, keyed by URL; see the module docstring."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prefetch")
            if workers > 1
            else None
        )
        self._lock = threading.Lock()
        self._slots: dict[str, Future[requests.Response | None]] = {}
        self._closed = False

    @property
    def enabled(self) -> bool:
        return self._pool is not None and not self._closed

    def pending(self) -> int:
        """Fetches planned and not yet taken (running, queued or done)."""
        with self._lock:
            return len(self._slots)

    def submit(self, url: str, fetch: Fetch, next_page: NextPage | None = None) -> None:
        """Fetch ``url`` on a worker (once), then its following pages."""
        with self._lock:
            if self._pool is None or self._closed or url in self._slots:
                return
            self._slots[url] = self._pool.submit(self._run, url, fetch, next_page)

    def _run(self, url: str, fetch: Fetch, next_page: NextPage | None) -> requests.Response | None:
        try:
            response = fetch(url)
        except Exception:  # the main thread's own request reports it
            return None
        if response is not None and next_page is not None:
            try:
                link = next_page(response)
            except Exception:  # e.g. a loop: the main thread raises it
                link = None
            if link:
                self.submit(link, fetch, next_page)
        return response

    def take(self, url: str) -> requests.Response | None:
        """The answer fetched for ``url`` (waiting for it if it is on its way), or None."""
        with self._lock:
            future = self._slots.pop(url, None)
        return None if future is None else future.result()

    def discard(self, keep: Callable[[str], bool]) -> int:
        """Drop the planned fetches whose URL ``keep`` refuses; how many were dropped."""
        with self._lock:
            dropped = [url for url in self._slots if not keep(url)]
            for url in dropped:
                self._slots.pop(url).cancel()
        return len(dropped)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            slots, self._slots = self._slots, {}
        for future in slots.values():
            future.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
