"""The record check (tap_bitbucket/record_check.py): every emitted record is valid
against its stream's SCHEMA, or is named by a WARNING and emitted as sent (issue 16)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tap_bitbucket.record_check import (
    NAMED_PER_STREAM,
    StreamCheck,
    compile_fast,
    full_validator,
)
from tap_bitbucket.schemas import load_schema
from tap_bitbucket.streams import STREAM_TYPES
from tests.emulator import Emulator, EmulatorConfig, FieldDrift
from tests.fuzz_strategies import JSON, ODD_DATES, SCALARS
from tests.harness import Scope, api_token_config, catalog_selecting, expected_rows, run_tap
from tests.harness.badinput import invariant_problems

SCHEMAS = {cls.name: load_schema(cls.schema_name or cls.name) for cls in STREAM_TYPES}


def _subschemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Every distinct schema node: the closed `links` objects sit four levels down,
    deeper than a value drawn from the root reaches."""
    found: dict[str, dict[str, Any]] = {}
    todo = [schema]
    while todo:
        node = todo.pop()
        found.setdefault(json.dumps(node, sort_keys=True), node)
        todo.extend(node.get("properties", {}).values())
        if isinstance(node.get("items"), dict):
            todo.append(node["items"])
    return list(found.values())


NODES = {name: _subschemas(schema) for name, schema in SCHEMAS.items()}


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def near(schema: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values close to `schema`: mostly of an allowed type, with a few of the schema's
    own properties (and now and then an unknown one), sometimes anything at all."""
    if not isinstance(schema, dict):
        return JSON
    options: list[st.SearchStrategy[Any]] = [SCALARS]
    kinds = _types(schema)
    if "null" in kinds:
        options.append(st.none())
    if "string" in kinds:
        options.append(ODD_DATES if schema.get("format") == "date-time" else st.text(max_size=5))
        if schema.get("format") == "date-time":
            options.append(
                st.sampled_from(["2026-01-02T03:04:05.123456+00:00", "2026-01-02T03:04:05Z"])
            )
    if "integer" in kinds:
        options.append(st.sampled_from([0, 7, 2.0, 2.5, True]))
    if "array" in kinds and depth < 4:
        options.append(st.lists(near(schema.get("items", {}), depth + 1), max_size=2))
    if "object" in kinds and depth < 4:
        properties = schema.get("properties", {})
        required = list(schema.get("required", []))

        def build(drawn: tuple[list[str], bool, bool]) -> st.SearchStrategy[dict[str, Any]]:
            chosen, with_required, with_unknown = drawn
            keys = list(dict.fromkeys([*(required if with_required else []), *chosen]))
            fields = {k: near(properties[k], depth + 1) for k in keys}
            if with_unknown:
                fields["unknown_field"] = JSON
            return st.fixed_dictionaries(fields)

        names = st.lists(st.sampled_from(sorted(properties) or ["id"]), max_size=4, unique=True)
        chosen = names.map(lambda ks: [k for k in ks if k in properties])
        options.append(st.tuples(chosen, st.booleans(), st.booleans()).flatmap(build))
    # The typed options first: hypothesis shrinks towards them.
    return st.one_of(*reversed(options))


@pytest.mark.unit
@pytest.mark.parametrize("stream", sorted(SCHEMAS))
@settings(max_examples=max(settings.default.max_examples * 5, 20))
@given(data=st.data())
def test_the_fast_check_agrees_with_jsonschema(stream: str, data: st.DataObject) -> None:
    # The stream's schema, or any node of it (each node is a schema of its own).
    schema = data.draw(st.one_of(st.just(SCHEMAS[stream]), st.sampled_from(NODES[stream])))
    fast = compile_fast(schema)
    assert fast is not None, f"the fast check does not cover {stream}'s schema"
    record = data.draw(near(schema))
    assert fast(record) == full_validator(schema).is_valid(record), json.dumps(record)[:500]


@pytest.mark.unit
@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"state": {"enum": ["OPEN"]}}},
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        {"type": "array", "items": [{"type": "string"}]},
        {"type": "string", "format": "uri"},
        {"type": "decimal"},
    ],
)
def test_other_keywords_leave_the_check_to_jsonschema(schema: dict[str, Any]) -> None:
    """A stream map or a catalog can write any schema: the fast check steps aside."""
    assert compile_fast(schema) is None


def _check(caplog: pytest.LogCaptureFixture, records: list[dict[str, Any]]) -> StreamCheck:
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "state": {"enum": ["OPEN", "MERGED"]},
            "author": {
                "type": ["object", "null"],
                "properties": {"uuid": {"type": "string"}},
                "additionalProperties": False,
            },
            "created_on": {"type": "string", "format": "date-time"},
        },
    }
    check = StreamCheck("pull_requests", schema, ["id"])
    with caplog.at_level(logging.WARNING, logger="tap_bitbucket"):
        for record in records:
            check.check(record)
        check.summary()
    return check


@pytest.mark.unit
def test_the_warning_names_stream_key_and_field_but_never_the_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "s3cr3t-value-nobody-wants-logged"
    _check(
        caplog,
        [
            {"id": 1, "author": {"uuid": "{a}"}, "created_on": "2026-01-01T00:00:00Z"},
            {"id": 2, "author": secret},
            {"id": 3, "author": {"uuid": "{a}", "nickname": secret}},
            {"id": 4, "created_on": secret, "state": secret},
        ],
    )
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert all("stream 'pull_requests'" in line and "emitted as sent" in line for line in lines)
    assert (
        '{"id": 2}' in lines[0] and "field 'author' should be object or null, is string" in lines[0]
    )
    assert '{"id": 3}' in lines[1] and "field 'author.nickname' is not in the schema" in lines[1]
    assert "field 'created_on' is not a valid date-time" in lines[2]
    assert "field 'state' fails 'enum'" in lines[2]
    assert not any(secret in line for line in lines)


@pytest.mark.unit
def test_invalid_records_past_the_cap_are_counted_in_one_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    total = NAMED_PER_STREAM + 7
    check = _check(caplog, [{"id": n, "author": n} for n in range(total)])
    lines = [r.getMessage() for r in caplog.records]
    assert check.invalid == total
    assert len(lines) == NAMED_PER_STREAM + 1
    assert lines[-1].startswith(f"Stream 'pull_requests': {total} records did not match")
    assert "(fields: author)" in lines[-1]


# ------------------------------------------------------------ against the emulator

PR_LIST = r"/pullrequests$"


def test_a_drifted_field_is_warned_and_emitted_as_sent() -> None:
    """Bitbucket sending a string where the schema has an object, and a new field in a
    closed nested object: every record still comes out, as sent, and each is named."""
    drift = FieldDrift(PR_LIST, add={"author": "somebody", "summary.lang": "en"})
    with Emulator(EmulatorConfig(field_drift=[drift])) as emu:
        config = api_token_config(emu, workspaces=["acme"], repositories=["acme/api"])
        scope = Scope(workspaces=("acme",), repositories=lambda name: name == "acme/api")
        expected = expected_rows(emu.dataset, scope, ["pull_requests"])["pull_requests"]
        result = run_tap(config, catalog=catalog_selecting({"pull_requests"}))
    assert result.returncode == 0, result.stderr[-2000:]
    assert not invariant_problems(result, "pull_requests")
    records = result.records_by_stream["pull_requests"]
    assert records and all(r["author"] == "somebody" for r in records)
    assert all(r["summary"]["lang"] == "en" for r in records)
    assert sorted(r["id"] for r in records) == sorted(row["id"] for row in expected)
    named = [
        line
        for line in result.warning_lines()
        if re.search(r"Record of stream 'pull_requests' with key \{.*\"id\": \d+", line)
    ]
    assert len(named) == min(len(records), NAMED_PER_STREAM)
    assert all("field 'author'" in line and "field 'summary.lang'" in line for line in named)
