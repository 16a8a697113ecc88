"""Property tests: hostile --state (issue 16).

The base is a real state (a full sync of one small repository); the cases change it at
drawn places (wrong types at every level, removed keys, hostile keys), replace a stream's
bookmark, add foreign or partial partitions, or are the shapes older versions of the tap
and other Singer taps wrote. Each case runs the tap in-process against the session
emulator, incrementally from that state, and must keep the invariant of
tests/harness/badinput.py: exit 0 with valid records, or one line naming the state.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.emulator import Emulator
from tests.fuzz_strategies import JSON, ODD_DATES, ODD_TEXT, SCALARS, mutated
from tests.harness import START_DATE, api_token_config, catalog_selecting
from tests.harness.badinput import Setup, invariant_problems
from tests.harness.inprocess import run_in_process

#: Streams whose partitions carry every key the tap writes (bookmarks.py): the SDK's
#: replication key, recent_keys, running/high_water, refreshed_at, repo_updated_on, resume_at.
STREAMS = {
    "workspaces",
    "projects",
    "repositories",
    "pull_requests",
    "pull_request_comments",
    "pipelines",
    "branches",
    "commits",
    "branch_restrictions",
}
REPO = "globex/api-fork"
#: What the one error line of a refused state must name.
CULPRIT = r"[Ss]tate"



@pytest.fixture(scope="module")
def setup(emulator: Emulator) -> Setup:
    config = api_token_config(
        emulator, workspaces=["globex"], repositories=[REPO], start_date=START_DATE, max_workers=1
    )
    catalog = catalog_selecting(STREAMS)
    first = run_in_process(config, catalog=catalog)
    assert first.returncode == 0, first.stderr[-2000:]
    state = first.last_state
    assert state and set(state["bookmarks"]) >= STREAMS - {"workspaces"}
    return Setup(config=config, catalog=catalog, state=state)


def _run(setup: dict[str, Any], state: Any) -> None:
    result = run_in_process(setup["config"], state=state, catalog=setup["catalog"])
    problems = invariant_problems(result, CULPRIT)
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ the generated cases


@given(data=st.data())
def test_a_state_changed_anywhere(setup: dict[str, Any], data: st.DataObject) -> None:
    _run(setup, data.draw(mutated(setup["state"])))


@given(stream=st.sampled_from(sorted(STREAMS)), value=JSON)
def test_a_stream_bookmark_of_any_shape(setup: dict[str, Any], stream: str, value: Any) -> None:
    state = copy.deepcopy(setup["state"])
    state["bookmarks"][stream] = value
    _run(setup, state)


KEYS = st.sampled_from(
    [
        "replication_key_value",
        "replication_key",
        "high_water",
        "running",
        "recent_keys",
        "children_since",
        "refreshed_at",
        "repo_updated_on",
        "resume_at",
        "progress_markers",
        "starting_replication_value",
        "replication_key_signpost",
        "context",
    ]
)


@given(
    stream=st.sampled_from(sorted(STREAMS - {"workspaces"})),
    key=KEYS,
    value=st.one_of(SCALARS, ODD_DATES, JSON, st.text(min_size=5000, max_size=6000)),
)
def test_a_known_key_with_a_bad_value(
    setup: dict[str, Any], stream: str, key: str, value: Any
) -> None:
    state = copy.deepcopy(setup["state"])
    state["bookmarks"][stream]["partitions"][0][key] = value
    _run(setup, state)


CONTEXT_KEYS = st.sampled_from(
    ["workspace_slug", "workspace_uuid", "repo_slug", "repo_uuid", "project_key", "pr_id"]
)


@given(
    stream=st.sampled_from(sorted(STREAMS - {"workspaces"})),
    context=st.dictionaries(CONTEXT_KEYS, st.one_of(ODD_TEXT, SCALARS), max_size=4),
    mark=st.one_of(st.none(), ODD_DATES),
)
def test_a_foreign_or_partial_partition(
    setup: dict[str, Any], stream: str, context: dict[str, Any], mark: Any
) -> None:
    state = copy.deepcopy(setup["state"])
    partition: dict[str, Any] = {"context": context}
    if mark is not None:
        partition["replication_key_value"] = mark
    state["bookmarks"][stream]["partitions"].append(partition)
    _run(setup, state)


def _older_shapes(state: dict[str, Any]) -> list[Any]:
    """States as older versions of the tap (and plain Singer taps) wrote them."""
    prs = state["bookmarks"]["pull_requests"]["partitions"][0]
    repo = prs["context"]
    mark = prs["replication_key_value"]
    return [
        # before the redesign: PR children partitioned per pull request
        {
            "bookmarks": {
                "pull_request_comments": {
                    "partitions": [
                        {
                            "context": {**repo, "pr_id": 3},
                            "replication_key": "updated_on",
                            "replication_key_value": mark,
                        }
                    ]
                }
            }
        },
        # an interrupted run of an older SDK: progress markers and a signpost
        {
            "bookmarks": {
                "pull_requests": {
                    "partitions": [
                        {
                            "context": repo,
                            "replication_key_signpost": mark,
                            "progress_markers": {
                                "Note": "Progress is not resumable if interrupted.",
                                "replication_key": "updated_on",
                                "replication_key_value": mark,
                            },
                        }
                    ]
                }
            }
        },
        # a plain Singer tap's flat bookmark, and `currently_syncing`
        {
            "currently_syncing": "pull_requests",
            "bookmarks": {"pull_requests": {"updated_on": mark}},
        },
        # before scheduled runs: no refreshed_at / repo_updated_on / high_water
        {
            "bookmarks": {
                "pipelines": {
                    "partitions": [
                        {
                            "context": repo,
                            "replication_key": "created_on",
                            "replication_key_value": mark,
                            "running": {},
                        }
                    ]
                }
            }
        },
        {"bookmarks": {}},
        {},
    ]


@given(index=st.integers(0, 5), extra=st.one_of(st.none(), mutated({"x": 1}, max_changes=1)))
def test_a_state_of_an_older_version(setup: dict[str, Any], index: int, extra: Any) -> None:
    state = _older_shapes(setup["state"])[index]
    if extra is not None:
        state = {**state, "legacy": extra}
    _run(setup, state)
