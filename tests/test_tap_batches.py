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

from tap_bitbucket.client import BitbucketStream
from tap_bitbucket.streams import STREAM_TYPES
from tap_bitbucket.streams.batches import CHILD_BATCH, BatchChild
from tests.emulator import Emulator
from tests.harness import TapResult, api_token_config, discovered_catalog, run_tap, select_only

# The batched children the default selection syncs, from the stream registry (diffstats,
# not selected by default, is read through a redirect and left out).
CHILDREN = {
    cls.name: cls for cls in STREAM_TYPES if issubclass(cls, BatchChild) and cls.selected_by_default
}
PARENTS = {str(cls.parent_stream_type.name) for cls in CHILDREN.values() if cls.parent_stream_type}
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


def parents_per_repo(emulator: Emulator, parent: type[BitbucketStream]) -> list[int]:
    dataset = emulator.dataset
    counts = []
    for repo in dataset.repos:
        if repo.deleted:
            continue
        path = str(parent.path).format(workspace_slug=repo.workspace, repo_slug=repo.slug)
        counts.append(len(dataset.collection(path) or []))
    return counts


@pytest.mark.parametrize("stream", sorted(CHILDREN))
def test_one_partition_per_batch_of_parents(
    stream: str, emulator: Emulator, run: tuple[TapResult, list[str]]
) -> None:
    result, _ = run
    parent = CHILDREN[stream].parent_stream_type
    assert parent is not None
    expected = sum(math.ceil(n / CHILD_BATCH) for n in parents_per_repo(emulator, parent))
    begun = Counter(m.group(1) for line in result.stderr_lines if (m := BEGIN.search(line)))
    assert expected > 0
    assert begun[stream] == expected


@pytest.mark.parametrize("stream", sorted(CHILDREN))
def test_request_metrics_add_up_to_the_requests_served(
    stream: str, run: tuple[TapResult, list[str]]
) -> None:
    result, served = run
    # The stream's path with each {placeholder} as one path segment.
    path = re.compile(r"^/2\.0" + re.sub(r"\{\w+\}", "[^/]+", str(CHILDREN[stream].path)) + "$")
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
