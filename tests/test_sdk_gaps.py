"""Pins for tap_bitbucket/sdk_gaps.py: each fails when an SDK upgrade changes what the
work-around relies on (then the work-around can likely go)."""

from __future__ import annotations

import logging

import pytest
from singer_sdk.streams.core import Stream

from tap_bitbucket.sdk_gaps import SDK_STATE_LOGGER, UNSORTED_WARNING, quiet_unsorted_warning
from tap_bitbucket.streams import STREAM_TYPES
from tap_bitbucket.tap import TapBitbucket


def _unsorted_stream() -> Stream:
    tap = TapBitbucket(config={}, validate_config=False, setup_mapper=False)
    return tap.streams["commits"]


@pytest.mark.unit
def test_the_sdk_still_warns_per_unsorted_partition(caplog: pytest.LogCaptureFixture) -> None:
    """The message text and the logger the filter targets are the SDK's."""
    stream = _unsorted_stream()
    assert stream.is_sorted is False
    logger = logging.getLogger(SDK_STATE_LOGGER)
    ours = [f for f in logger.filters if type(f).__name__ == "_DropUnsortedWarning"]
    for found in ours:  # another test may have installed it: measure the SDK alone
        logger.removeFilter(found)
    with caplog.at_level(logging.WARNING, logger=SDK_STATE_LOGGER):
        for repo in ("a", "b"):
            context = {"workspace_slug": "w", "repo_slug": repo, "repo_uuid": repo}
            stream.state_manager.increment_state(
                {"date": "2026-01-01T00:00:00+00:00"}, context=context, replication_key="date"
            )
    for found in ours:
        logger.addFilter(found)
    warned = [r for r in caplog.records if str(r.msg).startswith(UNSORTED_WARNING)]
    assert [r.name for r in warned] == [SDK_STATE_LOGGER, SDK_STATE_LOGGER]


@pytest.mark.unit
def test_the_filter_drops_only_that_warning() -> None:
    quiet_unsorted_warning()
    quiet_unsorted_warning()  # idempotent
    logger = logging.getLogger(SDK_STATE_LOGGER)
    assert len([f for f in logger.filters if type(f).__name__ == "_DropUnsortedWarning"]) == 1
    dropped = logger.makeRecord(SDK_STATE_LOGGER, logging.WARNING, "f", 1, UNSORTED_WARNING, (), None)
    kept = logger.makeRecord(SDK_STATE_LOGGER, logging.WARNING, "f", 1, "other", (), None)
    assert not logger.filter(dropped)
    assert logger.filter(kept)


@pytest.mark.unit
def test_only_newest_first_streams_are_unsorted() -> None:
    """The filter is only honest for streams whose partition is one repository."""
    unsorted = {c.name for c in STREAM_TYPES if c.replication_key and not c.is_sorted}
    assert unsorted <= {
        "commits",
        "pull_request_activity",
        "pipelines",
        "pull_request_comments",
        "pull_request_commits",
        "pull_request_tasks",
    }
