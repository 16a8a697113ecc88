"""Kill a sync at any moment (SIGKILL), resume from the last STATE it printed, lose nothing.

A clean sync (default-selected streams, three repositories in two workspaces, one with no
commits and one without Pipelines) is the reference, once with `max_workers` 1 and once
with 4. For 20 kill points (seeded, one in each slice of the clean output, so they fall in
every kind of stream and repository) the tap is started, its stdout read line by line and
the process SIGKILLed after the N-th RECORD line; the rerun starts from the last STATE line
read. The union of what was read and what the rerun emits must hold every (stream, primary
key) of the clean sync, nothing else, with the clean content.

Duplicates (records in both runs) are allowed and bounded. Per kill:

* full-table streams: everything of theirs read before the kill is emitted again (a
  full-table stream always re-reads everything);
* incremental streams: the records read after the last STATE (the partition in flight:
  one repository's stream with `max_workers` 1, the repository being written with more),
  plus the look-back window: pull requests updated within `lookback_seconds` before the
  pull-request bookmark, with their child records, when the kill fell inside a
  repository's pull requests.

The test checks the second point record by record: an incremental record that the last
STATE already covered must not come back unless it lies in the look-back window.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from tap_bitbucket.streams import STREAM_TYPES
from tap_bitbucket.streams.batches import CHILD_BATCH, BatchChild, BatchedParent
from tap_bitbucket.timestamps import format_timestamp, parse_timestamp
from tests.emulator import Emulator, EmulatorConfig
from tests.harness import (
    ROOT,
    START_DATE,
    api_token_config,
    catalog_selecting,
    key_properties,
    record_key,
    run_tap,
    tap_command,
    tap_env,
)

REPOSITORIES = ["acme/infra", "acme/sandbox", "globex/storefront"]
KILLS = {1: 14, 4: 6}  # kill points per max_workers value: 20 in all
SEED = 20261127
LOOKBACK = timedelta(seconds=300)  # the tap's default lookback_seconds
PR_CHILDREN = {"pull_request_comments", "pull_request_commits", "pull_request_tasks"}


@dataclass
class Clean:
    config: dict[str, Any]
    keys: dict[str, list[str]]
    sequence: list[tuple[str, str]]  # (stream, key) in output order
    content: dict[tuple[str, str], str]
    replication_key: dict[str, str]  # incremental streams -> replication key
    largest_partition: int  # most incremental records of one stream in one repository
    largest_repository: int  # most incremental records of one repository (all streams)
    largest_batch: int  # most incremental records of one batch: its parents and children


@pytest.fixture(scope="module")
def emu() -> Any:
    with Emulator(EmulatorConfig()) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def catalog() -> dict[str, Any]:
    return catalog_selecting(None)  # the default selection


_clean: dict[int, Clean] = {}


def clean_sync(workers: int, emu: Emulator, catalog: dict[str, Any], tmp: Path) -> Clean:
    if workers not in _clean:
        config = api_token_config(
            emu,
            start_date=START_DATE,
            repositories=REPOSITORIES,
            max_workers=workers,
            state_interval_seconds=0,
        )
        run = run_tap(config, home=tmp, parse="lenient", timeout=180)
        assert run.returncode == 0, run.stderr[-2000:]
        keys = key_properties(run.messages)
        sequence = [record_key(m, keys) for m in run.records]
        assert len(set(sequence)) == len(sequence), "the clean sync repeats records"
        content = {
            record_key(m, keys): json.dumps(m["record"], sort_keys=True) for m in run.records
        }
        replication = {
            e["tap_stream_id"]: e["replication_key"]
            for e in catalog["streams"]
            if e.get("replication_key")
        }
        partitions: Counter[tuple[str, str]] = Counter()
        repositories: Counter[str] = Counter()
        for message in run.records:
            if message["stream"] in replication:
                record = message["record"]
                owner = str(record.get("repo_uuid") or record.get("workspace_slug"))
                partitions[(message["stream"], owner)] += 1
                repositories[owner] += 1
        _clean[workers] = Clean(
            config,
            keys,
            sequence,
            content,
            replication,
            max(partitions.values()),
            max(repositories.values()),
            largest_batch(run.records, replication),
        )
    return _clean[workers]


def largest_batch(records: list[dict[str, Any]], incremental: dict[str, str]) -> int:
    """Most incremental records of one batch: up to CHILD_BATCH parents of a repository
    (pull requests, pipelines) and their children. The SDK writes a batch's children
    before its parents, with no STATE between them (streams/batches.py), so a kill inside
    a batch re-reads all of it."""
    id_field = {c.name: c.batch_id_field for c in STREAM_TYPES if issubclass(c, BatchedParent)}
    parent_of = {
        c.name: (c.parent_stream_type.name, c.context_keys[-1])
        for c in STREAM_TYPES
        if issubclass(c, BatchChild) and c.parent_stream_type is not None
    }
    emitted: Counter[tuple[str, str]] = Counter()
    batch_of: dict[tuple[str, str, Any], int] = {}
    for message in records:
        stream, record = message["stream"], message["record"]
        if stream in id_field:
            owner = (stream, record["repo_uuid"])
            batch_of[(*owner, record[id_field[stream]])] = emitted[owner] // CHILD_BATCH
            emitted[owner] += 1
    sizes: Counter[tuple[str, str, int]] = Counter()
    for message in records:
        stream, record = message["stream"], message["record"]
        if stream not in incremental:
            continue
        if stream in id_field:
            parent, parent_id = stream, record[id_field[stream]]
        elif stream in parent_of:
            parent, field = parent_of[stream]
            parent_id = record[field]
        else:
            continue
        owner = (parent, record["repo_uuid"])
        sizes[(*owner, batch_of[(*owner, parent_id)])] += 1
    return max(sizes.values(), default=0)


def kill_points(workers: int, total: int) -> list[int]:
    """One seeded record count in each of KILLS[workers] equal slices of the output."""
    rng = random.Random(SEED + workers)
    n = KILLS[workers]
    return [rng.randrange(i * total // n, (i + 1) * total // n) + 1 for i in range(n)]


def read_until_killed(command: list[str], tmp: Path, records: int) -> list[dict[str, Any]]:
    """Start the tap, read stdout line by line, SIGKILL it after `records` RECORD lines."""
    with open(tmp / "killed-stderr.txt", "w") as stderr:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=tap_env(tmp), stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        assert proc.stdout is not None
        read: list[dict[str, Any]] = []
        seen = 0
        try:
            for line in proc.stdout:
                message = json.loads(line)
                read.append(message)
                if message["type"] == "RECORD":
                    seen += 1
                    if seen == records:
                        proc.send_signal(signal.SIGKILL)
                        break
        finally:
            proc.kill()
            proc.wait(timeout=30)
            proc.stdout.close()
    assert seen == records, "the sync ended before the kill point"
    return read


def partition_bookmark(state: dict[str, Any], stream: str, record: dict[str, Any]) -> str | None:
    """The bookmark the STATE holds for the partition this record belongs to, if any."""
    for partition in (state.get("bookmarks", {}).get(stream) or {}).get("partitions") or []:
        context = partition.get("context") or {}
        if all(record.get(k) == v for k, v in context.items()):
            return partition.get("replication_key_value")
    return None


@dataclass
class Outcome:
    duplicates_full: int
    duplicates_incremental: int
    after_last_state: int  # read after the last STATE
    in_flight: int  # before it, in a partition that STATE held no bookmark for yet
    lookback: int  # before it, inside the look-back window of the partition's bookmark


def kill_and_resume(clean: Clean, emu: Emulator, tmp: Path, records: int) -> Outcome:
    read = read_until_killed(tap_command(tmp, clean.config, name="killed"), tmp, records)
    states = [i for i, m in enumerate(read) if m["type"] == "STATE"]
    last = states[-1] if states else -1
    state = read[last]["value"] if states else None
    rerun = run_tap(clean.config, state=state, name="rerun", home=tmp, parse="lenient", timeout=180)
    assert rerun.returncode == 0, rerun.stderr[-2000:]

    killed = [m for m in read if m["type"] == "RECORD"]
    union = Counter(record_key(m, clean.keys) for m in killed + rerun.records)
    # Nothing lost, nothing extra, and the content is the clean sync's.
    assert set(union) == set(clean.sequence), (
        f"missing {sorted(set(clean.sequence) - set(union))[:3]}, "
        f"extra {sorted(set(union) - set(clean.sequence))[:3]}"
    )
    for message in killed + rerun.records:
        key = record_key(message, clean.keys)
        assert json.dumps(message["record"], sort_keys=True) == clean.content[key], key

    # Where the duplicates come from.
    again = {record_key(m, clean.keys) for m in rerun.records}
    rerun_prs = {
        (m["record"]["repo_uuid"], m["record"]["id"])
        for m in rerun.records
        if m["stream"] == "pull_requests"
    }
    full = incremental = after = in_flight = lookback = 0
    for index, message in enumerate(read):
        if message["type"] != "RECORD":
            continue
        key = record_key(message, clean.keys)
        if key not in again:
            continue
        stream, record = message["stream"], message["record"]
        if stream not in clean.replication_key:
            full += 1
            continue
        incremental += 1
        if index > last:
            after += 1  # read after the last STATE: not covered, so emitted again
            continue
        bookmark = partition_bookmark(state or {}, stream, record)
        if bookmark is None:
            in_flight += 1  # the STATE did not claim this partition yet
            continue
        if stream in PR_CHILDREN and (record["repo_uuid"], record["pull_request_id"]) in rerun_prs:
            lookback += 1  # a child of a pull request re-read in the look-back window
            continue
        value = record.get(clean.replication_key[stream])
        assert value is not None, key
        window = parse_timestamp(bookmark) - LOOKBACK
        assert parse_timestamp(value) >= window, (
            f"{key}: covered by the STATE ({stream} bookmark {bookmark}) yet emitted again"
        )
        lookback += 1
    assert sum(c - 1 for c in union.values()) == full + incremental
    return Outcome(full, incremental, after, in_flight, lookback)


@pytest.mark.parametrize(("workers", "point"), [(w, i) for w, n in KILLS.items() for i in range(n)])
def test_kill_and_resume_loses_nothing(
    workers: int, point: int, emu: Emulator, catalog: dict[str, Any], tmp_path: Path
) -> None:
    clean = clean_sync(workers, emu, catalog, tmp_path)
    records = kill_points(workers, len(clean.sequence))[point]
    outcome = kill_and_resume(clean, emu, tmp_path, records)
    # The documented bound: full-table records read before the kill, the incremental
    # records read after the last STATE, and the look-back window.
    full_table_total = sum(1 for s, _ in clean.sequence if s not in clean.replication_key)
    assert outcome.duplicates_full <= full_table_total
    # STATE follows every finished partition (state_interval_seconds 0), at every worker
    # count: the workers only prefetch, the main thread writes records and STATE. A kill
    # inside a batch of pull requests or pipelines re-reads that batch, children included.
    bound = max(clean.largest_partition, clean.largest_batch)
    assert outcome.after_last_state + outcome.in_flight <= bound
    print(
        f"kill after {records} records (max_workers {workers}): "
        f"{outcome.duplicates_full} full-table + {outcome.duplicates_incremental} "
        f"incremental duplicates ({outcome.after_last_state} after the last STATE, "
        f"{outcome.in_flight} in partitions in flight, {outcome.lookback} in the look-back "
        "window)"
    )


def test_kill_points_spread_across_streams_and_repositories(
    emu: Emulator, catalog: dict[str, Any], tmp_path: Path
) -> None:
    assert sum(KILLS.values()) >= 20
    streams, repositories = set(), set()
    for workers in KILLS:
        clean = clean_sync(workers, emu, catalog, tmp_path)
        for records in kill_points(workers, len(clean.sequence)):
            stream, key = clean.sequence[records - 1]
            streams.add(stream)
            repositories.add(json.loads(key)[0] if "repo_uuid" in clean.keys[stream] else None)
    assert len(streams) >= 6, streams
    assert len(repositories - {None}) >= 2, repositories  # both with data (one is empty)


@pytest.mark.parametrize("workers", [1, 4])
def test_interrupted_pull_requests_resume_near_the_kill(
    make_emulator: Any, tmp_path: Path, workers: int
) -> None:
    """Killed in the middle of acme/api's pull requests, the rerun asks Bitbucket only for
    pull requests updated since the bookmark minus the look-back, not since start_date,
    at the default worker count too (issue 12, bug 3: worker threads' STATE was lost).

    The bookmark moves with each batch of CHILD_BATCH pull requests (their children run
    before they are written), so the kill lands inside the second batch, and the rerun
    re-makes at most one batch of children requests plus the look-back window's."""
    emu = make_emulator()
    config = api_token_config(
        emu,
        start_date=START_DATE,
        repositories=["acme/api"],
        max_workers=workers,
        state_interval_seconds=0,
    )
    catalog = catalog_selecting({"pull_requests", "pull_request_comments"})
    clean = run_tap(
        config, catalog=catalog, name="clean", home=tmp_path, parse="lenient", timeout=180
    )
    assert clean.returncode == 0, clean.stderr[-2000:]
    prs = [m for m in clean.records if m["stream"] == "pull_requests"]
    assert len(prs) > CHILD_BATCH + 2  # more than one page, and one batch
    kill_at = next(
        i
        for i, m in enumerate(clean.records, 1)
        if m["stream"] == "pull_requests" and m is prs[(CHILD_BATCH + len(prs)) // 2]
    )
    command = tap_command(tmp_path, config, catalog=catalog, name="killed")
    read = read_until_killed(command, tmp_path, kill_at)
    state = [m["value"] for m in read if m["type"] == "STATE"][-1]
    [partition] = state["bookmarks"]["pull_requests"]["partitions"]
    bookmark = partition["replication_key_value"]
    assert parse_timestamp(bookmark) > parse_timestamp(config["start_date"])

    emu.reset_log()
    rerun = run_tap(
        config,
        state=state,
        catalog=catalog,
        name="rerun",
        home=tmp_path,
        parse="lenient",
        timeout=180,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    first = next(e for e in emu.request_log if e.path == "/2.0/repositories/acme/api/pullrequests")
    q = parse_qs(first.query)["q"]
    assert q == [f"updated_on >= {format_timestamp(parse_timestamp(bookmark) - LOOKBACK)}"]
    # It resumed: the rerun re-read only the pull requests after the bookmark (and the
    # look-back window), not all of them.
    again = [m for m in rerun.records if m["stream"] == "pull_requests"]
    window = parse_timestamp(bookmark) - LOOKBACK
    assert 0 < len(again) < len(prs) // 2
    assert all(parse_timestamp(m["record"]["updated_on"]) >= window for m in again)
    read_ids = {
        m["record"]["id"] for m in read if m["type"] == "RECORD" and m["stream"] == "pull_requests"
    }
    assert {m["record"]["id"] for m in prs} == read_ids | {m["record"]["id"] for m in again}
    # The requests made again: children of pull requests the killed run had written.
    comments = re.compile(r"/2\.0/repositories/acme/api/pullrequests/(\d+)/comments")
    remade = [
        int(found[1])
        for e in emu.request_log
        if (found := comments.fullmatch(e.path)) and int(found[1]) in read_ids
    ]
    in_window = sum(
        window <= parse_timestamp(m["record"]["updated_on"]) <= parse_timestamp(bookmark)
        for m in prs
    )
    assert len(remade) <= CHILD_BATCH + in_window, (len(remade), in_window)
