"""Children of pull requests and pipelines run per batch of parents, not per parent.

A child partition costs the SDK an INFO line, three METRIC lines and state work, more
CPU than its one request; tap_bitbucket/streams/batches.py runs each child stream once
per CHILD_BATCH emitted parents instead. Pinned here against the emulator's data: the
number of child partitions, and one request-count METRIC per partition whose values
add up to the requests the emulator served.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import pytest

from tap_bitbucket.streams.batches import CHILD_BATCH
from tests.emulator import Emulator
from tests.harness import TapResult, api_token_config, discovered_catalog, run_tap, select_only

CHILDREN = {
    "pull_request_comments": ("pullrequests", "comments"),
    "pull_request_commits": ("pullrequests", "commits"),
    "pull_request_tasks": ("pullrequests", "tasks"),
    "pipeline_steps": ("pipelines", "steps"),
}
PARENTS = {"pull_requests", "pipelines"}
BEGIN = re.compile(r"\| tap-bitbucket\.(\w+) +\| Beginning sync of")
METRIC = re.compile(r"METRIC: (\{.*\})$")


@pytest.fixture(scope="module")
def run(emulator: Emulator) -> tuple[TapResult, list[str]]:
    before = len(emulator.request_log)
    catalog = select_only(discovered_catalog(), {*CHILDREN, *PARENTS})
    result = run_tap(api_token_config(emulator, max_workers=1), catalog=catalog)
    assert result.returncode == 0, result.stderr[-3000:]
    served = [e.path for e in emulator.request_log[before:] if e.status == 200]
    return result, served


def parents_per_repo(emulator: Emulator, kind: str) -> list[int]:
    dataset = emulator.dataset
    counts = []
    for repo in dataset.repos:
        if repo.deleted:
            continue
        rows = dataset.collection(f"/repositories/{repo.workspace}/{repo.slug}/{kind}") or []
        counts.append(len(rows))
    return counts


@pytest.mark.parametrize("stream", sorted(CHILDREN))
def test_one_partition_per_batch_of_parents(
    stream: str, emulator: Emulator, run: tuple[TapResult, list[str]]
) -> None:
    result, _ = run
    kind = CHILDREN[stream][0]
    expected = sum(math.ceil(n / CHILD_BATCH) for n in parents_per_repo(emulator, kind))
    begun = Counter(m.group(1) for line in result.stderr_lines if (m := BEGIN.search(line)))
    assert expected > 0
    assert begun[stream] == expected


@pytest.mark.parametrize("stream", sorted(CHILDREN))
def test_request_metrics_add_up_to_the_requests_served(
    stream: str, run: tuple[TapResult, list[str]]
) -> None:
    result, served = run
    kind, leaf = CHILDREN[stream]
    path = re.compile(rf"^/2\.0/repositories/[^/]+/[^/]+/{kind}/[^/]+/{leaf}$")
    requests = sum(1 for p in served if path.match(p))
    points = [json.loads(m.group(1)) for line in result.stderr_lines if (m := METRIC.search(line))]
    counts = [
        p["value"]
        for p in points
        if p["metric"] == "http_request_count" and p["tags"]["stream"] == stream
    ]
    assert requests > 0
    assert sum(counts) == requests
    # One line per batch, not one per parent.
    assert len(counts) < requests
