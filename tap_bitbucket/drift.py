"""Schema drift between Bitbucket Cloud and the tap, read from one sync's output and log.

    tap-bitbucket --config c.json --catalog cat.json > out.jsonl 2> tap.log
    tap-bitbucket-drift --input out.jsonl --log tap.log --summary "$GITHUB_STEP_SUMMARY"

Findings (the weekly canary runs this against Bitbucket Cloud; failing ones exit 1):

* ``new_field``: Bitbucket sends a field the schema lacks. Top-level ones come from the
  SDK's "not found in catalog schema" WARNING (it drops them from the records); nested
  ones are still in the records and are found by walking them against the schema.
  Objects the schema leaves open (``additionalProperties: true``, e.g. ``links``) are
  exempt. Not failing: no data breaks, the new field is only not loaded yet.
* ``vanished_field`` (failing): a field of the baseline is absent from every object
  where it used to be. The baseline (``drift_baseline.json``, written by
  ``--write-baseline`` from a full sync of the test emulator, whose payloads follow the
  recorded Bitbucket responses) lists per stream the paths present in *every* object
  of their parent. A path is judged only when its parent object occurs in the sample, so
  a null ``closed_by`` or an empty list never counts as a vanished field, and a field
  that is optional in Bitbucket's answers (absent from some objects) is never listed.
* ``type_mismatch`` (failing, a broken schema): a value whose JSON type the schema
  does not allow.
* ``removed_endpoint`` (failing): HTTP 410 from the endpoint of a stream.
* ``new_4xx``: another 4xx the stream does not expect (``tolerated_errors``), whether
  the tap skipped the partition or stopped on it. Not failing on its own (a 403 is
  usually a missing scope of the canary's credential); the canary's sync step fails
  when the tap stopped.

Self-contained on purpose: it uses only the stream registry and the schemas, so a
redesign of the tap's runtime leaves it alone. It never prints log lines or record
values, only field paths, stream names, endpoints and statuses.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import typing as t
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from tap_bitbucket.schemas import load_schema
from tap_bitbucket.streams import STREAM_TYPES

__all__ = ["DriftReport", "Finding", "Sample", "analyse", "build_baseline", "main"]

BASELINE_FILE = "drift_baseline.json"
FAILING_KINDS = frozenset({"vanished_field", "type_mismatch", "removed_endpoint"})
_JSON_TYPES: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
    type(None): "null",
}
# The SDK's WARNING for top-level properties it drops (singer_sdk.helpers._typing).
_UNMAPPED = re.compile(
    r"Properties (?P<names>\(.*?\)) were present in the '(?P<stream>[^']+)' stream but "
    r"not found in catalog schema"
)
# The tap's skip WARNING and its one-line fatal error.
_SKIP = re.compile(
    r"Skipping stream '(?P<stream>[^']+)' for \S+ (?P<where>\S+): HTTP (?P<status>\d{3})"
)
_FATAL = re.compile(r"HTTP (?P<status>4\d\d) from (?P<method>[A-Z]+) (?P<path>/\S*?):?(?:\s|$)")


@dataclass(frozen=True, order=True)
class Finding:
    kind: str
    stream: str
    detail: str  # a field path ("author.display_name", "reviewers[].uuid") or an endpoint
    message: str

    @property
    def failing(self) -> bool:
        return self.kind in FAILING_KINDS


def _class_attr(cls: type, attr: str) -> t.Any:
    # `name` and `path` are class attributes of every stream; the SDK types them as
    # instance properties, which mypy will not read from the class.
    return getattr(cls, attr)


def _stream_classes() -> dict[str, t.Any]:
    return {str(_class_attr(cls, "name")): cls for cls in STREAM_TYPES}


def _schema(stream: str) -> dict[str, t.Any] | None:
    cls = _stream_classes().get(stream)
    if cls is None:
        return None
    return load_schema(getattr(cls, "schema_name", None) or stream)


def _types(schema: dict[str, t.Any]) -> set[str]:
    declared = schema.get("type")
    if declared is None:
        return set()
    return {declared} if isinstance(declared, str) else set(declared)


def _type_ok(value: object, schema: dict[str, t.Any]) -> tuple[bool, str]:
    allowed = _types(schema)
    actual = _JSON_TYPES.get(type(value), type(value).__name__)
    if not allowed or actual in allowed:
        return True, actual
    # JSON has one number type: an integer is a valid "number".
    return actual == "integer" and "number" in allowed, actual


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def _child(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


@dataclass
class _StreamSample:
    records: int = 0
    parents: Counter[str] = field(default_factory=Counter)  # path -> objects seen there
    keys: Counter[str] = field(default_factory=Counter)  # path -> objects that had the key
    new_fields: Counter[str] = field(default_factory=Counter)
    mismatches: dict[str, set[str]] = field(default_factory=dict)  # path -> types seen


class Sample:
    """Field presence, undeclared fields and type mismatches over a sync's records."""

    def __init__(self) -> None:
        self.streams: dict[str, _StreamSample] = {}
        self.schema_properties: dict[str, set[str]] = {}  # top level of each SCHEMA message

    def add_message(self, message: dict[str, t.Any]) -> None:
        kind = message.get("type")
        if kind == "SCHEMA":
            props = (message.get("schema") or {}).get("properties") or {}
            self.schema_properties[message["stream"]] = set(props)
        elif kind == "RECORD":
            self.add_record(message["stream"], message.get("record") or {})

    def add_record(self, stream: str, record: dict[str, t.Any]) -> None:
        sample = self.streams.setdefault(stream, _StreamSample())
        sample.records += 1
        self._walk(sample, record, "", _schema(stream))

    def _walk(self, sample: _StreamSample, obj: dict[str, t.Any], path: str, schema: t.Any) -> None:
        sample.parents[path] += 1
        props = schema.get("properties") if isinstance(schema, dict) else None
        is_open = not isinstance(schema, dict) or schema.get("additionalProperties") is True
        for key, value in obj.items():
            child = _child(path, key)
            sample.keys[child] += 1
            sub = props.get(key) if props is not None else None
            if props is not None and sub is None and not is_open:
                sample.new_fields[child] += 1
            if isinstance(sub, dict):
                ok, actual = _type_ok(value, sub)
                if not ok:
                    sample.mismatches.setdefault(child, set()).add(actual)
            self._descend(sample, value, child, sub)

    def _descend(self, sample: _StreamSample, value: t.Any, path: str, schema: t.Any) -> None:
        if isinstance(value, dict):
            self._walk(sample, value, path, schema)
        elif isinstance(value, list):
            items = schema.get("items") if isinstance(schema, dict) else None
            for item in value:
                if isinstance(item, dict):
                    self._walk(sample, item, path + "[]", items)
                elif isinstance(items, dict):
                    ok, actual = _type_ok(item, items)
                    if not ok:
                        sample.mismatches.setdefault(path + "[]", set()).add(actual)

    def always_present(self) -> dict[str, list[str]]:
        """stream -> the paths present in every object of their parent path."""
        out: dict[str, list[str]] = {}
        for stream, sample in sorted(self.streams.items()):
            paths = [p for p, n in sample.keys.items() if n == sample.parents[_parent(p)]]
            out[stream] = sorted(paths)
        return out


