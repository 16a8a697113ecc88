"""Benchmark of scheduled syncs at scale (issue 13).

Run from the repo root:  python -m tests.benchmark.scheduled [--sizes 50 1000]

For each size it starts the emulator with the default data plus enough quiet
repositories (a few commits, no pull requests or pipelines, like most of a large
workspace) to reach that many repositories in two workspaces, runs the real tap as a
subprocess and prints progress lines, then ONE JSON object as the last line, per size:

* full_requests, full_per_repo: a clean full sync of the default selection;
* nochange_requests, nochange_per_repo, nochange_bound: the sync right after it with
  nothing changed, against the bound of 4 per repository and 4 per workspace;
* capped_runs: how many runs of max_requests_per_run=1000, each from the previous run's
  state, a full sync needs (until their state holds every partition of the uncapped
  sync's), against capped_runs_min = ceil(full_requests / 1000);
  capped_max_requests is the most any of them made (the cap plus what was in flight);
* nochange_wall_s: the no-change run's wall time at --latency-ms (default 100 ms).
"""

from __future__ import annotations

import argparse
import json
import math
import time

from tests.benchmark.__main__ import count_api_requests, log, run_tap, tap_config
from tests.emulator import Emulator, EmulatorConfig

CAP = 1000
DEFAULT_REPOS = 8  # the default data's repositories (tests/emulator/data/_vocab.py)


def emulator(size: int, latency_ms: float = 0) -> Emulator:
    return Emulator(
        EmulatorConfig(quiet_repos=size - DEFAULT_REPOS, latency_ms=latency_ms)
    ).start()


def partitions(state: dict[str, object]) -> set[str]:
    """Every state partition, as (stream, context): what a sync has been through."""
    found = set()
    bookmarks = state.get("bookmarks") or {}
    assert isinstance(bookmarks, dict)
    for stream, stream_state in bookmarks.items():
        for part in stream_state.get("partitions") or []:
            found.add(json.dumps([stream, part.get("context")], sort_keys=True))
    return found


def capped_chain(size: int, whole: set[str], limit: int) -> tuple[int, int]:
    """Chain capped runs from an empty state until their state holds every partition of
    one uncapped sync (``whole``): the runs a full sync needs under the cap. (A run
    that ends without the cap's line ends the chain too.)"""
    with emulator(size) as emu:
        state: dict[str, object] | None = None
        runs, most = 0, 0
        while runs < limit:
            emu.reset_log()
            run = run_tap(tap_config(emu, max_requests_per_run=CAP), state=state)
            runs += 1
            made = count_api_requests(emu)
            most = max(most, made)
            state = run["state"]  # type: ignore[assignment]
            assert state is not None
            missing = len(whole - partitions(state))
            log(f"  capped run {runs}: {made} requests, {run['records']} records, {missing} partitions to go")
            if not run["capped"] or not missing:
                return runs, most
        raise SystemExit(f"{limit} capped runs did not finish a sync of {size} repositories")


def measure(size: int, latency_ms: float) -> dict[str, object]:
    with emulator(size) as emu:
        repos = sum(1 for r in emu.dataset.repos if not r.deleted)
        workspaces = len(emu.dataset.workspaces)
        full = run_tap(tap_config(emu))
        full_requests = count_api_requests(emu)
        log(f"{repos} repositories: full sync {full_requests} requests, {full['wall_s']:.1f}s")
        emu.reset_log()
        again = run_tap(tap_config(emu), state=full["state"])  # type: ignore[arg-type]
        nochange = count_api_requests(emu)
        log(f"  no-change sync {nochange} requests, {again['records']} records")
        state = full["state"]
        whole = partitions(state)  # type: ignore[arg-type]
    with emulator(size, latency_ms) as slow:
        timed = run_tap(tap_config(slow), state=state)  # type: ignore[arg-type]
        log(f"  no-change sync at {latency_ms:.0f} ms: {timed['wall_s']:.1f}s")
    runs_min = math.ceil(full_requests / CAP)
    runs, most = capped_chain(size, whole, limit=4 * runs_min + 4)
    return {
        "repositories": repos,
        "workspaces": workspaces,
        "full_requests": full_requests,
        "full_per_repo": round(full_requests / repos, 2),
        "nochange_requests": nochange,
        "nochange_per_repo": round(nochange / repos, 2),
        "nochange_bound": 4 * repos + 4 * workspaces,
        "nochange_wall_s": round(float(timed["wall_s"]), 1),
        "latency_ms": latency_ms,
        "capped_runs": runs,
        "capped_runs_min": runs_min,
        "capped_max_requests": most,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 1000])
    parser.add_argument("--latency-ms", type=float, default=100)
    args = parser.parse_args()
    started = time.perf_counter()
    result = {str(size): measure(size, args.latency_ms) for size in args.sizes}
    log(f"benchmark wall time {time.perf_counter() - started:.0f}s")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
