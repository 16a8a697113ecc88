"""Property tests: hostile --catalog (issue 16).

The base is the tap's own catalog with a few streams selected. The cases add streams the
tap does not have, select any subset (children without their parents included), break
an entry's metadata, or remove or retype properties of its schema. Each case runs the tap
in-process against the session emulator and must keep the invariant of
tests/harness/badinput.py: exit 0 with valid records (and records of selected streams
only), or one line naming the catalog entry.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.emulator import Emulator
from tests.fuzz_strategies import JSON, ODD_TEXT, mutated
from tests.harness import FAST, api_token_config, discovered_catalog, select_only
from tests.harness.badinput import Setup, invariant_problems
from tests.harness.inprocess import run_in_process

REPO = "globex/api-fork"
#: Streams kept in the base catalog: a chain of parents and children of every depth.
KEPT = [
    "workspaces",
    "projects",
    "repositories",
    "pull_requests",
    "pull_request_comments",
    "pipelines",
    "pipeline_steps",
    "branches",
]
CULPRIT = r"catalog|stream"



@pytest.fixture(scope="module")
def setup(emulator: Emulator) -> Setup:
    config = api_token_config(
        emulator, workspaces=["globex"], repositories=[REPO], max_workers=1, **FAST
    )
    catalog = discovered_catalog()
    catalog["streams"] = [e for e in catalog["streams"] if e["tap_stream_id"] in KEPT]
    return Setup(config=config, catalog=select_only(catalog, KEPT))


def _run(setup: Setup, catalog: Any) -> Any:
    result = run_in_process(setup["config"], catalog=catalog, timeout=30)
    problems = invariant_problems(result, CULPRIT)
    assert not problems, "\n".join(problems)
    return result


def _entry(catalog: dict[str, Any], stream: str) -> dict[str, Any]:
    return next(e for e in catalog["streams"] if e["tap_stream_id"] == stream)


@given(selected=st.sets(st.sampled_from(KEPT)))
def test_any_selection_emits_the_selected_streams_only(setup: Setup, selected: set[str]) -> None:
    """A child selected without its parent is synced through its unselected parent."""
    catalog = select_only(copy.deepcopy(setup["catalog"]), selected)
    result = _run(setup, catalog)
    if result.returncode == 0:
        assert set(result.records_by_stream) <= selected


@given(
    name=ODD_TEXT,
    entry=st.one_of(JSON, st.fixed_dictionaries({"tap_stream_id": ODD_TEXT, "schema": JSON})),
)
def test_a_stream_the_tap_does_not_have(setup: Setup, name: str, entry: Any) -> None:
    catalog = copy.deepcopy(setup["catalog"])
    unknown = copy.deepcopy(_entry(catalog, "branches"))
    unknown["tap_stream_id"] = unknown["stream"] = f"no_such_{name}"
    catalog["streams"].extend([unknown, entry])
    _run(setup, catalog)


@given(stream=st.sampled_from(KEPT), data=st.data())
def test_broken_metadata(setup: Setup, stream: str, data: st.DataObject) -> None:
    catalog = copy.deepcopy(setup["catalog"])
    entry = _entry(catalog, stream)
    root = next(m for m in entry["metadata"] if not m["breadcrumb"])
    entry["metadata"] = data.draw(
        st.one_of(
            mutated([root, *entry["metadata"][1:4]]),
            st.builds(lambda v: [{**root, "metadata": v}], JSON),
            st.builds(
                lambda k, v: [{**root, "metadata": {**root["metadata"], k: v}}],
                st.sampled_from(
                    [
                        "selected",
                        "replication-method",
                        "replication-key",
                        "table-key-properties",
                        "inclusion",
                        "selected-by-default",
                        "forced-replication-method",
                    ]
                ),
                JSON,
            ),
        )
    )
    _run(setup, catalog)


@given(stream=st.sampled_from(KEPT), data=st.data())
def test_removed_or_retyped_properties(setup: Setup, stream: str, data: st.DataObject) -> None:
    catalog = copy.deepcopy(setup["catalog"])
    entry = _entry(catalog, stream)
    properties = entry["schema"]["properties"]
    names = data.draw(st.lists(st.sampled_from(sorted(properties)), min_size=1, max_size=3))
    for name in names:
        if data.draw(st.booleans()):
            del properties[name]
        else:
            properties[name] = data.draw(JSON)
    _run(setup, catalog)


@given(catalog=st.one_of(JSON, st.builds(lambda v: {"streams": v}, JSON)))
def test_a_catalog_of_any_shape(setup: Setup, catalog: Any) -> None:
    _run(setup, catalog)
