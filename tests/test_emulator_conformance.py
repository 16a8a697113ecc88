"""Every path the dataset serves, fetched over HTTP, validated against Atlassian's OpenAPI spec.

For each collection path: GET with the route's maximum pagelen, follow `next` to the end,
validate every page against the spec's `paginated_*` envelope schema (additionalProperties
false) which also validates each item against the item schema; and check that the pages
together are exactly the dataset's collection. For each object path: GET it, validate it
against the spec's 200 schema and compare it with the dataset object.

`$ref`/`allOf` are resolved from the spec document itself through a `referencing.Registry`.
The only tolerated deviations are listed in EXEMPTIONS, and every exemption must be used.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.emulator import ROUTES, Emulator, Route
from tests.emulator.server import match_route

SPEC_PATH = Path(__file__).resolve().parents[1] / "spec" / "bitbucket-cloud-swagger.v3.json"
SPEC_URI = "urn:bitbucket-cloud-openapi"
PR_STATES = ("OPEN", "MERGED", "DECLINED", "SUPERSEDED")

# Route templates without a 200 schema in the spec (the spec's documented gaps). Their pages
# are still checked against the generic envelope; their items only for being objects.
NO_SCHEMA_ROUTES: dict[str, str] = {
    "/repositories/{workspace}/{repo_slug}/pullrequests/activity": (
        "not in the spec at all (observed endpoint, notes section 7)"
    ),
    "/repositories/{workspace}/{repo_slug}/pullrequests/{pull_request_id}/activity": (
        "the spec declares no 200 schema for PR activity"
    ),
    "/repositories/{workspace}/{repo_slug}/pullrequests/{pull_request_id}/commits": (
        "the spec declares no 200 schema for PR commits"
    ),
    "/repositories/{workspace}/{repo_slug}/downloads": (
        "the spec declares no 200 schema for downloads"
    ),
}

# Deviations of served data from the spec that live Bitbucket shows too. Key:
# "<schema validated>:<path inside the item, list elements as []>:<jsonschema keyword>".
# RR = tests/emulator/real_responses (recorded live bodies); notes = docs/bitbucket-api-notes.md.
_RENDERED = "live rendered-markup objects carry `type: rendered`; the spec closes them (RR)"
_NULL = "null on live Bitbucket; the spec declares the field without `nullable`"
SCHEMA_EXEMPTIONS: dict[str, str] = {
    # additionalProperties: fields live objects have and the spec's closed objects lack
    "base_commit:summary:additionalProperties": _RENDERED,
    "commit:summary:additionalProperties": _RENDERED,
    "branch:target.summary:additionalProperties": _RENDERED,
    "tag:target.summary:additionalProperties": _RENDERED,
    "pullrequest:summary:additionalProperties": _RENDERED,
    "pullrequest_comment:content:additionalProperties": _RENDERED,
    "pullrequest:source.commit:additionalProperties": (
        "live PR commit refs are {hash, type, links}; the spec closes them at {hash} (RR PR 1)"
    ),
    "pullrequest:destination.commit:additionalProperties": "as source.commit (RR PR 1)",
    "pullrequest:merge_commit:additionalProperties": "as source.commit",
    "pullrequest:links:additionalProperties": (
        "live PR links include request-changes and statuses (RR pullrequests/1)"
    ),
    "repository:links:additionalProperties": (
        "live repository links include branches, source, tags (RR repositories/TestWorkspace1)"
    ),
    "repository:project.links:additionalProperties": "live project links include self (RR)",
    "project:links:additionalProperties": "live project links include self (RR)",
    "project_user_permission:project.links:additionalProperties": "project links: self (RR)",
    "project_group_permission:project.links:additionalProperties": "project links: self (RR)",
    # type: null where the spec says object/string/integer
    "pullrequest:merge_commit:type": _NULL + " (open/declined PRs; RR pullrequests/1)",
    "pullrequest:closed_by:type": _NULL + " (open PRs; RR pullrequests/1)",
    "pullrequest:participants.[].state:type": _NULL + " (no vote; RR pullrequests/1)",
    "pullrequest:participants.[].participated_on:type": _NULL + " (RR pullrequests/1)",
    "pullrequest:author:type": _NULL + " (author account deleted; modelled by data/) [U]",
    "pullrequest_comment:user:type": _NULL + " (commenter account deleted; modelled by data/) [U]",
    "pullrequest_comment:inline.from:type": _NULL + " (comment on an added line)",
    "pullrequest_comment_task:resolved_by:type": _NULL + " (unresolved task)",
    "pullrequest_comment_task:resolved_on:type": _NULL + " (unresolved task)",
    "branchrestriction:value:type": _NULL + " (kinds without a value; RR branch-restrictions)",
    "deploy_key:last_used:type": _NULL + " (key never used)",
    "diffstat:old:type": _NULL + " (added file)",
    "diffstat:new:type": _NULL + " (removed file)",
    "pipeline:completed_on:type": _NULL + " (pipeline still running; notes section 7)",
    "pipeline_step:started_on:type": _NULL + " (step not started; notes section 7)",
    "pipeline_step:completed_on:type": _NULL + " (step not completed; notes section 7)",
    "repository:mainbranch:type": _NULL + " (the empty repository has no main branch)",
    "tag:date:type": _NULL + " (lightweight tag)",
    "tag:message:type": _NULL + " (lightweight tag)",
    "tag:tagger:type": _NULL + " (lightweight tag)",
}

# For additionalProperties exemptions: the only extra property names tolerated.
ALLOWED_EXTRAS: dict[str, set[str]] = {
    key: {"type"} for key, reason in SCHEMA_EXEMPTIONS.items() if reason == _RENDERED
}
ALLOWED_EXTRAS.update(
    {
        "pullrequest:source.commit:additionalProperties": {"type", "links"},
        "pullrequest:destination.commit:additionalProperties": {"type", "links"},
        "pullrequest:merge_commit:additionalProperties": {"type", "links"},
        "pullrequest:links:additionalProperties": {"request-changes", "statuses"},
        "repository:links:additionalProperties": {"branches", "source", "tags"},
        "repository:project.links:additionalProperties": {"self"},
        "project:links:additionalProperties": {"self"},
        "project_user_permission:project.links:additionalProperties": {"self"},
        "project_group_permission:project.links:additionalProperties": {"self"},
    }
)

EXEMPTIONS: dict[str, str] = {**NO_SCHEMA_ROUTES, **SCHEMA_EXEMPTIONS}

GENERIC_ENVELOPE = {
    "type": "object",
    "properties": {
        "size": {"type": "integer", "minimum": 0},
        "page": {"type": "integer", "minimum": 1},
        "pagelen": {"type": "integer", "minimum": 1},
        "next": {"type": "string"},
        "previous": {"type": "string"},
        "values": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["values", "pagelen"],
    "additionalProperties": False,
}


def _load_spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


SPEC = _load_spec()
COMPONENTS: dict[str, Any] = SPEC["components"]["schemas"]


def _ref_name(ref: str) -> str:
    prefix = "#/components/schemas/"
    assert ref.startswith(prefix), ref
    return ref[len(prefix) :]


def _flatten(schema: Any) -> Any:
    """Inline-resolve `allOf` (OpenAPI inheritance) into one object schema.

    JSON Schema applies each allOf branch on its own, so a branch with
    `additionalProperties: false` (e.g. `pullrequest_task`) would reject the properties its
    siblings add. OpenAPI means the union: merge `properties` and `required`; the result is
    closed if any branch was. `$ref`s outside allOf stay references (to flattened copies).
    """
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return {"$ref": f"{SPEC_URI}#/definitions/{_ref_name(schema['$ref'])}"}
    out: dict[str, Any] = {}
    if "allOf" in schema:
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        parts = [_flatten_inline(p) for p in schema["allOf"]] + [_flatten(rest)]
        return _merge(parts)
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: _flatten(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _flatten(value)
        elif key in ("oneOf", "anyOf"):
            out[key] = [_flatten(v) for v in value]
        elif key == "discriminator":
            continue  # OpenAPI-only keyword
        else:
            out[key] = value
    return out


def _flatten_inline(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return _flatten(COMPONENTS[_ref_name(schema["$ref"])])
    return _flatten(schema)


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    props: dict[str, Any] = {}
    required: list[str] = []
    closed = False
    for part in parts:
        for name, sub in part.get("properties", {}).items():
            props[name] = {"allOf": [props[name], sub]} if name in props else sub
        required += [r for r in part.get("required", []) if r not in required]
        if part.get("additionalProperties") is False:
            closed = True
        if "type" in part and "type" not in merged:
            merged["type"] = part["type"]
        for key in ("enum", "items", "format"):
            if key in part and key not in merged:
                merged[key] = part[key]
    if props:
        merged["properties"] = props
    if required:
        merged["required"] = required
    if closed:
        merged["additionalProperties"] = False
    return merged


FLAT_SPEC = {"definitions": {name: _flatten(schema) for name, schema in COMPONENTS.items()}}
REGISTRY: Registry = Registry().with_resource(
    SPEC_URI, Resource.from_contents(FLAT_SPEC, default_specification=DRAFT4)
)


def _validator(schema_name: str) -> Draft4Validator:
    schema = {"$ref": f"{SPEC_URI}#/definitions/{schema_name}"}
    return Draft4Validator(schema, registry=REGISTRY)


def _response_schema_name(template: str) -> str | None:
    """Name of the components schema of the spec's GET 200 response for a path template."""
    op = SPEC["paths"].get(template, {}).get("get")
    if op is None:
        return None
    content = op.get("responses", {}).get("200", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    if not schema or "$ref" not in schema:
        return None
    return str(schema["$ref"]).rsplit("/", 1)[-1]


def _item_schema_name(envelope_name: str) -> str | None:
    items = SPEC["components"]["schemas"][envelope_name]["properties"]["values"]["items"]
    return str(items["$ref"]).rsplit("/", 1)[-1] if "$ref" in items else None


def _exemption_key(schema: str, error: ValidationError) -> str:
    dotted = ".".join("[]" if isinstance(p, int) else str(p) for p in error.absolute_path)
    return f"{schema}:{dotted}:{error.validator}"


def _exempt(key: str, error: ValidationError) -> bool:
    if key not in SCHEMA_EXEMPTIONS:
        return False
    if error.validator == "type":
        return error.instance is None  # only null is tolerated
    if error.validator == "additionalProperties":
        declared = set(error.schema.get("properties", {}))
        extras = set(error.instance) - declared
        return extras <= ALLOWED_EXTRAS[key]
    return False


class Checker:
    """Validates bodies, counting checked paths per route and exemption use."""

    def __init__(self) -> None:
        self.checked: Counter[str] = Counter()
        self.used: Counter[str] = Counter()
        self.violations: dict[str, list[str]] = defaultdict(list)
        self._validators: dict[str, Draft4Validator] = {}
        self._generic = Draft4Validator(GENERIC_ENVELOPE)
        self._cache: dict[tuple[str, str], list[tuple[str, bool, str]]] = {}

    def validator(self, name: str) -> Draft4Validator:
        if name not in self._validators:
            self._validators[name] = _validator(name)
        return self._validators[name]

    def check(self, route: Route, path: str, body: Any, collection: bool) -> None:
        if route.display in NO_SCHEMA_ROUTES:
            self.used[route.display] += 1
            errors = list(self._generic.iter_errors(body)) if collection else []
            if not collection and not isinstance(body, dict):
                self.violations[route.display].append(f"{path}: not an object")
            for err in errors:
                self.violations[route.display].append(f"{path}: {err.message}")
            return
        name = _response_schema_name(route.display)
        if name is None:
            self.violations[route.display].append(f"{path}: no 200 schema in the spec")
            return
        if not collection:
            self._item(route, path, name, body, "")
            return
        # The envelope (additionalProperties false) without its values, then each item on its
        # own against the item schema, so identical objects are validated once.
        values = body.get("values")
        envelope = {**body, "values": []}
        for err in self.validator(name).iter_errors(envelope):
            self.violations[route.display].append(f"{path} envelope: {err.message}")
        if not isinstance(values, list):
            self.violations[route.display].append(f"{path}: values is not a list")
            return
        texts = [json.dumps(v, sort_keys=True) for v in values]
        if len(set(texts)) != len(texts):  # the spec's uniqueItems
            self.violations[route.display].append(f"{path}: duplicate items in values")
        item_schema = _item_schema_name(name)
        assert item_schema is not None, name
        for i, (item, text) in enumerate(zip(values, texts, strict=True)):
            self._item(route, path, item_schema, item, f"values/{i}/", text)

    def _item(
        self, route: Route, path: str, schema: str, item: Any, where: str, text: str = ""
    ) -> None:
        cache_key = (schema, text or json.dumps(item, sort_keys=True))
        if cache_key not in self._cache:
            found: list[tuple[str, bool, str]] = []
            for err in self.validator(schema).iter_errors(item):
                key = _exemption_key(schema, err)
                at = "/".join(str(p) for p in err.absolute_path)
                found.append((key, _exempt(key, err), f"@{at}: {err.message}"))
            self._cache[cache_key] = found
        for key, exempt, message in self._cache[cache_key]:
            if exempt:
                self.used[key] += 1
            else:
                self.violations[route.display].append(f"{path} {where}{message} [{key}]")


class Client:
    """A minimal keep-alive HTTP client (http.client): the sweep makes ~4,500 requests."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=30)
        token = f"{emu.credentials.email}:{emu.credentials.api_token}".encode()
        self.headers = {"Authorization": "Basic " + base64.b64encode(token).decode()}

    def get(self, url_or_path: str) -> tuple[int, Any]:
        if url_or_path.startswith("http"):
            assert url_or_path.startswith(self.emu.api_url + "/"), url_or_path
            url_or_path = url_or_path[len(self.emu.base_url) :]
        self.conn.request("GET", url_or_path, headers=self.headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        assert int(resp.headers["Content-Length"]) == len(raw)
        return resp.status, json.loads(raw)

    def close(self) -> None:
        self.conn.close()


def _quote(path: str) -> str:
    """Percent-encode a decoded dataset path the way a client would send it."""
    return urllib.parse.quote(path, safe="/:@!$&'()*+,;=-._~")


def _fetch_all(client: Client, route: Route, path: str) -> list[dict[str, Any]]:
    params: list[tuple[str, Any]] = [("pagelen", route.max_pagelen)]
    if route.pr_state:
        params += [("state", s) for s in PR_STATES]
        params.append(("fields", "+values." + ",+values.".join(route.omit)))
    url = "/2.0" + _quote(path) + "?" + urllib.parse.urlencode(params)
    pages = []
    while True:
        status, body = client.get(url)
        assert status == 200, (path, status, body)
        pages.append(body)
        if "next" not in body:
            return pages
        url = body["next"]


def run_sweep(emulator: Emulator) -> Checker:
    """GET and validate every collection and object path the dataset serves."""
    checker = Checker()
    dataset = emulator.dataset
    client = Client(emulator)
    try:
        for path in dataset.collection_paths():
            route, _ = match_route(path)
            assert route is not None and route.kind == "collection", path
            pages = _fetch_all(client, route, path)
            served = [item for page in pages for item in page["values"]]
            assert served == dataset.collection(path), path
            for page in pages:
                checker.check(route, path, page, collection=True)
            checker.checked[route.display] += 1
        for path in dataset.object_paths():
            route, _ = match_route(path)
            assert route is not None and route.kind == "object", path
            status, body = client.get("/2.0" + _quote(path))
            assert status == 200, (path, status, body)
            assert body == dataset.object(path), path
            checker.check(route, path, body, collection=False)
            checker.checked[route.display] += 1
    finally:
        client.close()
    return checker


def test_route_table_matches_the_dataset(emulator: Emulator):
    """Every dataset path has a route of the right kind; every servable route has paths."""
    dataset = emulator.dataset
    per_route: Counter[str] = Counter()
    for kind, paths in (
        ("collection", dataset.collection_paths()),
        ("object", dataset.object_paths()),
    ):
        for path in paths:
            route, _ = match_route(path)
            assert route is not None, f"no route for {kind} {path}"
            assert route.kind == kind, (path, route.display)
            per_route[route.display] += 1
    servable = [r.display for r in ROUTES if r.kind in ("collection", "object")]
    assert not [t for t in servable if per_route[t] == 0]


def test_every_served_path_conforms_to_the_spec(emulator: Emulator):
    """One sweep (kept in one test so xdist never runs it twice)."""
    sweep = run_sweep(emulator)
    servable = [r.display for r in ROUTES if r.kind in ("collection", "object")]
    missing = [t for t in servable if sweep.checked[t] == 0]
    assert not missing, f"routes without any checked concrete path: {missing}"
    report = {
        route: [*msgs[:5], f"... {len(msgs)} in all"] for route, msgs in sweep.violations.items()
    }
    assert not report, json.dumps(report, indent=1, ensure_ascii=False)
    unused = [key for key in EXEMPTIONS if sweep.used[key] == 0]
    assert not unused, f"exemptions never needed (remove them): {unused}"
    assert not emulator.internal_errors


def test_exemptions_are_well_formed():
    for template in NO_SCHEMA_ROUTES:
        assert _response_schema_name(template) is None, template
        assert any(r.display == template for r in ROUTES), template
    for key in SCHEMA_EXEMPTIONS:
        schema, _, keyword = key.split(":")
        assert schema in COMPONENTS, key
        assert keyword in ("type", "additionalProperties"), key
        if keyword == "additionalProperties":
            assert ALLOWED_EXTRAS[key], key
    assert set(ALLOWED_EXTRAS) <= set(SCHEMA_EXEMPTIONS)


def test_flattened_allof_keeps_parent_properties():
    """The inline allOf resolution must not lose what the parents declare."""
    flat = FLAT_SPEC["definitions"]["pullrequest_comment_task"]
    assert {"id", "state", "content", "comment"} <= set(flat["properties"])
    assert flat["additionalProperties"] is False
    bad = {"id": 1, "state": "RESOLVED", "bogus": True}
    assert list(_validator("pullrequest_comment_task").iter_errors(bad))
