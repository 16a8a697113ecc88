"""The `requests_per_hour` pacer keeps a sync under the budget: no 429 from Bitbucket.

The emulator's rate limit is set to the budget the pacer promises over a short window (its
burst plus its steady rate times the window, plus 10 % for the time between the pacer's
decision and the emulator's clock: thread scheduling on a loaded CI machine), and a sync of
a couple of hundred requests on 4 threads runs through it: the emulator's request log never
holds more than that in ANY window and no 429 is answered. The same sync without the pacer
does get 429s, so the test can fail. `X-RateLimit-NearLimit` (sent to access tokens) slows
the pacer down, and on a virtual clock no rolling hour ever exceeds `requests_per_hour`.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tap_bitbucket import transport
from tests.emulator import Emulator
from tests.harness import (
    FAST,
    START_DATE,
    access_token_config,
    api_token_config,
    catalog_selecting,
    run_tap,
)

SELECTION = {
    "repositories",
    "pull_requests",
    "pull_request_comments",
    "pipelines",
    "pipeline_steps",
}
RATE = 40.0  # requests per second the pacer allows: 144,000 per hour
BURST = 10  # the pacer's bucket
WINDOW = 1.0  # seconds: the emulator's rate-limit window
# What the pacer lets through in any window of WINDOW seconds (a full bucket, then the
# refill), and so the emulator's limit (one request more is a 429), with the 10 % margin.
BUDGET = int((BURST + RATE * WINDOW) * 1.1)
# requests_per_hour such that the refill rate is RATE (the bucket refills at
# (requests_per_hour - burst) / 3600 so that no rolling hour exceeds requests_per_hour).
REQUESTS_PER_HOUR = RATE * 3600 + BURST


def max_in_any_window(times: list[float], window: float) -> int:
    """The most requests whose arrival falls inside one window [t, t + window)."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def api_requests(emu: Emulator) -> list[Any]:
    return [e for e in emu.request_log if e.path.startswith("/2.0/")]


@pytest.fixture(scope="module")
def catalog() -> dict[str, Any]:
    return catalog_selecting(SELECTION)


