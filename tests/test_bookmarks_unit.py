"""Bookmarks: where each state partition starts, the tap's own state keys, and the
checks on a --state input (tap_bitbucket/streams/bookmarks.py, the only code that knows
the state's keys)."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from tap_bitbucket.errors import StateError
from tap_bitbucket.settings import Settings
from tap_bitbucket.streams import bookmarks
from tap_bitbucket.streams.bookmarks import Bookmarks, partition_context
from tap_bitbucket.streams.state_check import validate_state
from tap_bitbucket.timestamps import format_timestamp, parse_timestamp

pytestmark = pytest.mark.unit

REPO = {"workspace_slug": "acme", "repo_slug": "api", "repo_uuid": "{r-1}"}
OTHER = {"workspace_slug": "acme", "repo_slug": "web", "repo_uuid": "{r-2}"}
OLD, MID, NEW = (
    "2024-01-01T00:00:00+00:00",
    "2024-03-01T00:00:00+00:00",
    "2024-06-01T00:00:00+00:00",
)


def state(stream: str, *partitions: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    return {
        "bookmarks": {
            stream: {"partitions": [{"context": ctx, **values} for ctx, values in partitions]}
        }
    }


def marks(value: dict[str, Any], **config: Any) -> Bookmarks:
    return Bookmarks(value, Settings.from_config(config))


def test_partition_context_follows_the_partitioning_keys() -> None:
    context = {**REPO, "pull_request_id": 7}
    assert partition_context(context, None) == context
    assert partition_context(context, ["repo_uuid"]) == {"repo_uuid": "{r-1}"}
    assert partition_context(None, ["repo_uuid"]) == {}
    assert partition_context(context, ["absent"]) == {}


def test_start_is_the_partitions_bookmark() -> None:
    b = marks(state("pull_requests", (REPO, {"replication_key_value": MID})))
    assert b.start("pull_requests", REPO) == parse_timestamp(MID)
    assert b.start("pull_requests", OTHER) is None  # another partition
    assert b.start("commits", REPO) is None  # another stream


def test_start_date_wins_only_when_later() -> None:
    value = state("pull_requests", (REPO, {"replication_key_value": MID}))
    assert marks(value, start_date=OLD).start("pull_requests", REPO) == parse_timestamp(MID)
    assert marks(value, start_date=NEW).start("pull_requests", REPO) == parse_timestamp(NEW)
    assert marks({}, start_date=OLD).start("pull_requests", REPO) == parse_timestamp(OLD)


def test_high_water_counts_as_a_bookmark() -> None:
    """Re-emitting a finished pipeline moves the SDK's bookmark back: the later wins."""
    value = state("pipelines", (REPO, {"replication_key_value": OLD, bookmarks.HIGH_WATER: NEW}))
    assert marks(value).start("pipelines", REPO) == parse_timestamp(NEW)


@pytest.mark.parametrize("lookback", [0, 300, 7200])
def test_since_is_the_start_minus_the_lookback(lookback: int) -> None:
    value = state("pull_requests", (REPO, {"replication_key_value": MID}))
    since = marks(value, lookback_seconds=lookback).since("pull_requests", REPO)
    assert since == format_timestamp(parse_timestamp(MID) - timedelta(seconds=lookback))
    assert marks({}).since("pull_requests", REPO) is None


def test_the_taps_own_keys_are_read_back() -> None:
    running = {"{p-1}": OLD}
    value = state(
        "pipelines",
        (REPO, {bookmarks.RUNNING: running, bookmarks.RECENT_KEYS: ["7@" + MID]}),
    )
    b = marks(value)
    assert b.running("pipelines", REPO) == running
    assert b.recent_keys("pipelines", REPO) == {"7@" + MID}
    assert b.running("pipelines", OTHER) == {} and b.recent_keys("pipelines", OTHER) == set()


