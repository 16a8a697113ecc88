"""How far a sync has got, and the request cap of a scheduled run (issue 13).

:class:`Progress` counts repositories, records and requests, and logs one INFO line
every ``progress_interval_seconds`` and once at the end:

    progress: 37/120 repositories, 8,412 records, 1,203 requests (412 left this hour), ETA 14 min

Each number is measured: repositories done out of those in scope, RECORD messages
written, requests sent by this process, what is left of the hourly budget after this
run's requests (the budget Bitbucket states in ``X-RateLimit-Limit``, else the
configured ``requests_per_hour``, else Bitbucket's documented 1,000/h, notes §4.1),
and an ETA from the measured time per repository so far times the repositories left.

The cap (``max_requests_per_run``) is checked before each repository, never inside
one: a repository in flight is finished, so every partition's state stays whole and
the next run goes on from the next repository (streams/repository.py rotates).
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from tap_bitbucket.settings import Settings
    from tap_bitbucket.transport import Transport

LOGGER = logging.getLogger("tap_bitbucket")
#: Bitbucket's documented allowance for repository data per user and hour (notes §4.1).
DOCUMENTED_BUDGET = 1000


class Progress:
    """Counters of one sync, its progress lines and its request cap."""

    def __init__(
        self,
        settings: Settings,
        transport: Transport,
        records: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cap = settings.max_requests_per_run
        self.interval = settings.progress_interval_seconds
        self.transport = transport
        self.records = records
        self.clock = clock
        self.repositories_total = 0
        self.repositories_done = 0
        self.capped = False
        self._first_repo_at: float | None = None
        self._repo_requests: list[int] = []
        self._repo_started_requests = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- repositories ------------------------------------------------------------------

    def repository_started(self) -> None:
        if self._first_repo_at is None:
            self._first_repo_at = self.clock()
        self._repo_started_requests = self.transport.total_requests()

    def repository_done(self) -> None:
        self.repositories_done += 1
        self._repo_requests.append(self.transport.total_requests() - self._repo_started_requests)

    def room_for_a_repository(self) -> bool:
        """Whether the cap leaves room for the next repository (at its measured mean
        cost this run, none before the first), so a run rarely passes the cap."""
        if self.cap is None:
            return True
        made = self.transport.total_requests()
        mean = sum(self._repo_requests) / len(self._repo_requests) if self._repo_requests else 0
        if made < self.cap and made + mean <= self.cap:
            return True
        self.capped = True
        return False

    # -- lines -----------------------------------------------------------------------

    def line(self) -> str:
        requests = self.transport.total_requests()
        budget = self.transport.hourly_budget()
        left = max(0, (budget or DOCUMENTED_BUDGET) - self.transport.requests_last_hour())
        where = "" if budget else f" of Bitbucket's default {DOCUMENTED_BUDGET:,}/h"
        return (
            f"progress: {self.repositories_done}/{self.repositories_total} repositories, "
            f"{self.records():,} records, {requests:,} requests ({left:,} left this hour"
            f"{where}), ETA {self.eta()}"
        )

    def eta(self) -> str:
        left = self.repositories_total - self.repositories_done
        if left <= 0:
            return "0 min"
        if not self.repositories_done or self._first_repo_at is None:
            return "unknown"
        per_repo = (self.clock() - self._first_repo_at) / self.repositories_done
        minutes = per_repo * left / 60
        return f"{minutes:.0f} min" if minutes >= 1 else "under 1 min"

    def start(self) -> None:
        """Log a line every ``interval`` seconds from a daemon thread until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.wait(self.interval):
                LOGGER.info(self.line())

        self._thread = threading.Thread(target=loop, name="tap-bitbucket-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the timer and log the final line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        LOGGER.info(self.line())
        if self.capped:
            left = self.repositories_total - self.repositories_done
            LOGGER.info(
                "max_requests_per_run (%s) reached after %s requests: stopped cleanly with "
                "%s of %s repositories left; the next run goes on from there",
                f"{self.cap:,}",
                f"{self.transport.total_requests():,}",
                f"{left:,}",
                f"{self.repositories_total:,}",
            )