def load_baseline() -> dict[str, list[str]]:
    text = resources.files("tap_bitbucket").joinpath(BASELINE_FILE).read_text(encoding="utf-8")
    return t.cast("dict[str, list[str]]", json.loads(text)["streams"])


def build_baseline(messages: Iterable[dict[str, t.Any]]) -> dict[str, t.Any]:
    sample = Sample()
    for message in messages:
        sample.add_message(message)
    return {
        "$comment": "Written by tap-bitbucket-drift --write-baseline from a full sync of the "
        "test emulator (scripts/update_drift_baseline.py); do not edit.",
        "streams": sample.always_present(),
    }


def _endpoint_patterns() -> list[tuple[str, str, re.Pattern[str]]]:
    patterns = []
    for cls in STREAM_TYPES:
        template = str(_class_attr(cls, "path"))
        regex = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
        patterns.append((str(_class_attr(cls, "name")), template, re.compile(f"{regex}/?$")))
    # Longest first: `/pullrequests/{id}/comments` must not be taken for `/pullrequests`.
    return sorted(patterns, key=lambda p: -len(p[1]))


def _status_finding(stream: str, status: int, endpoint: str, how: str) -> Finding | None:
    cls = _stream_classes().get(stream)
    tolerated = getattr(cls, "tolerated_errors", {}) if cls is not None else {}
    if status == 410:
        return Finding("removed_endpoint", stream, endpoint, f"HTTP 410 Gone ({how})")
    if status not in tolerated:
        return Finding("new_4xx", stream, endpoint, f"HTTP {status} ({how})")
    return None


def scan_log(lines: Iterable[str]) -> tuple[set[Finding], Counter[str]]:
    """Findings in the tap's log, and the top-level fields the SDK dropped (per stream)."""
    findings: set[Finding] = set()
    dropped: Counter[str] = Counter()
    patterns = _endpoint_patterns()
    for line in lines:
        if match := _UNMAPPED.search(line):
            try:
                names = ast.literal_eval(match["names"])
            except (ValueError, SyntaxError):
                continue
            for name in names if isinstance(names, tuple) else ():
                dropped[f"{match['stream']}\0{name}"] += 1
        elif match := _SKIP.search(line):
            stream = match["stream"]
            cls = _stream_classes().get(stream)
            endpoint = str(cls.path) if cls is not None else stream
            found = _status_finding(stream, int(match["status"]), endpoint, "partition skipped")
            if found:
                findings.add(found)
        elif match := _FATAL.search(line):
            path = match["path"].split("?", 1)[0]
            for stream, template, regex in patterns:
                if regex.search(path):
                    found = _status_finding(stream, int(match["status"]), template, "sync stopped")
                    if found:
                        findings.add(found)
                    break
            else:
                findings.add(Finding("new_4xx", "", path, f"HTTP {match['status']} (sync stopped)"))
    return findings, dropped


