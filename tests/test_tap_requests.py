"""Request minimality, checked as correctness: every request a sync makes is one it needs.

The floor comes from the emulator's ground truth (tests/benchmark/minimum.py: one request
per page at each endpoint's maximum pagelen, none for children of unchanged parents).
A full sync and a no-change incremental sync of the default-selected streams must hit
it exactly, stream by stream, with one worker and with eight: the worker pool lists
each workspace's repositories ahead of its turn, and that must never cost a second
listing or a repeated page.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import pytest

from tap_bitbucket.streams import STREAM_TYPES
from tests.benchmark.minimum import minimum_requests, refreshed_partitions
from tests.emulator import Emulator, EmulatorConfig
from tests.harness import TapResult, api_token_config, run_tap

STREAMS = {str(c.name): c for c in STREAM_TYPES}
TOTALS = re.compile(r"Requests made: (\d+) in total \((.*)\)")


def per_stream(result: TapResult) -> dict[str, int]:
    """The tap's own per-stream request counts (its last log line)."""
    found = [TOTALS.search(line) for line in result.stderr_lines]
    matches = [m for m in found if m]
    assert matches, "the tap logged no request totals"
    counts = dict(part.split("=") for part in matches[-1].group(2).split(", "))
    return {stream: int(n) for stream, n in counts.items()}


def api_requests(emu: Emulator) -> list[str]:
    return [
        f"{e.path}?{e.query}"
        for e in emu.request_log
        if e.path.startswith("/2.0/") and e.method == "GET"
    ]


@dataclass
class Run:
    result: TapResult
    served: list[str]  # the GET paths and queries the emulator answered
    floor: dict[str, int]  # stream -> fewest requests possible
    refreshed: set[tuple[str, str]] = field(default_factory=set)  # slow partitions re-read


def partition_path(stream: str, where: str) -> str:
    """The API path a slow-changing partition's first page is read from."""
    parts = where.split("/")
    keys = ["workspace_slug", "project_key" if "project_key" in STREAMS[stream].path else "repo_slug"]
    return "/2.0" + STREAMS[stream].path.format(**dict(zip(keys, parts, strict=False)))


@pytest.fixture(scope="module")
def runs() -> dict[tuple[int, str], Run]:
    """Full and no-change syncs with 1 and 8 workers, each pair on a fresh emulator."""
    out: dict[tuple[int, str], Run] = {}
    for workers in (1, 8):
        with Emulator(EmulatorConfig()) as emu:
            config = api_token_config(emu, max_workers=workers)
            full = run_tap(config)
            assert full.returncode == 0, full.stderr[-3000:]
            floor = minimum_requests(emu.dataset, incremental_nochange=False)
            out[(workers, "full")] = Run(full, api_requests(emu), floor)
            emu.reset_log()
            again = run_tap(config, state=full.last_state)
            assert again.returncode == 0, again.stderr[-3000:]
            refreshed = refreshed_partitions(full.last_state, again.last_state)
            floor = minimum_requests(emu.dataset, incremental_nochange=True, refreshed=refreshed)
            out[(workers, "nochange")] = Run(again, api_requests(emu), floor, refreshed)
    return out


@pytest.mark.parametrize("workers", [1, 8])
@pytest.mark.parametrize("kind", ["full", "nochange"])
def test_requests_hit_the_floor_stream_by_stream(
    workers: int,
    kind: str,
    runs: dict[tuple[int, str], Run],
) -> None:
    run = runs[(workers, kind)]
    floor = {stream: n for stream, n in run.floor.items() if n}
    assert per_stream(run.result) == floor
    # The emulator saw exactly those requests: the tap's counter hides nothing.
    assert len(run.served) == sum(floor.values())


@pytest.mark.parametrize("workers", [1, 8])
@pytest.mark.parametrize("kind", ["full", "nochange"])
def test_no_page_is_requested_twice(
    workers: int,
    kind: str,
    runs: dict[tuple[int, str], Run],
) -> None:
    served = runs[(workers, kind)].served
    repeated = {url: n for url, n in Counter(served).items() if n > 1}
    assert repeated == {}


def test_workers_make_the_same_requests_as_one_thread(
    runs: dict[tuple[int, str], Run],
) -> None:
    for kind in ("full", "nochange"):
        one, eight = runs[(1, kind)], runs[(8, kind)]
        # A slow-changing partition falls due by the clock (streams/bookmarks.py), so two
        # runs made seconds apart may differ there, and only there.
        paths = {partition_path(*p) for p in one.refreshed ^ eight.refreshed}

        def comparable(run: Run) -> Counter[str]:
            return Counter(u for u in run.served if u.split("?")[0] not in paths)

        assert comparable(eight) == comparable(one), kind


@pytest.mark.parametrize("workers", [1, 8])
def test_scope_check_reuses_its_listings(workers: int) -> None:
    """Include globs make the tap list /user/workspaces and the matching workspaces'
    repositories before the sync, to fail fast on a glob that matches nothing; the
    sync must use those lists instead of reading them again."""
    with Emulator(EmulatorConfig()) as emu:
        result = run_tap(api_token_config(emu, repositories=["acme/*"], max_workers=workers))
        assert result.returncode == 0, result.stderr[-3000:]
        served = api_requests(emu)
    assert served.count("/2.0/user/workspaces?pagelen=100") == 1
    repeated = {url: n for url, n in Counter(served).items() if n > 1}
    assert repeated == {}
