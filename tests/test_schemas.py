"""The generated stream schemas (tap_bitbucket/schemas) and their generator.

Regenerate with ``python scripts/generate_schemas.py`` after changing the generator, its overlay
(scripts/schema_overlay.json) or the vendored spec.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from scripts import generate_schemas as gen
from tap_bitbucket.streams import STREAM_TYPES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = ROOT / "tap_bitbucket" / "schemas"
RECORDED = ROOT / "tests" / "emulator" / "real_responses" / "2.0"
REPO = "repositories/TestWorkspace1/testrepository1"

# Kept here on purpose (not read from the overlay): removing a name from the overlay's
# timestamp_properties must make test 4 fail.
TIMESTAMP_NAMES = {
    "activity_date",
    "added_on",
    "closed_on",
    "completed_on",
    "completion_date",
    "created_at",
    "created_on",
    "date",
    "last_accessed",
    "last_used",
    "participated_on",
    "resolved_on",
    "start_date",
    "started_on",
    "updated_on",
}

# Timestamps each stream must expose at top level (bookmarks and obvious dates).
TOP_LEVEL_TIMESTAMPS = {
    "workspaces": {"created_on", "updated_on"},
    "workspace_members": {"added_on", "last_accessed"},
    "workspace_webhooks": {"created_at"},
    "projects": {"created_on", "updated_on"},
    "repositories": {"created_on", "updated_on"},
    "tags": {"date"},
    "commits": {"date"},
    "commit_statuses": {"created_on", "updated_on"},
    "pull_requests": {"created_on", "updated_on"},
    "pull_request_comments": {"created_on", "updated_on"},
    "pull_request_activity": {"activity_date"},
    "pull_request_commits": {"date"},
    "pull_request_tasks": {"created_on", "updated_on", "resolved_on"},
    "pipelines": {"created_on", "completed_on"},
    "pipeline_steps": {"started_on", "completed_on"},
    "repository_webhooks": {"created_at"},
    "downloads": {"created_on"},
    "deploy_keys": {"added_on", "last_used", "created_on"},
}

# stream -> recorded response bodies (paginated envelopes or single objects).
RECORDED_PAYLOADS = {
    "workspaces": [
        "workspaces/GET.json",
        "workspaces/GET__nextPage.json",
        "workspaces/TestWorkspace1/GET.json",
        "workspaces/TestWorkspace2/GET.json",
        "workspaces/TestWorkspace3/GET.json",
    ],
    "repositories": ["repositories/TestWorkspace1/GET.json", f"{REPO}/GET.json"],
    "pull_requests": [
        f"{REPO}/pullrequests/GET.json",
        f"{REPO}/pullrequests/1/GET.json",
        f"{REPO}/pullrequests/25/GET.json",
    ],
    "pull_request_comments": [f"{REPO}/pullrequests/1/comments/GET.json"],
    "pull_request_tasks": [f"{REPO}/pullrequests/1/tasks/GET.json"],
    "pull_request_commits": [f"{REPO}/pullrequests/1/commits/GET.json"],
    "commit_statuses": [f"{REPO}/pullrequests/1/statuses/GET.json"],
    "pipelines": [
        f"{REPO}/pipelines/GET__sort=-created_on&page=1.json",
        f"{REPO}/pipelines/{{PipelineUuid}}/GET.json",
    ],
    "pipeline_steps": [
        f"{REPO}/pipelines/{{PipelineUuid}}/steps/GET.json",
        f"{REPO}/pipelines/{{PipelineUuid}}/steps/{{PipelineStep1Uuid}}/GET.json",
        f"{REPO}/pipelines/{{PipelineUuid}}/steps/{{PipelineStep2Uuid}}/GET.json",
    ],
    "branch_restrictions": [
        f"{REPO}/branch-restrictions/GET.json",
        f"{REPO}/branch-restrictions/17203842/GET.json",
    ],
    "default_reviewers": [
        f"{REPO}/default-reviewers/GET.json",
        f"{REPO}/default-reviewers/DefaultReviewer1Uuid/GET.json",
    ],
    "repository_user_permissions": [
        f"{REPO}/permissions-config/users/GET.json",
        f"{REPO}/permissions-config/users/557058%3Aba8948b2-49da-43a9-9e8b-e7249b8e324a/GET.json",
    ],
    "repository_group_permissions": [f"{REPO}/permissions-config/groups/GET.json"],
    "branches": [f"{REPO}/refs/branches/master/GET.json"],
}

DUMMY_VALUES = {
    gen.STRING: "dummy",
    gen.INTEGER: 1,
    gen.BOOLEAN: True,
    gen.DATETIME: "2024-01-02T03:04:05.123456+00:00",
}

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date-time")
def _is_rfc3339(value: object) -> bool:
    # jsonschema only checks date-time with an optional package; check it here instead.
    return not isinstance(value, str) or bool(_RFC3339.match(value))


def _schema(stream: str) -> dict[str, Any]:
    return json.loads((SCHEMAS_DIR / f"{stream}.json").read_text(encoding="utf-8"))


def _walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (path, property name, property schema) for every property, at any depth."""
    for name, sub in node.get("properties", {}).items():
        here = f"{path}.{name}" if path else name
        yield here, name, sub
        yield from _walk(sub, here)
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")