@dataclass
class DriftReport:
    findings: list[Finding]
    records: dict[str, int]

    @property
    def failing(self) -> bool:
        return any(f.failing for f in self.findings)

    def to_json(self) -> dict[str, t.Any]:
        return {
            "failing": self.failing,
            "records": self.records,
            "findings": [{**asdict(f), "failing": f.failing} for f in self.findings],
        }

    def to_markdown(self) -> str:
        lines = ["## Bitbucket schema drift", ""]
        verdict = "**FAIL**: a removed endpoint or a broken schema" if self.failing else "OK"
        lines += [
            f"Result: {verdict}. Records read: {sum(self.records.values())} "
            f"in {len(self.records)} streams.",
            "",
        ]
        if not self.findings:
            lines.append("No drift: every field matches the schemas and the baseline.")
            return "\n".join(lines) + "\n"
        lines += ["| finding | stream | field or endpoint | detail |", "|---|---|---|---|"]
        for f in self.findings:
            mark = " (failing)" if f.failing else ""
            lines.append(f"| `{f.kind}`{mark} | `{f.stream}` | `{f.detail}` | {f.message} |")
        return "\n".join(lines) + "\n"


def analyse(
    messages: Iterable[dict[str, t.Any]],
    log_lines: Iterable[str] = (),
    baseline: dict[str, list[str]] | None = None,
) -> DriftReport:
    sample = Sample()
    for message in messages:
        sample.add_message(message)
    findings, dropped = scan_log(log_lines)
    for key in dropped:
        stream, name = key.split("\0", 1)
        findings.add(Finding("new_field", stream, name, "sent by Bitbucket, not in the schema"))
    for stream, s in sample.streams.items():
        for path, n in s.new_fields.items():
            findings.add(
                Finding("new_field", stream, path, f"sent by Bitbucket, not in the schema ({n}x)")
            )
        for path, seen in s.mismatches.items():
            findings.add(
                Finding(
                    "type_mismatch",
                    stream,
                    path,
                    "type " + ", ".join(sorted(seen)) + " is not allowed by the schema",
                )
            )
    baseline = load_baseline() if baseline is None else baseline
    for stream, s in sample.streams.items():
        selected = sample.schema_properties.get(stream)
        for path in baseline.get(stream, []):
            top = path.split(".", 1)[0].removesuffix("[]")
            # Properties deselected in the catalog are not in the SCHEMA message either.
            if selected is not None and top not in selected:
                continue
            if s.parents[_parent(path)] and not s.keys[path]:
                findings.add(
                    Finding(
                        "vanished_field",
                        stream,
                        path,
                        f"absent from all {s.parents[_parent(path)]} objects that used to have it",
                    )
                )
    ordered = sorted(findings, key=lambda f: (not f.failing, f.kind, f.stream, f.detail))
    return DriftReport(ordered, {k: v.records for k, v in sorted(sample.streams.items())})


def _read_messages(lines: Iterable[str]) -> Iterator[dict[str, t.Any]]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise SystemExit(f"tap-bitbucket-drift: line {number} is not JSON: {exc}") from None
        if isinstance(message, dict):
            yield message


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tap-bitbucket-drift",
        description="Report schema drift and new 4xx answers from a tap-bitbucket sync.",
    )
    parser.add_argument("--input", type=Path, help="the tap's stdout (default: stdin)")
    parser.add_argument("--log", type=Path, help="the tap's stderr (its log)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--summary", type=Path, help="append the Markdown report here")
    parser.add_argument(
        "--write-baseline",
        type=Path,
        metavar="FILE",
        help="write the always-present fields of this sync as the baseline, then stop",
    )
    args = parser.parse_args(argv)
    source = args.input.open(encoding="utf-8") if args.input else sys.stdin
    with source:
        messages = list(_read_messages(source))
    if args.write_baseline:
        document = build_baseline(messages)
        args.write_baseline.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        return 0
    log_lines = args.log.read_text(encoding="utf-8").splitlines() if args.log else []
    report = analyse(messages, log_lines)
    markdown = report.to_markdown()
    sys.stdout.write(markdown)
    if args.summary:
        with args.summary.open("a", encoding="utf-8") as summary:
            summary.write(markdown)
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    return 1 if report.failing else 0


if __name__ == "__main__":
    raise SystemExit(main())
