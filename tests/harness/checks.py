"""Checks on what the tap emitted: walking values, schema validation, keys, comparing
records with the ground truth (tests/harness/truth.py) field by field.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from jsonschema import Draft7Validator, FormatChecker

#: Key of an expected row that holds the object as the emulator serves it.
SOURCE = "_source"


def walk(value: Any) -> Iterator[tuple[Any, Any]]:
    """(key, value) of every mapping entry at any depth (key None for list items)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield None, v
            yield from walk(v)


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    for _, v in walk(value):
        if isinstance(v, str):
            yield v


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$")
#: Any timestamp-looking string with more than microsecond precision.
NANO_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7,}")


def strict_date_time(value: object) -> bool:
    """RFC 3339 `date-time` with at most 6 fractional digits (what every target parses)."""
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return True


def record_validator(schema: dict[str, Any]) -> Draft7Validator:
    checker = FormatChecker(formats=())
    checker.checks("date-time")(strict_date_time)
    return Draft7Validator(schema, format_checker=checker)


def schema_errors(
    schema: dict[str, Any], records: list[dict[str, Any]], limit: int = 5
) -> list[str]:
    validator = record_validator(schema)
    errors = []
    for record in records:
        for error in validator.iter_errors(record):
            path = ".".join(str(p) for p in error.absolute_path)
            errors.append(f"{path}: {error.message[:200]}")
            if len(errors) >= limit:
                return errors
    return errors


def primary_key(record: dict[str, Any], keys: list[str]) -> tuple[Any, ...]:
    return tuple(record.get(k) for k in keys)


def duplicate_keys(records: list[dict[str, Any]], keys: list[str]) -> list[tuple[Any, ...]]:
    counts = Counter(primary_key(r, keys) for r in records)
    return [k for k, n in counts.items() if n > 1]


def get_path(record: dict[str, Any], dotted: str) -> Any:
    """`record["a"]["b"]` for "a.b" (a flat key "a.b", as ground-truth rows use, wins)."""
    if dotted in record:
        return record[dotted]
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def project(record: dict[str, Any], fields: Iterable[str]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((f, get_path(record, f)) for f in fields if f != SOURCE))


def compare_rows(
    records: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> tuple[list[Any], list[Any]]:
    """(missing, unexpected): multisets of expected rows vs records projected on their fields.

    Duplicated records show up as unexpected; so do records whose join keys are wrong.
    """
    if not expected:
        return [], [project(r, []) for r in records] if records else []
    fields = sorted(expected[0])
    want = Counter(project(e, fields) for e in expected)
    got = Counter(project(r, fields) for r in records)
    missing = list((want - got).elements())
    unexpected = list((got - want).elements())
    return missing, unexpected


def normalised_state(state: dict[str, Any]) -> dict[str, Any]:
    """The state with each stream's partitions in a stable order (for comparisons), and
    each ``refreshed_at`` (the clock of the run that wrote it) as a placeholder."""
    state = json.loads(json.dumps(state))
    for stream_state in (state.get("bookmarks") or {}).values():
        parts = stream_state.get("partitions")
        if isinstance(parts, list):
            parts.sort(key=lambda p: json.dumps(p.get("context"), sort_keys=True))
            for part in parts:
                if "refreshed_at" in part:
                    part["refreshed_at"] = "<run clock>"
    return state


def key_properties(messages: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {m["stream"]: m["key_properties"] for m in messages if m["type"] == "SCHEMA"}


def record_key(record: dict[str, Any], keys: dict[str, list[str]]) -> tuple[str, str]:
    stream = record["stream"]
    values = [record["record"].get(k) for k in keys[stream]]
    assert all(v is not None for v in values), (stream, keys[stream], record["record"])
    return stream, json.dumps(values)


def keyed_records(
    messages: list[dict[str, Any]], keys: dict[str, list[str]] | None = None
) -> dict[tuple[str, str], str]:
    """(stream, primary key) -> the record's content as canonical JSON (last one wins)."""
    keys = keys or key_properties(messages)
    out: dict[tuple[str, str], str] = {}
    for message in messages:
        if message["type"] == "RECORD":
            out[record_key(message, keys)] = json.dumps(message["record"], sort_keys=True)
    return out


def no_duplicate_keys(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    keys = key_properties(messages)
    seen: set[tuple[str, str]] = set()
    repeated = []
    for message in messages:
        if message["type"] == "RECORD":
            key = record_key(message, keys)
            if key in seen:
                repeated.append(key)
            seen.add(key)
    return repeated


def completeness_problems(
    records: dict[str, list[dict[str, Any]]], expected: dict[str, list[dict[str, Any]]]
) -> list[str]:
    """Per stream: objects missing, records not in the data or emitted twice."""
    problems = []
    for stream in sorted(expected):
        missing, unexpected = compare_rows(records.get(stream, []), expected[stream])
        if missing or unexpected:
            problems.append(
                f"{stream}: {len(missing)} missing (e.g. {missing[:2]}), "
                f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})"
            )
    for stream in sorted(set(records) - set(expected)):
        problems.append(f"{stream}: {len(records[stream])} records from an unselected stream")
    return problems


#: Fields the tap changes on purpose: registry credentials in step images are redacted.
REWRITTEN_FIELDS = {"pipeline_steps": {"image"}}


def fidelity_problems(
    stream: str, records: list[dict[str, Any]], expected: list[dict[str, Any]], keys: list[str]
) -> list[str]:
    """Each emitted record holds every top-level field of the object the emulator served,
    with the same value (except text the tap must clean: NUL bytes, nanosecond times)."""
    by_key = {primary_key(r, keys): r for r in records}
    problems = []
    for row in expected:
        source = row.get(SOURCE)
        if source is None or not set(keys) <= set(row):
            continue
        record = by_key.get(tuple(row[k] for k in keys))
        if record is None:
            continue  # completeness is checked elsewhere
        for field_name, value in source.items():
            if field_name not in record:
                problems.append(f"{stream} {row[keys[-1]]}: field {field_name!r} missing")
                continue
            text = json.dumps(value)
            if (
                field_name in REWRITTEN_FIELDS.get(stream, set())
                or "\\u0000" in text
                or NANO_TIMESTAMP.search(text)
            ):
                continue
            if record[field_name] != value:
                problems.append(f"{stream} {row[keys[-1]]}: field {field_name!r} differs")
        if len(problems) > 10:
            break
    return problems
