"""Property tests: hostile server answers, from the emulator (issue 16).

Two kinds of case, each a whole sync of one repository, in-process against a module
emulator whose answers are changed for the case:

* **payload drift**: one field of one stream's objects is removed, or replaced by null,
  a value of another type, an unknown enum value, an empty object or list (the
  emulator's FieldDrift, applied to every object that stream's endpoint serves);
* **page faults**: one stream's endpoint answers an HTML page or a JSON error envelope
  with 200, an empty page that still has a `next`, a page far larger than `pagelen`,
  or an HTML 502 (once, twice, or every time), or the server's `next` links loop back
  to page 1.

Every case keeps the invariant of tests/harness/badinput.py (exit 0 with every record
valid or named by a WARNING, or one line naming the endpoint or stream and saying what
to do; never a traceback), and a run that exits 0 has synced as much as the clean run
did, unless a WARNING names the stream that has less.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tap_bitbucket.schemas import load_schema
from tap_bitbucket.streams import STREAM_TYPES
from tests.emulator import Emulator, EmulatorConfig, FaultRule, FieldDrift
from tests.fuzz_strategies import JSON, SCALARS
from tests.harness import TapResult, catalog_selecting
from tests.harness.badinput import Setup, invariant_problems, one_repository_config
from tests.harness.inprocess import run_in_process

REPO = "globex/api-fork"
STREAMS = {
    "workspaces",
    "workspace_members",
    "projects",
    "repositories",
    "branches",
    "commits",
    "pull_requests",
    "pull_request_comments",
    "pull_request_activity",
    "pull_request_commits",
    "pipelines",
    "pipeline_steps",
    "environments",
    "deployments",
    "branch_restrictions",
}
CLASSES = {cls.name: cls for cls in STREAM_TYPES if cls.name in STREAMS}
PAGE_FAULTS = ("html_200", "error_200", "empty_page", "oversized_page", "502")


def endpoint_regex(stream: str) -> str:
    """The request paths of a stream's endpoint (its `path`, placeholders as segments)."""
    path = re.escape(CLASSES[stream].path)
    return re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", path) + "$"


def field_paths(stream: str) -> list[str]:
    """The stream's fields and the fields of its object fields (dotted)."""
    schema = CLASSES[stream].schema_name or stream
    properties = load_schema(schema)["properties"]
    paths = sorted(properties)
    for name, sub in properties.items():
        paths += [f"{name}.{child}" for child in sorted(sub.get("properties", {}))]
    return paths



@pytest.fixture(scope="module")
def setup() -> Any:
    with Emulator(EmulatorConfig()) as emu:
        config = one_repository_config(emu, REPO)
        catalog = catalog_selecting(STREAMS)
        clean = run_in_process(config, catalog=catalog)
        assert clean.returncode == 0, clean.stderr[-2000:]
        counts = Counter(m["stream"] for m in clean.records)
        assert set(counts) == STREAMS, STREAMS - set(counts)
        yield Setup(emu=emu, config=config, catalog=catalog, counts=counts)


def _run(setup: Setup) -> TapResult:
    return run_in_process(setup["config"], catalog=setup["catalog"])


def _less_without_warning(setup: Setup, result: TapResult) -> list[str]:
    """Streams with fewer records than the clean run's that no WARNING names."""
    if result.returncode != 0:
        return []
    counts = Counter(m["stream"] for m in result.records)
    warnings = "\n".join(result.warning_lines())
    return [
        f"{stream}: {counts[stream]} records, the clean run had {n}, and no WARNING says why"
        for stream, n in setup["counts"].items()
        if counts[stream] < n and not any(f"'{name}'" in warnings for name in _lineage(stream))
    ]


def _lineage(stream: str) -> list[str]:
    """The stream and its ancestors: a parent skipped for a repository explains why its
    children have nothing there."""
    names = []
    cls: Any = next(c for c in STREAM_TYPES if c.name == stream)
    while cls is not None:
        names.append(cls.name)
        cls = cls.parent_stream_type
    return names


REPLACEMENTS = st.one_of(
    st.none(),
    st.just("UNKNOWN_VALUE"),
    st.just({}),
    st.just([]),
    SCALARS,
    JSON,
)


#: Each case is one small sync (about 0.3 s in-process): three times the profile's count.
EXAMPLES = settings(max_examples=min(settings.default.max_examples * 3, 400))


@EXAMPLES
@given(
    stream=st.sampled_from(sorted(STREAMS)),
    data=st.data(),
    remove=st.booleans(),
    value=REPLACEMENTS,
)
def test_a_drifted_payload_keeps_the_invariant(
    setup: Setup, stream: str, data: st.DataObject, remove: bool, value: Any
) -> None:
    field = data.draw(st.sampled_from(field_paths(stream)), label="field")
    drift = FieldDrift(
        endpoint_regex(stream), add={} if remove else {field: value}, remove=[field] if remove else []
    )
    emu: Emulator = setup["emu"]
    emu.set_field_drift([drift])
    try:
        result = _run(setup)
    finally:
        emu.set_field_drift([])
    assert not emu.internal_errors, emu.internal_errors[-1]
    culprit = rf"\b{stream}\b|/2\.0/\S+"
    problems = invariant_problems(result, culprit) + _less_without_warning(setup, result)
    assert not problems, problems


@EXAMPLES
@given(
    stream=st.sampled_from(sorted(STREAMS)),
    kind=st.sampled_from((*PAGE_FAULTS, "next_loop_back")),
    count=st.sampled_from([1, 2, None]),
)
def test_a_hostile_page_keeps_the_invariant(
    setup: Setup, stream: str, kind: str, count: int | None
) -> None:
    emu: Emulator = setup["emu"]
    if kind == "next_loop_back":
        emu.configure(next_loop_back=True)
    else:
        emu.add_fault(FaultRule(kind, path_regex=endpoint_regex(stream), count=count))
    try:
        result = _run(setup)
    finally:
        emu.clear_faults()
        emu.configure(next_loop_back=False)
    assert not emu.internal_errors, emu.internal_errors[-1]
    culprit = rf"\b{stream}\b|/2\.0/\S+"
    problems = invariant_problems(result, culprit) + _less_without_warning(setup, result)
    assert not problems, problems
    followed = kind == "oversized_page" or (kind == "empty_page" and count is not None)
    retried = kind in ("html_200", "error_200", "502") and count == 1
    if followed or retried:
        # max_retries is 2: one bad answer is retried; pages are followed. Nothing lost.
        assert result.returncode == 0, result.stderr[-2000:]
