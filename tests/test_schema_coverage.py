"""The stream schemas cover every field the emulator's data holds, at every depth.

Two datasets are checked: the session emulator (seed 1) and a second seed after two
mutations (new and merged PRs, new comments and commits, finished pipelines). For every
stream, every object of the emulator collection(s) the stream reads is shaped the way the tap
shapes it (the server's default field omissions and the tap's ``fields`` parameter, the
JSON body decoded by ``stream.parse_response``, which cleans it, then ``stream.post_process``
with a context built from the collection path), and

* validates against the stream schema (Draft 7, strict RFC 3339 date-time);
* declares every key at every depth: a key missing from ``properties`` of an object schema
  that is not explicitly open (``additionalProperties: true``) would be dropped by the SDK
  (the "Properties (...) were present in the ... stream but not found in catalog schema"
  warning);
* survives the SDK's RECURSIVE type conformance unchanged (no crash, nothing dropped).

A separate test checks that every object node of every schema file has ``properties``: the
SDK's recursive conformance reads ``schema["properties"]`` of every object and array item.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from singer_sdk.helpers._typing import conform_record_data_types
from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_bitbucket.tap import TapBitbucket
from tests.emulator import Emulator, EmulatorConfig
from tests.emulator import query as emu_query
from tests.emulator.server import match_route

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "tap_bitbucket" / "schemas"

Record = tuple[str, dict[str, Any]]  # (where it came from, the record the tap emits)

# RFC 3339 with at most microseconds: the tap cuts Bitbucket's nanosecond fractions, which
# several targets (and Python < 3.11) reject.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")
_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date-time")
def _is_rfc3339(value: object) -> bool:
    """RFC 3339 with an offset and a real instant (no month 13). jsonschema checks
    date-time only with an optional package, so it is checked here."""
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


# -- building the records ---------------------------------------------------------------------


def _path_regex(template: str) -> re.Pattern[str]:
    """``/repositories/{workspace_slug}/{repo_slug}/...`` -> a regex with named groups."""
    pattern, pos = "", 0
    for match in re.finditer(r"\{(\w+)\}", template):
        pattern += re.escape(template[pos : match.start()]) + f"(?P<{match.group(1)}>[^/]+)"
        pos = match.end()
    return re.compile("^" + pattern + re.escape(template[pos:]) + "$")


def _context(emu: Emulator, groups: dict[str, str]) -> dict[str, Any]:
    """The parent context the tap would pass for a collection path's parameters."""
    dataset = emu.dataset
    context: dict[str, Any] = dict(groups)
    workspace = groups.get("workspace_slug")
    if workspace:
        context["workspace_uuid"] = dataset.object(f"/workspaces/{workspace}")["uuid"]
    if "repo_slug" in groups:
        repo = dataset.object(f"/repositories/{workspace}/{groups['repo_slug']}")
        context["repo_uuid"] = repo["uuid"]
    if "project_key" in groups:
        project = dataset.object(f"/workspaces/{workspace}/projects/{groups['project_key']}")
        context["project_uuid"] = project["uuid"]
    if "pull_request_id" in groups:
        context["pull_request_id"] = int(groups["pull_request_id"])
    return context


