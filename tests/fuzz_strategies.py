"""Hypothesis strategies shared by the property tests of bad input (tests/test_fuzz_*.py).

Each strategy draws hostile JSON: the values nobody picks by hand (wrong types, huge and
tiny numbers, malformed dates, odd unicode, empty containers).
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

#: Dates that parse but sit at the edges, and strings that look like dates but are not.
ODD_DATES = st.sampled_from(
    [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59.999999-23:59",
        "2024-02-30T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-01-01T25:61:61Z",
        "2024-01-01",
        "20240101T000000Z",
        "2024-01-01T00:00:00.123456789Z",
        "2024-01-01T00:00:00+99:00",
        "1969-12-31T23:59:59Z",
        "yesterday",
        "",
        " ",
        "NaN",
        "-1",
        "1e309",
    ]
)

ODD_TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["\x00", "\u202e", "\ud7ff\ufffd", "é" * 3, "名前", "🙂", "a/b", "*", "[", "../.."]
    ),
    st.text(alphabet=st.characters(min_codepoint=0x80), max_size=8),
)

NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**63, -(2**63), 10**18, 10**300]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.5, -0.5, 1e-300, 1e300, 1e308]),
)

SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, ODD_TEXT, ODD_DATES)

#: Any JSON value, shallow (deep nesting is not what these tests look for).
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.one_of(ODD_TEXT, st.sampled_from(["context", "partitions"])), inner, max_size=3
        ),
    ),
    max_leaves=6,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into `value` (dict keys and list indexes), the root included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(paths(item, (*prefix, index)))
    return found


@st.composite
def mutated(draw: st.DrawFn, base: Any, *, max_changes: int = 3) -> Any:
    """`base` with one to `max_changes` changes at drawn places: a value replaced by a
    hostile one, a key or item removed, or a hostile key added."""
    value = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_changes))):
        where = draw(st.sampled_from(paths(value)))
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if not where:
            if action == "replace":
                return draw(JSON)
            continue
        parent = value
        for step in where[:-1]:
            parent = parent[step]
        last = where[-1]
        if action == "replace":
            parent[last] = draw(JSON)
        elif action == "remove":
            del parent[last]
        else:
            target = parent[last]
            if isinstance(target, dict):
                target[draw(ODD_TEXT)] = draw(JSON)
            elif isinstance(target, list):
                target.append(draw(JSON))
    return value
