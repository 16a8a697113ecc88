"""Every emitted record checked against its stream's SCHEMA (issue 16).

A record that Bitbucket sent in a shape the schema does not allow (a new nested field
where the schema is closed, a string where it says integer, null where it says object)
is still emitted as sent: dropping or rewriting it would lose data silently. It is
reported instead, by a WARNING naming the stream, the record's key and the field, so
the loader's failure (targets validate against the same SCHEMA) or the odd row in the
warehouse has a cause in the tap's log.

The check runs in the writer, on the RECORD exactly as written, against the SCHEMA
exactly as written (after stream maps and catalog selection).

Speed: the library's validators cost too much on this path (measured on the
emulator's full sync, 4,773 records): ``jsonschema`` 282 µs a record, more than half
the tap's whole per-record time; ``fastjsonschema`` 17.5 µs a record, but 1.2 s of
code generation for the 29 schemas, which are large because Bitbucket nests the
repository object everywhere. So a record first goes through :func:`compile_fast`, a
yes/no check of exactly the keywords the tap's schemas use (``type``, ``properties``,
``additionalProperties``, ``items``, ``required``, ``format: date-time``), built once
per stream from closures. Only a record it rejects goes to ``jsonschema`` (Draft 7, the
SDK's own dependency), which says what is wrong and where. A schema with any other
keyword (a stream map can write one) is checked by ``jsonschema`` alone.
``tests/test_record_check.py`` pins that both agree on generated records.
"""

from __future__ import annotations

import json
import logging
import re
import typing as t
from collections import Counter
from datetime import datetime

from jsonschema import Draft7Validator, FormatChecker

LOGGER = logging.getLogger("tap_bitbucket")

#: Invalid records named one by one per stream; the rest are counted at the end.
NAMED_PER_STREAM = 20

Check = t.Callable[[t.Any], bool]

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$")
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}
_JSON_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean"}
_JSON_NAMES.update({dict: "object", list: "array", type(None): "null"})
_ANNOTATIONS = frozenset({"description", "title", "examples", "default", "$comment"})
_FAST_KEYWORDS = frozenset(
    {"type", "properties", "additionalProperties", "items", "required", "format"}
)


def is_date_time(value: object) -> bool:
    """RFC 3339 ``date-time`` with at most 6 fractional digits: what the tap writes and
    what every target parses (a non-string is some other keyword's business)."""
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return True


def full_validator(schema: dict[str, t.Any]) -> Draft7Validator:
    checker = FormatChecker(formats=())
    checker.checks("date-time")(is_date_time)
    return Draft7Validator(schema, format_checker=checker)


def compile_fast(schema: t.Any) -> Check | None:
    """A yes/no check equal to Draft 7 validation of ``schema``; None when the schema
    uses a keyword (or a form of one) that it does not implement."""
    if schema is True or schema == {}:
        return _always
    if not isinstance(schema, dict):
        return None
    if set(schema) - _ANNOTATIONS - _FAST_KEYWORDS:
        return None
    checks: list[Check] = []
    if "type" in schema:
        type_check = _type_check(schema["type"])
        if type_check is None:
            return None
        checks.append(type_check)
    if "format" in schema:
        if schema["format"] != "date-time":
            return None
        checks.append(is_date_time)
    object_check = _object_check(schema)
    if object_check is False:
        return None
    if object_check is not None:
        checks.append(object_check)
    if "items" in schema:
        item = compile_fast(schema["items"])
        if item is None:
            return None
        checks.append(lambda value: not isinstance(value, list) or all(map(item, value)))
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda value: first(value) and second(value)
    return lambda value: all(check(value) for check in checks)


def _always(value: t.Any) -> bool:
    return True


def _type_check(types: t.Any) -> Check | None:
    names = [types] if isinstance(types, str) else types
    if not isinstance(names, list) or not all(n in _PY_TYPES for n in names):
        return None
    exact = frozenset(py for name in names for py in _PY_TYPES[name])
    # Draft 7: 1.0 is an integer; True is a boolean only (exact type() tests keep it so).
    integral_floats = "integer" in names and float not in exact

    def check(value: t.Any) -> bool:
        kind = type(value)
        if kind in exact:
            return True
        return integral_floats and kind is float and value.is_integer()

    return check


def _object_check(schema: dict[str, t.Any]) -> Check | t.Literal[False] | None:
    """The object keywords' check; None when there are none, False when unsupported."""
    if not {"properties", "additionalProperties", "required"} & set(schema):
        return None
    properties: dict[str, Check] = {}
    for name, sub in (schema.get("properties") or {}).items():
        compiled = compile_fast(sub)
        if compiled is None:
            return False
        properties[name] = compiled
    closed = schema.get("additionalProperties", True)
    if closed not in (True, False):
        return False
    closed = closed is False
    required = tuple(schema.get("required") or ())

    def check(value: t.Any) -> bool:
        if not isinstance(value, dict):
            return True
        for key in required:
            if key not in value:
                return False
        for key, item in value.items():
            sub = properties.get(key)
            if sub is None:
                if closed:
                    return False
            elif sub is not _always and not sub(item):
                return False
        return True

    return check


class StreamCheck:
    """One stream's check, built from the SCHEMA message the writer wrote."""

    def __init__(self, stream: str, schema: dict[str, t.Any], keys: list[str]) -> None:
        self.stream = stream
        self.keys = keys
        self._fast = compile_fast(schema)
        self._full = full_validator(schema)
        self.invalid = 0
        self.fields: Counter[str] = Counter()

    def check(self, record: dict[str, t.Any]) -> None:
        if self._fast is not None and self._fast(record):
            return
        problems = [_describe(error) for error in self._full.iter_errors(record)]
        if not problems:
            return
        self.invalid += 1
        self.fields.update(field for field, _ in problems)
        if self.invalid > NAMED_PER_STREAM:
            return
        key = json.dumps({k: record.get(k) for k in self.keys}, default=str)
        what = "; ".join(f"field '{field}' {problem}" for field, problem in problems[:5])
        LOGGER.warning(
            "Record of stream '%s' with key %s does not match the stream's schema: %s. It "
            "was emitted as sent; if Bitbucket changed this field, report it so the schema "
            "can follow.",
            self.stream,
            key,
            what,
        )

    def summary(self) -> None:
        if self.invalid <= NAMED_PER_STREAM:
            return
        LOGGER.warning(
            "Stream '%s': %d records did not match the stream's schema (fields: %s); the "
            "first %d are named above, and all were emitted as sent.",
            self.stream,
            self.invalid,
            ", ".join(sorted(self.fields)),
            NAMED_PER_STREAM,
        )


def _describe(error: t.Any) -> tuple[str, str]:
    """(field path, what is wrong) for one jsonschema error, never the value itself: a
    record can hold text nobody wants in a log."""
    path = ".".join(str(p) for p in error.absolute_path)
    keyword = error.validator
    if keyword == "required":
        missing = [k for k in error.validator_value if k not in (error.instance or {})]
        field = ".".join(p for p in (path, missing[0] if missing else "") if p)
        return field, "is missing"
    if keyword == "additionalProperties":
        extra = re.findall(r"'([^']+)'", error.message.split("(", 1)[-1])
        field = ".".join(p for p in (path, extra[0] if extra else "") if p)
        return field, "is not in the schema (its object is closed)"
    if keyword == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        got = _JSON_NAMES.get(type(error.instance), type(error.instance).__name__)
        return path, f"should be {expected}, is {got}"
    if keyword == "format":
        return path, f"is not a valid {error.validator_value}"
    return path, f"fails '{keyword}'"
