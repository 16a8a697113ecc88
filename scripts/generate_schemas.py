#!/usr/bin/env python3
"""Generate the tap's stream schemas from the vendored Bitbucket Cloud OpenAPI spec.

    python scripts/generate_schemas.py            # (re)write tap_bitbucket/schemas/<stream>.json
    python scripts/generate_schemas.py --check    # exit 1 and list the files that are stale
    python scripts/generate_schemas.py --out DIR  # write into another directory

Inputs: ``spec/bitbucket-cloud-swagger.v3.json`` (read-only) and ``scripts/schema_overlay.json``
(data only: live-only fields, hand-written schemas, polymorphic bases, timestamp names). The
stream facts (endpoint, primary keys, join keys) come from the stream registry
(``tap_bitbucket.streams.STREAM_TYPES``), the items' schema from the spec's declaration of
the endpoint; ``SCHEMA_OVERRIDES`` and ``DERIVED_KEYS`` below say what neither does. The output is deterministic: sorted keys, 2-space indent
(lists of scalars such as ``["string", "null"]`` on one line), trailing newline.

Rules applied to every schema:

* ``$ref`` is resolved and ``allOf`` flattened. Recursion is cut by ``MAX_SAME_SCHEMA`` and
  ``MAX_NESTING`` (see there): past them a property becomes an open stand-in
  (``additionalProperties: true``) that declares the overlay's ``short_forms`` paths for that
  schema (a repository's uuid, full_name, name, links...), or nothing. Live nested resources
  are such short forms anyway.
* Every object node, array items included, has ``properties`` (possibly ``{}``): the SDK's
  recursive type conformance reads ``schema["properties"]`` of every object it meets. An
  object that declares no property is explicitly open (``additionalProperties: true``).
* Polymorphic bases listed in the overlay (``account`` -> user/team/app_user, pipeline states,
  targets, ...) get the properties of all their subtypes, so a property typed as the base keeps
  the subtype fields instead of having the SDK drop them.
* Overlay nodes may say ``"x-open": true`` (declared properties, other keys pass through) and
  ``"x-description"`` (kept as the description, e.g. for deprecated fields).
* Every property and array item is nullable. ``required`` only lists the stream's primary keys.
* ``format: date-time`` is kept from the spec and added to every known timestamp name; other
  formats are dropped, as are ``enum`` (values move to a short description), ``pattern``,
  ``minimum``, ``title``, ``readOnly``, ``discriminator``, examples and the spec's descriptions.
* ``additionalProperties: false`` is kept only on plain spec objects that declare it (a link's
  ``{href, name}``, rendered content, inline anchors, ...). Flattened ``allOf`` resources, the
  top level and ``links`` objects (overlay ``open_properties``: live link sets are larger than
  the spec's) allow extra keys. Either way the Singer SDK drops undeclared keys from records
  (unless ``additionalProperties`` is ``true``), so live-only fields must be declared (overlay
  ``extend``) to reach the target; tests/test_schema_coverage.py checks this against every
  object the emulator serves.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "spec" / "bitbucket-cloud-swagger.v3.json"
OVERLAY_PATH = ROOT / "scripts" / "schema_overlay.json"
SCHEMAS_DIR = ROOT / "tap_bitbucket" / "schemas"

REF_PREFIX = "#/components/schemas/"

# Recursion limits. "Bounded" schemas (account, project, workspace, links, ...) reach no
# reference cycle, so they are always inlined in full. Every other named object schema is inlined
# at most MAX_SAME_SCHEMA times on one path (repository -> parent repository -> permissive), and
# resources among them (schemas with a `type` property: repository, commit, branch, pullrequest,
# comment, ...) nest at most MAX_NESTING deep, the stream's own schema being the first level:
# pullrequests.source.repository is typed, its parent and mainbranch are permissive. allOf bases
# are part of the schema that inherits them and count for nothing. Deeper values become open
# stand-ins (_short_form), which the Singer SDK passes through untouched.
MAX_SAME_SCHEMA = 2
MAX_NESTING = 2

STRING = "string"
INTEGER = "integer"
BOOLEAN = "boolean"
DATETIME = "date-time"

# The stream facts come from the stream registry (tap_bitbucket.streams.STREAM_TYPES, one
# declaration per stream, issue 12): the endpoint (`path`), the primary keys (listed as
# "required") and the join keys the tap copies from the context (`context_keys`). The
# items' schema is the one the spec declares for the endpoint's GET 200 (the `values` of
# its paginated envelope). Only what neither says is kept here.

#: Streams whose items the spec describes wrongly or not at all, and the schema they use.
SCHEMA_OVERRIDES = {
    # /user/workspaces lists workspace_access; the tap emits the inner workspace.
    "workspaces": "workspace",
    # The spec says base_commit; the list serves full commits (parents, summary...).
    "commits": "commit",
    "pull_request_commits": "commit",  # the spec declares no response body
    "pull_request_activity": "pullrequest_activity",  # overlay schema: not in the spec
    "pull_request_diffstats": "diffstat",  # a 302 in the spec; its target lists diffstat
    "downloads": "repository_download",  # overlay schema: the spec declares no body
}
#: Top-level keys the streams' transforms derive, with their types.
DERIVED_KEYS: dict[str, dict[str, str]] = {
    "workspaces": {"administrator": BOOLEAN},
    "workspace_members": {"user_uuid": STRING},
    "project_user_permissions": {"user_uuid": STRING},
    "project_group_permissions": {"group_slug": STRING},
    "project_default_reviewers": {"user_uuid": STRING},
    "repository_user_permissions": {"user_uuid": STRING},
    "repository_group_permissions": {"group_slug": STRING},
    "pull_request_activity": {
        "pull_request_id": INTEGER,
        "activity_id": STRING,
        "activity_kind": STRING,
        "activity_date": DATETIME,
    },
    "pull_request_diffstats": {"file_key": STRING},
    "default_reviewers": {"user_uuid": STRING},
}
#: Join keys that are not strings.
KEY_TYPES = {"pull_request_id": INTEGER}
#: How the schema descriptions name a path's placeholders (the spec's own names).
PLACEHOLDERS = {"{workspace_slug}": "{workspace}", "{commit_hash}": "{commit}"}
#: What a description adds to a stream's path.
ENDPOINT_NOTES = {
    "workspaces": " (inner workspace) or /workspaces/{workspace}",
    "pull_request_activity": " (all PRs of the repository)",
}


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def spec_item_schema(spec: dict[str, Any], path: str) -> str | None:
    """The component the spec declares for the items of GET `path`, or None."""
    by_shape = {_shape(p): item for p, item in spec.get("paths", {}).items()}
    try:
        body = by_shape[_shape(path)]["get"]["responses"]["200"]["content"]["application/json"]
    except KeyError:
        return None
    ref = str(body["schema"].get("$ref", ""))
    envelope = spec["components"]["schemas"].get(_ref_name(ref), {}) if ref else {}
    for part in [envelope, *envelope.get("allOf", [])]:
        values = part.get("properties", {}).get("values")
        if values and "$ref" in values.get("items", {}):
            return _ref_name(values["items"]["$ref"])
    return _ref_name(ref) if ref else None


def stream_table(
    spec: dict[str, Any] | None = None, overrides: dict[str, str] = SCHEMA_OVERRIDES
) -> dict[str, dict[str, Any]]:
    """stream -> endpoint, source schema (spec component or overlay "schemas" entry), the
    tap's own top-level keys with their types, and the primary keys, from the registry."""
    sys.path.insert(0, str(ROOT))  # run as a script: the package beside scripts/
    from tap_bitbucket.streams import STREAM_TYPES  # noqa: PLC0415

    spec = load_json(SPEC_PATH) if spec is None else spec
    table: dict[str, dict[str, Any]] = {}
    for cls in STREAM_TYPES:
        name = cls.schema_name or cls.name
        schema = overrides.get(name) or spec_item_schema(spec, str(cls.path))
        if schema is None:
            raise SystemExit(
                f"generate_schemas: the spec declares no items for {cls.path}: "
                f"add stream {name!r} to SCHEMA_OVERRIDES"
            )
        endpoint = str(cls.path)
        for placeholder, spec_name in PLACEHOLDERS.items():
            endpoint = endpoint.replace(placeholder, spec_name)
        keys = {k: KEY_TYPES.get(k, STRING) for k in cls.context_keys}
        table[name] = {
            "endpoint": endpoint + ENDPOINT_NOTES.get(name, ""),
            "schema": schema,
            "keys": {**keys, **DERIVED_KEYS.get(name, {})},
            "primary_keys": list(cls.primary_keys),
        }
    unknown = sorted((set(overrides) | set(DERIVED_KEYS) | set(ENDPOINT_NOTES)) - set(table))
    if unknown:
        raise SystemExit(
            f"generate_schemas: these tables name streams the registry lacks: {unknown}"
        )
    return table