def sync(emu: Emulator, tmp_path: Path, catalog: dict[str, Any], **extra: Any) -> Any:
    config = api_token_config(
        emu, start_date=START_DATE, repositories=["acme/*"], max_workers=4, **FAST, **extra
    )
    run = run_tap(config, catalog=catalog, home=tmp_path, parse="lenient", timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_paced_sync_never_exceeds_the_budget(
    make_emulator: Callable[..., Emulator], tmp_path: Path, catalog: dict[str, Any]
) -> None:
    emu = make_emulator(rate_limit=BUDGET, rate_limit_window_s=WINDOW)
    run = sync(emu, tmp_path, catalog, requests_per_hour=REQUESTS_PER_HOUR)
    log = api_requests(emu)
    assert len(log) > 2 * BUDGET  # long enough for the limit to matter
    assert [e for e in log if e.status == 429] == []
    busiest = max_in_any_window([e.timestamp for e in log], WINDOW)
    assert busiest <= BUDGET
    # The pacer did slow the sync: it took at least as long as the budget requires.
    span = max(e.timestamp for e in log) - min(e.timestamp for e in log)
    assert span >= (len(log) - BURST) / RATE * 0.95
    assert "Requests made: " in run.stderr


def test_unpaced_sync_hits_the_limit(
    make_emulator: Callable[..., Emulator], tmp_path: Path, catalog: dict[str, Any]
) -> None:
    """The control: the same sync without `requests_per_hour` is answered 429 (and, as
    429s are retried, still completes)."""
    emu = make_emulator(rate_limit=BUDGET, rate_limit_window_s=WINDOW)
    sync(emu, tmp_path, catalog)
    log = api_requests(emu)
    assert [e for e in log if e.status == 429]


def test_near_limit_header_slows_the_pacer(
    make_emulator: Callable[..., Emulator], tmp_path: Path, catalog: dict[str, Any]
) -> None:
    """Access tokens get `X-RateLimit-NearLimit: true` once 80 % of the hourly limit is
    used; the tap then paces to half of `X-RateLimit-Limit` per hour."""
    limit = 36_000  # per hour: the tap slows to 18,000/h, one request per 0.2 s
    emu = make_emulator(rate_limit=limit, rate_limit_window_s=3600)
    emu.spend_rate_limit(int(limit * 0.85), credential="access_token")  # an hour of use
    config = access_token_config(
        emu, start_date=START_DATE, repositories=["acme/web-app"], max_workers=1
    )
    catalog = catalog_selecting({"repositories", "branches", "tags", "commits", "pipelines"})
    run = run_tap(config, catalog=catalog, home=tmp_path, parse="lenient", timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Bitbucket reports the rate limit is near; pacing to 18000 requests/h" in run.stderr
    near = [e for e in api_requests(emu) if e.path.startswith("/2.0/repositories/")]
    assert len(near) >= 5  # the listing, then branches, tags, commits and pipelines
    gaps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(near)]
    # A bucket of one at 5 requests/s: after the first near-limit answer (and the token
    # left in the bucket) n more requests take at least (n - 1) * 0.2 s.
    times = [e.timestamp for e in near[1:]]
    for i, j in itertools.combinations(range(len(times)), 2):
        assert times[j] - times[i] >= (j - i - 1) * 0.2 * 0.95, gaps
    # Without the header (a fresh budget) the same requests go out back to back.
    fresh = make_emulator(rate_limit=limit, rate_limit_window_s=3600)
    run = run_tap(
        access_token_config(
            fresh, start_date=START_DATE, repositories=["acme/web-app"], max_workers=1
        ),
        catalog=catalog,
        home=tmp_path,
        parse="lenient",
        timeout=180,
    )
    assert run.returncode == 0
    assert "rate limit is near" not in run.stderr
    quick = [e for e in api_requests(fresh) if e.path.startswith("/2.0/repositories/")]
    assert len(quick) == len(near)
    assert sum(b.timestamp - a.timestamp for a, b in itertools.pairwise(quick)) < sum(gaps) / 2


def test_no_rolling_hour_exceeds_requests_per_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bucket starts full: it must refill slower than requests_per_hour, or the first
    hour of a sync could send requests_per_hour + burst requests (HTTP 429 on Bitbucket
    when the setting equals the account's 1,000/h). Checked on a virtual clock."""
    clock = [0.0]
    virtual = types.SimpleNamespace(
        monotonic=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s)
    )
    monkeypatch.setattr(transport, "time", virtual)  # the transport module's clock only
    for budget in (1000, 100, 25):
        clock[0] = 0.0
        bucket = transport.TokenBucket(budget)
        sent = []
        for _ in range(3 * budget):
            bucket.acquire()
            sent.append(clock[0])
            clock[0] += 0.001  # the request itself
        assert max_in_any_window(sent, 3600.0) <= budget, budget
        # ...and not much slower than asked: three hours of budget in about three hours.
        assert sent[-1] <= 3 * 3600 * 1.05, (budget, sent[-1])


def test_request_totals_are_logged(
    make_emulator: Callable[..., Emulator], tmp_path: Path, catalog: dict[str, Any]
) -> None:
    emu = make_emulator()
    run = sync(emu, tmp_path, catalog)
    line = next(line for line in run.stderr.splitlines() if "Requests made: " in line)
    match = re.search(r"Requests made: (\d+) in total \((.*)\)", line)
    assert match, line
    per_stream = dict(item.split("=") for item in match.group(2).split(", "))
    assert int(match.group(1)) == sum(int(v) for v in per_stream.values())
    assert int(match.group(1)) == len(api_requests(emu))
    counts = collections.Counter(e.template for e in api_requests(emu))
    comments = "/repositories/{workspace}/{repo_slug}/pullrequests/{pull_request_id}/comments"
    assert int(per_stream["pull_request_comments"]) == counts[comments]