def test_malformed_own_keys_read_as_empty() -> None:
    value = state("pipelines", (REPO, {bookmarks.RUNNING: ["x"], bookmarks.RECENT_KEYS: "x"}))
    assert marks(value).running("pipelines", REPO) == {}
    assert marks(value).recent_keys("pipelines", REPO) == set()


def test_children_since_of_an_interrupted_run_wins() -> None:
    interrupted = state(
        "pull_requests",
        (REPO, {"replication_key_value": NEW, bookmarks.CHILDREN_SINCE: OLD}),
    )
    assert marks(interrupted).children_since("pull_requests", REPO) == OLD
    finished = state("pull_requests", (REPO, {"replication_key_value": NEW}))
    assert marks(finished).children_since("pull_requests", REPO) == parse_timestamp(NEW).isoformat()
    never = state("pull_requests", (REPO, {bookmarks.CHILDREN_SINCE: None}))
    assert marks(never).children_since("pull_requests", REPO) is None


def test_a_snapshot_of_the_state_at_the_first_read() -> None:
    """Plans for the next repositories ask what their syncs will ask, even after the live
    state moved on."""
    value = state("pull_requests", (REPO, {"replication_key_value": MID}))
    b = marks(value)
    assert b.start("pull_requests", REPO) == parse_timestamp(MID)
    value["bookmarks"]["pull_requests"]["partitions"][0]["replication_key_value"] = NEW
    assert b.start("pull_requests", REPO) == parse_timestamp(MID)


def test_stream_level_bookmarks_are_the_empty_context() -> None:
    b = marks({"bookmarks": {"projects": {"replication_key_value": MID}}})
    assert b.start("projects", {}) == parse_timestamp(MID)


def test_writing_the_pull_request_keys() -> None:
    live: dict[str, Any] = {}
    bookmarks.begin_pull_requests(live, OLD)
    bookmarks.begin_pull_requests(live, MID)  # a resumed run keeps the first
    assert live == {bookmarks.CHILDREN_SINCE: OLD}
    bookmarks.end_pull_requests(live, ["7@" + MID])
    assert live == {bookmarks.RECENT_KEYS: ["7@" + MID]}
    bookmarks.end_pull_requests(live, [])
    assert live == {bookmarks.RECENT_KEYS: ["7@" + MID]}


def test_writing_the_pipeline_keys() -> None:
    live: dict[str, Any] = {}
    bookmarks.end_pipelines(live, {"{p}": OLD}, parse_timestamp(NEW))
    assert live == {bookmarks.RUNNING: {"{p}": OLD}, bookmarks.HIGH_WATER: NEW}
    bookmarks.end_pipelines(live, {}, None)
    assert live == {bookmarks.RUNNING: {}, bookmarks.HIGH_WATER: NEW}


def test_a_state_the_tap_wrote_is_valid() -> None:
    value = state("pull_requests", (REPO, {"replication_key_value": MID}))
    value["bookmarks"]["unknown_stream"] = {"anything": 1}
    before = copy.deepcopy(value)
    validate_state(value)
    validate_state({})
    assert value == before


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ([], "must be a JSON object"),
        ({"bookmarks": []}, "'bookmarks' must be an object"),
        ({"bookmarks": {"commits": 3}}, "'bookmarks.commits' must be an object"),
        ({"bookmarks": {"commits": {"partitions": {}}}}, "'bookmarks.commits.partitions'"),
        ({"bookmarks": {"commits": {"partitions": [{}]}}}, "'bookmarks.commits.partitions[0]'"),
        (
            state("commits", (REPO, {"replication_key_value": "yesterday"})),
            "'bookmarks.commits.partitions[0].replication_key_value' is not a date-time",
        ),
        (
            {"bookmarks": {"projects": {"replication_key_value": "soon"}}},
            "'bookmarks.projects.replication_key_value'",
        ),
    ],
)
def test_a_broken_state_is_refused_naming_where(value: Any, where: str) -> None:
    with pytest.raises(StateError) as info:
        validate_state(value)
    message = str(info.value)
    assert where in message and "\n" not in message
    assert message.startswith("Invalid state: ") and "start_date" in message