_TYPE_ORDER = ["object", "array", "string", "integer", "number", "boolean", "null"]


def _ref_name(ref: str) -> str:
    if not ref.startswith(REF_PREFIX):
        raise ValueError(f"unsupported $ref {ref!r}")
    return ref[len(REF_PREFIX) :]


def _refs(node: Any) -> set[str]:
    """Names of all component schemas referenced anywhere inside ``node``."""
    if isinstance(node, dict):
        found = {_ref_name(node["$ref"])} if "$ref" in node else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node)) if node else set()
    return set()


def _types(node: dict[str, Any]) -> list[str]:
    value = node.get("type")
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` that also accepts null (a schema without a type already does)."""
    out = dict(schema)
    types = _types(out)
    if types and "null" not in types:
        out["type"] = [*types, "null"]
    return out


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Union of two built schemas; on scalar conflicts (format, description) ``a`` wins."""
    out = dict(a)
    for key, value in b.items():
        if key not in out:
            out[key] = value
        elif key == "type":
            current = _types(out)
            out["type"] = current + [t for t in _types(b) if t not in current]
        elif key == "properties":
            merged = dict(out["properties"])
            for name, sub in value.items():
                merged[name] = _merge(merged[name], sub) if name in merged else sub
            out["properties"] = merged
        elif key == "items":
            out["items"] = _merge(out["items"], value)
        elif key == "additionalProperties":
            # An open stand-in (True) admits anything, so it wins; else closed wins.
            out[key] = out[key] is True or value is True or (bool(out[key]) and bool(value))
    return out


def _open_object() -> dict[str, Any]:
    """The permissive stand-in: any object, passed through untouched by SDK and targets."""
    return {"type": ["object"], "properties": {}, "additionalProperties": True}


def _canonical(node: Any) -> Any:
    """Finish a built schema: type lists in canonical order (null last), and every object
    node with ``properties`` (the SDK's recursive conformance reads it unconditionally);
    an object that declares none is explicitly open (``additionalProperties: true``)."""
    if isinstance(node, dict):
        out = {key: _canonical(value) for key, value in node.items()}
        if isinstance(out.get("type"), list):
            out["type"] = sorted(out["type"], key=_TYPE_ORDER.index)
        is_object = "object" in _types(out) or "properties" in out
        if is_object and not out.get("properties"):
            out["properties"] = {}
            out["additionalProperties"] = True
        if not is_object or out.get("additionalProperties") not in (True, False):
            out.pop("additionalProperties", None)
        return out
    if isinstance(node, list):
        return [_canonical(value) for value in node]
    return node


class SchemaBuilder:
    """Builds stream schemas from the spec's component schemas plus the overlay."""

    def __init__(self, spec: dict[str, Any], overlay: dict[str, Any]) -> None:
        components = dict(spec["components"]["schemas"])
        for name, schema in overlay.get("schemas", {}).items():
            if name in components:
                raise ValueError(f"overlay schema {name!r} clashes with a spec schema")
            components[name] = schema
        self.components = components
        self.extend: dict[str, Any] = overlay.get("extend", {})
        for name in self.extend:
            if name not in components:
                raise ValueError(f"overlay extends unknown schema {name!r}")
        self.polymorphic = set(overlay.get("merge_subtypes", []))
        self.subtypes: dict[str, list[str]] = {}
        for name, schema in components.items():
            for part in schema.get("allOf", []):
                if "$ref" in part:
                    self.subtypes.setdefault(_ref_name(part["$ref"]), []).append(name)
        for names in self.subtypes.values():
            names.sort()
        for name in self.polymorphic:
            if not self.subtypes.get(name):
                raise ValueError(f"merge_subtypes: {name!r} has no subtypes")
        self.patches: list[dict[str, Any]] = overlay.get("object_patches", [])
        self.timestamps = frozenset(overlay.get("timestamp_properties", []))
        self.open_properties = frozenset(overlay.get("open_properties", []))
        self.short_forms: dict[str, list[str]] = overlay.get("short_forms", {})
        for name in self.short_forms:
            if name not in components:
                raise ValueError(f"short_forms: unknown schema {name!r}")
        self._in_short_form = False
        self.bounded = self._bounded_schemas()
        self.levels = frozenset(
            name for name in components if name not in self.bounded and self._has_type(name)
        )

    # -- recursion analysis ---------------------------------------------------------------

    def _edges(self, name: str) -> set[str]:
        """Named schemas that building ``name`` (polymorphically) can inline."""
        edges = _refs(self.components[name]) | _refs(self.extend.get(name, {}))
        if name in self.polymorphic:
            for sub in self.subtypes[name]:
                for part in self.components[sub].get("allOf", []):
                    if part.get("$ref") != REF_PREFIX + name:
                        edges |= _refs(part)
                edges |= _refs(self.extend.get(sub, {}))
        return edges

    def _bounded_schemas(self) -> frozenset[str]:
        """Schemas from which no reference cycle is reachable: finite, so always inlined."""
        graph = {name: self._edges(name) for name in self.components}
        reach: dict[str, set[str]] = {}
        for start, edges in graph.items():
            seen: set[str] = set()
            todo = list(edges)
            while todo:
                name = todo.pop()
                if name not in seen:
                    seen.add(name)
                    todo.extend(graph[name])
            reach[start] = seen
        cyclic = {name for name in graph if name in reach[name]}
        return frozenset(name for name in graph if not (reach[name] | {name}) & cyclic)

    def _has_type(self, name: str) -> bool:
        """True for resources: schemas with a ``type`` property (own or inherited)."""
        node = self.components[name]
        for part in node.get("allOf", [node]):
            if "$ref" in part:
                if self._has_type(_ref_name(part["$ref"])):
                    return True
            elif "type" in part.get("properties", {}):
                return True
        return False

    # -- building -------------------------------------------------------------------------

    def _is_object(self, node: dict[str, Any]) -> bool:
        return "allOf" in node or "properties" in node or "object" in _types(node)

    def named(
        self, name: str, stack: tuple[str, ...], *, polymorphic: bool, inherited: bool = False
    ) -> dict[str, Any]:
        """Build component ``name``; ``stack`` is the chain of named schemas above it.

        ``inherited`` marks an ``allOf`` base: it is part of the schema being built, so it
        neither counts as a level of nesting nor gets cut.
        """
        if name not in self.components:
            raise ValueError(f"unknown schema {name!r}")
        node = self.components[name]
        if inherited:
            inner = stack
        else:
            if name not in self.bounded and self._is_object(node):
                # The stream's own schema (stack[0]) always counts as the first level.
                depth = len(stack[:1]) + sum(1 for above in stack[1:] if above in self.levels)
                too_deep = name in self.levels and depth >= MAX_NESTING
                if too_deep or stack.count(name) >= MAX_SAME_SCHEMA:
                    return self._short_form(name, stack)
            inner = (*stack, name)
        out = self.build(node, inner)
        if name in self.extend:
            out = _merge(out, self.build(self.extend[name], inner))
        if polymorphic and name in self.polymorphic:
            for sub in self.subtypes[name]:
                out = _merge(out, self._subtype_fields(sub, name, inner))
        return out

    def _short_form(self, name: str, stack: tuple[str, ...]) -> dict[str, Any]:
        """The stand-in for a cut schema: open, declaring the overlay's ``short_forms`` paths
        (the identity fields Bitbucket nests: a repository's uuid/full_name/name/links...)."""
        paths = self.short_forms.get(name)
        if not paths or self._in_short_form:
            return _open_object()
        self._in_short_form = True  # cuts inside the full build stay plain stand-ins
        try:
            full = self.named(name, (name,), polymorphic=True)
        finally:
            self._in_short_form = False
        out = _open_object()
        for path in paths:
            source, target = full, out
            *parents, leaf = path.split(".")
            for part in parents:
                if part not in source.get("properties", {}):
                    raise ValueError(f"short_forms: {name} has no {path!r}")
                source = source["properties"][part]
                # An object listed by some children keeps only those, so it stays open too.
                target = target["properties"].setdefault(
                    part, {**source, **_open_object(), "type": source["type"]}
                )
            if leaf not in source.get("properties", {}):
                raise ValueError(f"short_forms: {name} has no {path!r}")
            target["properties"][leaf] = source["properties"][leaf]
        return out

    def _subtype_fields(self, sub: str, base: str, stack: tuple[str, ...]) -> dict[str, Any]:
        """The properties that subtype ``sub`` adds to ``base`` (allOf parts other than base)."""
        node = self.components[sub]
        out: dict[str, Any] = {}
        for part in node.get("allOf", [node]):
            if part.get("$ref") == REF_PREFIX + base:
                continue
            out = _merge(out, self.build(part, stack))
        if sub in self.extend:
            out = _merge(out, self.build(self.extend[sub], stack))
        out.pop("additionalProperties", None)
        return out

    def build(self, node: dict[str, Any], stack: tuple[str, ...]) -> dict[str, Any]:
        if "$ref" in node:
            return self.named(_ref_name(node["$ref"]), stack, polymorphic=True)
        if "allOf" in node:
            out: dict[str, Any] = {}
            for part in node["allOf"]:
                if "$ref" in part:
                    sub = self.named(
                        _ref_name(part["$ref"]), stack, polymorphic=False, inherited=True
                    )
                else:
                    sub = self.build(part, stack)
                out = _merge(out, sub)
            out.pop("additionalProperties", None)
            return out
        return self._plain(node, stack)

    def _plain(self, node: dict[str, Any], stack: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        types = _types(node)
        properties = node.get("properties")
        if properties is not None and "object" not in types:
            types.append("object")
        if "items" in node and "array" not in types:
            types.append("array")
        if types:
            out["type"] = types
        if properties:
            built = {
                name: self.prop(name, self.build(sub, stack)) for name, sub in properties.items()
            }
            for patch in self.patches:
                if set(patch["when_properties"]) <= set(built):
                    for name, sub in patch["add_properties"].items():
                        built.setdefault(name, self.prop(name, self.build(sub, stack)))
            out["properties"] = built
        if "items" in node:
            out["items"] = _nullable(self.build(node["items"], stack))
        if node.get("format") == DATETIME:
            out["format"] = DATETIME
        if "enum" in node:
            out["description"] = "Known values: " + ", ".join(str(v) for v in node["enum"])
        if node.get("additionalProperties") is False and properties:
            out["additionalProperties"] = False
        if node.get("x-open"):  # overlay only: declared, but other keys pass through too
            out["additionalProperties"] = True
        if "x-description" in node:  # overlay only (spec descriptions are dropped)
            out["description"] = node["x-description"]
        return out

    def prop(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        """Finish a property: nullable, date-time when its name is a known timestamp, and open
        (no ``additionalProperties: false``) when its name is in ``open_properties``."""
        out = _nullable(schema)
        if name in self.open_properties and out.get("additionalProperties") is False:
            del out["additionalProperties"]
        if name in self.timestamps and STRING in _types(out):
            out["format"] = DATETIME
        return out

    # -- streams --------------------------------------------------------------------------

    def stream_schema(self, stream: str, entry: dict[str, Any]) -> dict[str, Any]:
        body = self.named(entry["schema"], (), polymorphic=True)
        properties = dict(body.get("properties", {}))
        for key, kind in entry["keys"].items():
            if kind == DATETIME:
                properties[key] = {"type": [STRING, "null"], "format": DATETIME}
            else:
                properties[key] = {"type": [kind, "null"]}
        missing = [key for key in entry["primary_keys"] if key not in properties]
        if missing:
            raise ValueError(f"{stream}: primary keys {missing} are not properties")
        keys = ", ".join(entry["keys"])
        schema = {
            "type": "object",
            "description": (
                f"Bitbucket Cloud GET {entry['endpoint']} items (spec schema "
                f"{entry['schema']}) plus the tap's keys: {keys}."
            ),
            "properties": properties,
            "required": list(entry["primary_keys"]),
        }
        return _canonical(schema)


def load_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


STREAMS = stream_table()


def _dump(node: Any, level: int) -> str:
    """``json.dumps(indent=2, sort_keys=True)``, except that lists of scalars stay on one line."""
    inner = "  " * (level + 1)
    close = "  " * level
    if isinstance(node, dict):
        if not node:
            return "{}"
        items = [f"{inner}{json.dumps(key)}: {_dump(node[key], level + 1)}" for key in sorted(node)]
        return "{\n" + ",\n".join(items) + "\n" + close + "}"
    if isinstance(node, list):
        if all(not isinstance(value, dict | list) for value in node):
            return "[" + ", ".join(json.dumps(value) for value in node) + "]"
        items = [inner + _dump(value, level + 1) for value in node]
        return "[\n" + ",\n".join(items) + "\n" + close + "]"
    return json.dumps(node)


def render(schema: dict[str, Any]) -> str:
    """The file text: sorted keys, 2-space indent, scalar lists inline, trailing newline."""
    return _dump(schema, 0) + "\n"


def generate(spec_path: Path = SPEC_PATH, overlay_path: Path = OVERLAY_PATH) -> dict[str, str]:
    """Return ``{file name: file text}`` for every stream."""
    builder = SchemaBuilder(load_json(spec_path), load_json(overlay_path))
    return {
        f"{stream}.json": render(builder.stream_schema(stream, entry))
        for stream, entry in sorted(STREAMS.items())
    }


def stale_files(out_dir: Path, files: dict[str, str]) -> list[str]:
    """Files in ``out_dir`` that differ from ``files``, are missing, or are orphans."""
    stale = []
    for name, text in files.items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    if out_dir.is_dir():
        stale += sorted(p.name for p in out_dir.glob("*.json") if p.name not in files)
    return sorted(stale)


def write(out_dir: Path, files: dict[str, str]) -> list[str]:
    """Write ``files`` into ``out_dir`` and delete orphan ``*.json``; return changed names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    changed = stale_files(out_dir, files)
    for name in changed:
        path = out_dir / name
        if name in files:
            path.write_text(files[name], encoding="utf-8", newline="\n")
        else:
            path.unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if any file is stale")
    parser.add_argument("--out", type=Path, default=SCHEMAS_DIR, help="output directory")
    args = parser.parse_args(argv)
    files = generate()
    if args.check:
        stale = stale_files(args.out, files)
        for name in stale:
            print(f"stale: {args.out / name}")
        if stale:
            print("run: python scripts/generate_schemas.py", file=sys.stderr)
            return 1
        print(f"{len(files)} schemas up to date")
        return 0
    changed = write(args.out, files)
    for name in changed:
        print(f"{'wrote' if name in files else 'removed'} {args.out / name}")
    print(f"{len(files)} schemas, {len(changed)} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