def _items(body: Any) -> list[dict[str, Any]]:
    return body["values"] if isinstance(body, dict) and "values" in body else [body]


def _undeclared(value: Any, schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Paths of keys in ``value`` that ``schema`` does not declare (the SDK would drop them)."""
    if isinstance(value, dict) and "properties" in schema:
        for key, sub in value.items():
            here = f"{path}.{key}" if path else key
            if key in schema["properties"]:
                yield from _undeclared(sub, schema["properties"][key], here)
            else:
                yield here
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for sub in value:
            yield from _undeclared(sub, schema["items"], f"{path}[]")


# 1. The checked-in files are what the generator produces. -----------------------------------


def test_checked_in_schemas_match_a_fresh_generation(tmp_path: Path) -> None:
    files = gen.generate()
    gen.write(tmp_path, files)
    stale = sorted(
        name
        for name in files
        if not (SCHEMAS_DIR / name).is_file()
        or (SCHEMAS_DIR / name).read_bytes() != (tmp_path / name).read_bytes()
    )
    assert not stale, f"stale schemas {stale}: run python scripts/generate_schemas.py"


def test_generation_is_deterministic_and_check_mode_detects_staleness(tmp_path: Path) -> None:
    assert gen.generate() == gen.generate()
    assert gen.main(["--out", str(tmp_path)]) == 0
    assert gen.main(["--check", "--out", str(tmp_path)]) == 0

    path = tmp_path / "commits.json"
    path.write_text(path.read_text(encoding="utf-8").replace('"hash"', '"hash2"'), "utf-8")
    (tmp_path / "orphan.json").write_text("{}\n", encoding="utf-8")
    assert gen.stale_files(tmp_path, gen.generate()) == ["commits.json", "orphan.json"]
    assert gen.main(["--check", "--out", str(tmp_path)]) == 1

    assert gen.main(["--out", str(tmp_path)]) == 0
    assert not (tmp_path / "orphan.json").exists()
    assert gen.main(["--check", "--out", str(tmp_path)]) == 0


# 2. One schema file per stream, and no others. ----------------------------------------------


def test_every_stream_has_a_schema_file_and_no_file_is_orphaned() -> None:
    expected = {f"{stream}.json" for stream in gen.STREAMS}
    actual = {path.name for path in SCHEMAS_DIR.glob("*.json")}
    assert sorted(expected - actual) == [], "streams without a schema file"
    assert sorted(actual - expected) == [], "schema files without a stream"


def test_the_generator_takes_the_stream_facts_from_the_registry() -> None:
    """One declaration per stream (issue 12): the generator's endpoints, primary keys and
    join keys are the stream classes' own, the items' schema the spec's for the endpoint
    unless SCHEMA_OVERRIDES says why not."""
    spec = gen.load_json(gen.SPEC_PATH)
    assert [c.schema_name or c.name for c in STREAM_TYPES] == list(gen.STREAMS)
    for cls in STREAM_TYPES:
        name = cls.schema_name or cls.name
        entry = gen.STREAMS[name]
        assert entry["primary_keys"] == list(cls.primary_keys)
        assert list(entry["keys"])[: len(cls.context_keys)] == list(cls.context_keys)
        endpoint = str(cls.path).replace("{workspace_slug}", "{workspace}")
        assert entry["endpoint"].startswith(endpoint.replace("{commit_hash}", "{commit}"))
        from_spec = gen.spec_item_schema(spec, str(cls.path))
        if name in gen.SCHEMA_OVERRIDES:
            # An override must be needed: the spec says something else, or nothing.
            assert from_spec != gen.SCHEMA_OVERRIDES[name], name
        else:
            assert entry["schema"] == from_spec, name


def test_a_stream_the_spec_does_not_describe_stops_the_generator() -> None:
    spec = gen.load_json(gen.SPEC_PATH)
    without = {k: v for k, v in gen.SCHEMA_OVERRIDES.items() if k != "downloads"}
    with pytest.raises(SystemExit, match="add stream 'downloads' to SCHEMA_OVERRIDES"):
        gen.stream_table(spec, without)
    with pytest.raises(SystemExit, match=r"registry lacks: \['gone'\]"):
        gen.stream_table(spec, {**gen.SCHEMA_OVERRIDES, "gone": "tag"})


# 3. Valid Draft 7, with the tap's keys and primary keys at top level. -------------------------


@pytest.mark.parametrize("stream", sorted(gen.STREAMS))
def test_schema_is_valid_draft7_with_the_tap_keys(stream: str) -> None:
    schema = _schema(stream)
    jsonschema.Draft7Validator.check_schema(schema)
    entry = gen.STREAMS[stream]
    assert schema["type"] == "object"
    assert schema["required"] == entry["primary_keys"]
    for key, kind in entry["keys"].items():
        assert key in schema["properties"], f"{stream}: join key {key} missing"
        prop = schema["properties"][key]
        json_type = gen.STRING if kind == gen.DATETIME else kind
        assert prop["type"] == [json_type, "null"], f"{stream}.{key}: {prop}"
        assert (prop.get("format") == "date-time") == (kind == gen.DATETIME)
    for key in entry["primary_keys"]:
        assert key in schema["properties"], f"{stream}: primary key {key} missing"


@pytest.mark.parametrize("stream", sorted(gen.STREAMS))
def test_every_property_is_nullable_and_nothing_else_is_required(stream: str) -> None:
    schema = _schema(stream)
    for path, _name, sub in _walk(schema):
        assert "null" in sub.get("type", ["null"]), f"{stream}: {path} is not nullable"
        assert "required" not in sub, f"{stream}: nested required at {path}"
        assert "enum" not in sub, f"{stream}: enum at {path}"


# 4. Timestamps carry format date-time. ------------------------------------------------------


@pytest.mark.parametrize("stream", sorted(gen.STREAMS))
def test_timestamps_have_format_date_time(stream: str) -> None:
    schema = _schema(stream)
    found = 0
    for path, name, sub in _walk(schema):
        if sub.get("format") == "date-time":
            assert "string" in sub["type"], f"{stream}: {path} is date-time but not a string"
        if name in TIMESTAMP_NAMES and "string" in sub.get("type", []):
            found += 1
            assert sub.get("format") == "date-time", f"{stream}: {path} lacks format date-time"
    for name in TOP_LEVEL_TIMESTAMPS.get(stream, ()):
        assert schema["properties"][name].get("format") == "date-time", f"{stream}.{name}"
    if stream in TOP_LEVEL_TIMESTAMPS:
        assert found >= len(TOP_LEVEL_TIMESTAMPS[stream])


# 5. Recorded Bitbucket responses validate. -------------------------------------------------


@pytest.mark.parametrize("stream", sorted(RECORDED_PAYLOADS))
def test_recorded_payloads_validate(stream: str) -> None:
    schema = _schema(stream)
    validator = jsonschema.Draft7Validator(schema, format_checker=_FORMATS)
    keys = {key: DUMMY_VALUES[kind] for key, kind in gen.STREAMS[stream]["keys"].items()}
    count = 0
    for name in RECORDED_PAYLOADS[stream]:
        body = json.loads((RECORDED / name).read_text(encoding="utf-8"))
        for item in _items(body):
            record = {**item, **keys}
            errors = [
                f"{name} {list(error.absolute_path)}: {error.message[:200]}"
                for error in validator.iter_errors(record)
            ]
            assert not errors, "\n".join(errors)
            undeclared = set(_undeclared(record, schema))
            assert not undeclared, f"{name}: recorded fields not in the schema {sorted(undeclared)}"
            count += 1
    assert count > 0


def test_recorded_payload_validation_can_fail() -> None:
    """Guard against a vacuous test 5: wrong types and a missing key are rejected."""
    schema = _schema("pull_requests")
    validator = jsonschema.Draft7Validator(schema, format_checker=_FORMATS)
    body = json.loads((RECORDED / REPO / "pullrequests/1/GET.json").read_text(encoding="utf-8"))
    keys = {key: DUMMY_VALUES[kind] for key, kind in gen.STREAMS["pull_requests"]["keys"].items()}
    assert validator.is_valid({**body, **keys})
    assert not validator.is_valid({**body, **keys, "id": "1"})
    assert not validator.is_valid({**body, **keys, "updated_on": "yesterday"})
    assert not validator.is_valid({**body, **keys, "links": {"html": {"href": 1}}})
    assert not validator.is_valid(body)  # no repo_uuid (a primary key)


# 6. Deprecated fields say so. --------------------------------------------------------------


@pytest.mark.parametrize("stream", sorted(gen.STREAMS))
def test_account_username_is_documented_as_deprecated(stream: str) -> None:
    """``username`` survives only on team (workspace) accounts, e.g. recorded group owners."""
    found = [
        (path, sub)
        for path, name, sub in _walk(_schema(stream))
        if name == "username" and sub.get("type") == ["string", "null"] and "image" not in path
    ]
    for path, sub in found:
        assert sub.get("description", "").startswith("Deprecated"), f"{stream}: {path}"
    if stream in {"projects", "repositories", "repository_group_permissions"}:
        assert found, f"{stream}: no account username declared"


@pytest.mark.unit
def test_scopes_file_is_generated_from_the_spec() -> None:
    """tap_bitbucket/scopes.json names the scopes of each stream's endpoint, from the
    vendored spec (python -m scripts.generate_scopes rewrites it)."""
    from scripts import generate_scopes  # noqa: PLC0415

    assert generate_scopes.OUT_PATH.read_text(encoding="utf-8") == generate_scopes.generate()
    assert generate_scopes.main(["--check"]) == 0