def _parsed(stream: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    """What the tap's parser makes of ``body`` sent as the server sends JSON (cleaning
    included: NUL bytes, nanosecond fractions)."""
    response = requests.Response()
    response.status_code = 200
    response.url = "http://emulator.invalid/2.0/"
    response._content = json.dumps(body).encode()
    return list(stream.parse_response(response))


def _as_served(stream: Any, api_path: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items as the tap parses them from the server's page: the route's default
    omissions (pull request lists drop reviewers/participants), then the tap's ``fields``."""
    route, _ = match_route(api_path)
    assert route is not None, f"no emulator route for {api_path}"
    omit = set(route.omit)

    def default() -> dict[str, Any]:
        values = [{k: v for k, v in item.items() if k not in omit} for item in items]
        return {"values": copy.deepcopy(values)}

    fields = stream.static_params.get("fields")
    if fields:
        spec = emu_query.parse_fields(str(fields))
        return _parsed(stream, emu_query.apply_fields({"values": items}, spec, default))
    return _parsed(stream, default())


def _collections(emu: Emulator, stream: Any) -> Iterator[tuple[str, list[dict[str, Any]], dict]]:
    """(path, items as served, context) for every emulator collection the stream reads."""
    dataset = emu.dataset
    if stream.name == "pull_request_diffstats":
        # GET .../pullrequests/{id}/diffstat answers 302 to the PR's diffstat collection.
        prs = _path_regex(stream.path.removesuffix("/diffstat"))
        for path in dataset.object_paths():
            match = prs.match(path)
            if match and dataset.object(path).get("type") == "pullrequest":
                target = dataset.diffstat_target(path)
                items = _as_served(stream, target.split("?")[0], dataset.collection(target))
                yield path + "/diffstat", items, _context(emu, match.groupdict())
        return
    regex = _path_regex(stream.path)
    for path in dataset.collection_paths():
        match = regex.match(path)
        if match:
            items = dataset.collection(path)
            yield path, _as_served(stream, path, items), _context(emu, match.groupdict())


def _workspace_records(emu: Emulator, stream: Any) -> Iterator[Record]:
    """Both ways the tap reads workspaces: /user/workspaces (the inner workspace plus
    ``administrator``) and GET /workspaces/{slug} per configured slug."""
    accesses = emu.dataset.collection("/user/workspaces")
    for access in _as_served(stream, "/user/workspaces", accesses):
        row = {**access["workspace"], "administrator": access.get("administrator")}
        yield "/user/workspaces", stream.post_process(row, None)
    for slug in emu.dataset.workspaces:
        # An object endpoint, read by the directory; parsed here as a one-item page.
        (workspace,) = _parsed(stream, {"values": [emu.dataset.object(f"/workspaces/{slug}")]})
        row = {**workspace, "administrator": None}
        yield f"/workspaces/{slug}", stream.post_process(row, None)


def _records(emu: Emulator, stream: Any) -> list[Record]:
    if stream.name == "workspaces":
        return list(_workspace_records(emu, stream))
    out: list[Record] = []
    for path, items, context in _collections(emu, stream):
        for index, item in enumerate(items):
            row = stream.post_process(item, context)
            if row is not None:
                out.append((f"{path}[{index}]", row))
    return out


def _tap(emu: Emulator) -> TapBitbucket:
    config = {
        "api_url": emu.api_url,
        "username": emu.credentials.email,
        "api_token": emu.credentials.api_token,
    }
    return TapBitbucket(config=config, parse_env_config=False)


@pytest.fixture(scope="module")
def tap(emulator: Emulator) -> TapBitbucket:
    return _tap(emulator)


@pytest.fixture(scope="module")
def records(emulator: Emulator, tap: TapBitbucket) -> dict[str, list[Record]]:
    """Every stream's records from both datasets (labelled by seed)."""
    out = {
        name: [(f"seed 1 {where}", row) for where, row in _records(emulator, stream)]
        for name, stream in tap.streams.items()
    }
    with Emulator(EmulatorConfig(seed=2)) as mutated:
        mutated.mutate()
        mutated.mutate()
        other = _tap(mutated)
        for name, stream in other.streams.items():
            out[name] += [(f"seed 2+mutations {w}", row) for w, row in _records(mutated, stream)]
    return out


STREAMS = sorted(json_file.stem for json_file in SCHEMAS_DIR.glob("*.json"))


# -- walking schemas and records ----------------------------------------------------------------


def _types(schema: dict[str, Any]) -> list[str]:
    value = schema.get("type", [])
    return [value] if isinstance(value, str) else list(value)


def undeclared(value: Any, schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Paths of keys in ``value`` that ``schema`` neither declares nor explicitly allows."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, sub in value.items():
            here = f"{path}.{key}" if path else key
            if key in properties:
                yield from undeclared(sub, properties[key], here)
            elif schema.get("additionalProperties") is not True:
                yield here
    elif isinstance(value, list):
        items = schema.get("items")
        for sub in value:
            yield from undeclared(sub, items if isinstance(items, dict) else {}, f"{path}[]")


def object_nodes(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object schema node (properties and array items alike), at any depth."""
    if not isinstance(schema, dict):
        return
    if "object" in _types(schema) or "properties" in schema:
        yield path or "<root>", schema
    for name, sub in schema.get("properties", {}).items():
        yield from object_nodes(sub, f"{path}.{name}" if path else name)
    if "items" in schema:
        yield from object_nodes(schema["items"], f"{path}[]")


class _Collect(logging.Handler):
    """Keeps the messages logged (the SDK's "Properties ... not found in catalog schema")."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# -- tests ------------------------------------------------------------------------------------


def test_every_stream_is_covered(tap: TapBitbucket, records: dict[str, list[Record]]) -> None:
    assert sorted(tap.streams) == STREAMS
    empty = sorted(name for name, found in records.items() if not found)
    assert not empty, f"streams without any emulator record: {empty}"


@pytest.mark.parametrize("stream", STREAMS)
def test_emulator_records_validate(
    stream: str, tap: TapBitbucket, records: dict[str, list[Record]]
) -> None:
    validator = jsonschema.Draft7Validator(tap.streams[stream].schema, format_checker=_FORMATS)
    errors = [
        f"{where} {list(error.absolute_path)}: {error.message[:200]}"
        for where, record in records[stream]
        for error in validator.iter_errors(record)
    ]
    assert not errors, f"{stream}: {len(errors)} errors\n" + "\n".join(errors[:20])


@pytest.mark.parametrize("stream", STREAMS)
def test_no_emulator_field_is_undeclared(
    stream: str, tap: TapBitbucket, records: dict[str, list[Record]]
) -> None:
    schema = tap.streams[stream].schema
    missing: dict[str, str] = {}
    for where, record in records[stream]:
        for path in undeclared(record, schema):
            missing.setdefault(path, where)
    assert not missing, f"{stream}: fields not in the schema (first seen at): " + json.dumps(
        missing, indent=1
    )


@pytest.mark.parametrize("stream", STREAMS)
def test_recursive_conformance_keeps_every_field(
    stream: str, tap: TapBitbucket, records: dict[str, list[Record]]
) -> None:
    schema = tap.streams[stream].schema
    logger = logging.getLogger(f"test_schema_coverage.{stream}")
    logger.setLevel(logging.DEBUG)
    handler = _Collect()
    logger.addHandler(handler)
    changed = []
    try:
        for where, record in records[stream]:
            before = copy.deepcopy(record)
            out = conform_record_data_types(
                stream, record, schema, TypeConformanceLevel.RECURSIVE, logger
            )
            if out != before:
                changed.append(where)
    finally:
        logger.removeHandler(handler)
    assert not handler.messages, f"{stream}: fields dropped: {handler.messages[:5]}"
    assert not changed, f"{stream}: conformance changed values of {changed[:5]}"


@pytest.mark.parametrize("stream", STREAMS)
def test_every_object_schema_has_properties(stream: str) -> None:
    schema = json.loads((SCHEMAS_DIR / f"{stream}.json").read_text(encoding="utf-8"))
    nodes = list(object_nodes(schema))
    assert nodes
    no_properties = [path for path, node in nodes if "properties" not in node]
    assert not no_properties, f"{stream}: object schemas without properties {no_properties}"
    closed_empty = [
        path
        for path, node in nodes
        if not node["properties"] and node.get("additionalProperties") is not True
    ]
    assert not closed_empty, f"{stream}: empty objects not explicitly open {closed_empty}"


def test_the_checks_catch_breakage(tap: TapBitbucket, records: dict[str, list[Record]]) -> None:
    """Guard against vacuous checks: each one fails on a broken schema or record."""
    schema = copy.deepcopy(tap.streams["workspace_webhooks"].schema)
    record = copy.deepcopy(records["workspace_webhooks"][0][1])
    validator = jsonschema.Draft7Validator(schema, format_checker=_FORMATS)
    assert validator.is_valid(record)
    assert not validator.is_valid({**record, "created_at": "2024-13-01T00:00:00+00:00"})
    assert not validator.is_valid({**record, "created_at": "2024-01-01 00:00:00"})
    assert not validator.is_valid({**record, "created_at": "2024-01-01T00:00:00.123456789Z"})
    assert not validator.is_valid({**record, "active": "yes"})

    del schema["properties"]["links"]
    assert list(undeclared(record, schema)) == ["links"]
    schema["properties"]["subject"] = {"type": ["object", "null"]}  # no properties
    assert "subject.uuid" in list(undeclared(record, schema))
    assert "subject" in dict(object_nodes(schema))
    assert "properties" not in dict(object_nodes(schema))["subject"]
    schema["properties"]["subject"]["additionalProperties"] = True
    assert list(undeclared(record, schema)) == ["links"]

    level = TypeConformanceLevel.RECURSIVE
    logger = logging.getLogger("test_schema_coverage.breakage")
    dropped = conform_record_data_types("workspace_webhooks", record, schema, level, logger)
    assert "links" not in dropped
    item = {"type": ["object", "null"]}  # an array item without properties: the SDK crash
    crashing = {"type": "object", "properties": {"a": {"type": "array", "items": item}}}
    with pytest.raises(KeyError):
        conform_record_data_types("x", {"a": [{"b": 1}]}, crashing, level, logger)
