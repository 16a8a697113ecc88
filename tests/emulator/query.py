"""Bitbucket Cloud's generic query language (`q`), `sort` and partial responses (`fields`).

Behaviour follows docs/bitbucket-narrative/02-filtering.md and 04-partial-response.md:

* ``q``: comparisons ``= != ~ !~ > >= < <=``, ``IN`` / ``NOT IN`` lists, ``AND`` / ``OR``
  (case-insensitive keywords) and parentheses (``AND`` binds tighter than ``OR``). Literals:
  double-quoted strings, numbers, ``null``, ``true`` / ``false`` and unquoted ISO-8601 datetimes
  (offset, fraction and the whole time part optional; no offset means UTC). A quoted string
  that is an ISO-8601 datetime is compared as a datetime when the field value is one too.
  Field paths are dotted (``destination.branch.name``); a path that runs through a list
  (``reviewers.uuid``) matches when ANY element matches for the positive operators and
  when NO element matches for ``!=``, ``!~`` and ``NOT IN``. A missing field is ``null``.
* ``sort``: exactly one field, ``-`` prefix for descending; stable; nulls first ascending.
* ``fields``: comma-separated specs applied in order. ``-path`` removes, ``+path`` adds
  (copies from the full representation, so fields a collection omits by default can be
  pulled in), a bare ``path`` switches to include-only mode (the response starts empty, so
  ``next``/``page``/``size`` vanish unless listed). ``*`` matches every key at its level.
  A literal, unencoded ``+`` arrives as a space; such a spec (" values.x") names no field.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = [
    "FieldsSpec",
    "QueryError",
    "apply_fields",
    "compile_query",
    "parse_datetime",
    "parse_fields",
    "parse_sort",
    "sort_items",
]


class QueryError(ValueError):
    """A malformed `q`, `sort` or `fields` parameter (answered with 400)."""


# --------------------------------------------------------------------------------------------
# datetimes

_DT_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)


def parse_datetime(value: str) -> datetime | None:
    """Parse ISO-8601 leniently (Z, 0-9 digit fractions, date only); naive means UTC."""
    m = _DT_RE.match(value)
    if not m:
        return None
    year, month, day, hour, minute, second, frac, off = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    tz = timezone.utc
    if off and off not in ("Z", "z"):
        sign = -1 if off[0] == "-" else 1
        digits = off[1:].replace(":", "")
        hours = int(digits[:2])
        minutes = int(digits[2:4] or 0)
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
            tzinfo=tz,
        )
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# tokenizer

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<op>!=|!~|>=|<=|=|~|>|<)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<datetime>\d{4}-\d{2}-\d{2}
        (?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?
        (?:Z|[+-]\d{2}:?\d{2})?)
  | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
  | (?P<word>[A-Za-z_][A-Za-z0-9_.\-]*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            snippet = text[pos : pos + 20]
            raise QueryError(f"Invalid query: unexpected input at position {pos}: {snippet!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            toks.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    return toks


# --------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class _Lit:
    kind: str  # "string" | "number" | "datetime" | "null" | "bool"
    value: Any
    dt: datetime | None = None  # parsed form of datetime literals and ISO-looking strings


@dataclass(frozen=True)
class _Cmp:
    path: tuple[str, ...]
    op: str  # = != ~ !~ > >= < <= IN NOT IN
    lits: tuple[_Lit, ...]


@dataclass(frozen=True)
class _Bool:
    op: str  # AND | OR
    left: Any
    right: Any


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise QueryError("Invalid query: unexpected end of expression")
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "word" and tok.text.upper() == word

    def parse(self) -> Any:
        if not self.toks:
            raise QueryError("Invalid query: empty expression")
        node = self.parse_or()
        tok = self.peek()
        if tok is not None:
            raise QueryError(f"Invalid query: unexpected {tok.text!r} at position {tok.pos}")
        return node

    def parse_or(self) -> Any:
        node = self.parse_and()
        while self.keyword("OR"):
            self.take()
            node = _Bool("OR", node, self.parse_and())
        return node

    def parse_and(self) -> Any:
        node = self.parse_term()
        while self.keyword("AND"):
            self.take()
            node = _Bool("AND", node, self.parse_term())
        return node

    def parse_term(self) -> Any:
        tok = self.peek()
        if tok is not None and tok.kind == "lparen":
            self.take()
            node = self.parse_or()
            close = self.take()
            if close.kind != "rparen":
                raise QueryError(f"Invalid query: expected ')' at position {close.pos}")
            return node
        return self.parse_comparison()

    def parse_comparison(self) -> _Cmp:
        tok = self.take()
        if tok.kind != "word" or tok.text.upper() in ("AND", "OR", "IN", "NOT"):
            raise QueryError(f"Invalid query: expected a field name at position {tok.pos}")
        path = tuple(tok.text.split("."))
        if any(not part for part in path):
            raise QueryError(f"Invalid query: invalid field name {tok.text!r}")
        if self.keyword("NOT"):
            self.take()
            if not self.keyword("IN"):
                raise QueryError("Invalid query: expected IN after NOT")
            self.take()
            return _Cmp(path, "NOT IN", self.parse_list())
        if self.keyword("IN"):
            self.take()
            return _Cmp(path, "IN", self.parse_list())
        op = self.take()
        if op.kind != "op":
            raise QueryError(f"Invalid query: expected an operator at position {op.pos}")
        return _Cmp(path, op.text, (self.parse_literal(),))

    def parse_list(self) -> tuple[_Lit, ...]:
        tok = self.take()
        if tok.kind != "lparen":
            raise QueryError(f"Invalid query: expected '(' at position {tok.pos}")
        items = [self.parse_literal()]
        while True:
            tok = self.take()
            if tok.kind == "rparen":
                return tuple(items)
            if tok.kind != "comma":
                raise QueryError(f"Invalid query: expected ',' or ')' at position {tok.pos}")
            items.append(self.parse_literal())

    def parse_literal(self) -> _Lit:
        tok = self.take()
        if tok.kind == "string":
            raw = tok.text[1:-1]
            value = re.sub(r"\\(.)", r"\1", raw)
            return _Lit("string", value, parse_datetime(value))
        if tok.kind == "number":
            num = float(tok.text) if "." in tok.text else int(tok.text)
            return _Lit("number", num)
        if tok.kind == "datetime":
            dt = parse_datetime(tok.text)
            if dt is None:
                raise QueryError(f"Invalid query: invalid datetime {tok.text!r}")
            return _Lit("datetime", tok.text, dt)
        if tok.kind == "word":
            low = tok.text.lower()
            if low == "null":
                return _Lit("null", None)
            if low in ("true", "false"):
                return _Lit("bool", low == "true")
        raise QueryError(f"Invalid query: expected a value at position {tok.pos}, got {tok.text!r}")


# --------------------------------------------------------------------------------------------
# evaluation


def _resolve(item: Any, path: Sequence[str]) -> list[Any]:
    """All values at `path`, flattening lists along the way; a missing key gives None."""
    current = [item]
    for part in path:
        nxt: list[Any] = []
        for value in current:
            if isinstance(value, list):
                for elem in value:
                    nxt.append(elem.get(part) if isinstance(elem, dict) else None)
            elif isinstance(value, dict):
                nxt.append(value.get(part))
            else:
                nxt.append(None)
        current = nxt
    out: list[Any] = []
    for value in current:
        if isinstance(value, list):
            out.extend(value)
        else:
            out.append(value)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ordered(op: str, a: Any, b: Any) -> bool:
    if op == "=":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    return False


def _match_one(value: Any, op: str, lit: _Lit) -> bool:
    """Positive comparison of one field value with one literal (op never negative here)."""
    if lit.kind == "null":
        return value is None if op == "=" else False
    if value is None:
        return False
    if op == "~":
        return (
            isinstance(value, str)
            and isinstance(lit.value, str)
            and (lit.value.lower() in value.lower())
        )
    if lit.kind == "bool":
        return isinstance(value, bool) and op == "=" and value == lit.value
    if lit.kind == "number":
        return _is_number(value) and _ordered(op, value, lit.value)
    if lit.kind == "datetime" or (lit.kind == "string" and lit.dt is not None):
        if isinstance(value, str):
            dt = parse_datetime(value)
            if dt is not None and lit.dt is not None:
                return _ordered(op, dt, lit.dt)
        if lit.kind == "datetime":
            return False
    if lit.kind == "string":
        return isinstance(value, str) and _ordered(op, value, lit.value)
    return False


_NEGATED = {"!=": "=", "!~": "~", "NOT IN": "IN"}


def _eval(node: Any, item: Any) -> bool:
    if isinstance(node, _Bool):
        if node.op == "AND":
            return _eval(node.left, item) and _eval(node.right, item)
        return _eval(node.left, item) or _eval(node.right, item)
    values = _resolve(item, node.path)
    op = node.op
    positive = _NEGATED.get(op, op)
    if positive == "IN":
        hit = any(_match_one(v, "=", lit) for v in values for lit in node.lits)
    else:
        hit = any(_match_one(v, positive, node.lits[0]) for v in values)
    return (not hit) if op in _NEGATED else hit


@dataclass(frozen=True)
class Query:
    """A compiled `q` expression."""

    text: str
    root: Any

    def matches(self, item: Any) -> bool:
        return _eval(self.root, item)

    def filter(self, items: Iterable[Any]) -> list[Any]:
        return [item for item in items if _eval(self.root, item)]

    def fields(self) -> set[str]:
        """Dotted field paths the expression mentions."""
        out: set[str] = set()
        stack = [self.root]
        while stack:
            node = stack.pop()
            if isinstance(node, _Bool):
                stack.extend((node.left, node.right))
            else:
                out.add(".".join(node.path))
        return out


def compile_query(text: str) -> Query:
    """Parse a `q` expression; raises QueryError with a message for the 400 envelope."""
    return Query(text, _Parser(text).parse())


# --------------------------------------------------------------------------------------------
# sort

_SORT_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def parse_sort(value: str) -> tuple[tuple[str, ...], bool]:
    """`sort=field` / `sort=-field` -> (path, descending). Exactly one field."""
    text = value.strip()
    descending = text.startswith("-")
    if descending:
        text = text[1:]
    if "," in text:
        raise QueryError("Only one field can be sorted on")
    if not _SORT_FIELD_RE.match(text) or text.endswith("."):
        raise QueryError(f"Invalid sort field: {value!r}")
    return tuple(text.split(".")), descending


def _sort_key(value: Any) -> tuple[Any, ...]:
    if value is None:
        return (0,)
    if isinstance(value, bool):
        return (1, value)
    if _is_number(value):
        return (2, value)
    if isinstance(value, str):
        dt = parse_datetime(value) if value[:1].isdigit() else None
        if dt is not None:
            return (3, dt)
        return (4, value)
    return (5, repr(value))


def _natural_key(value: Any) -> tuple[Any, ...]:
    if not isinstance(value, str):
        return _sort_key(value)
    parts = re.split(r"(\d+)", value)
    return (4, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p))


def sort_items(
    items: list[Any], path: Sequence[str], descending: bool, natural: bool = False
) -> list[Any]:
    """Stable sort on one field; `natural` compares digit runs as numbers (v1.9 < v1.10)."""
    keyfunc = _natural_key if natural else _sort_key

    def key(item: Any) -> tuple[Any, ...]:
        values = _resolve(item, path)
        return keyfunc(values[0] if values else None)

    return sorted(items, key=key, reverse=descending)


# --------------------------------------------------------------------------------------------
# fields (partial responses)


@dataclass(frozen=True)
class FieldsSpec:
    """A parsed `fields=` parameter: an ordered list of (mode, path) and the start mode."""

    ops: tuple[tuple[str, tuple[str, ...]], ...]  # mode in "-", "+", "="
    include_only: bool

    def adds(self, path: Sequence[str]) -> bool:
        """True if some "+"/include spec names `path` exactly or a prefix/extension of it."""
        target = tuple(path)
        for mode, p in self.ops:
            if mode == "-":
                continue
            n = min(len(p), len(target))
            if all(a == b or a == "*" for a, b in zip(p[:n], target[:n], strict=True)):
                return True
        return False


def parse_fields(value: str) -> FieldsSpec:
    ops: list[tuple[str, tuple[str, ...]]] = []
    include_only = False
    for raw in value.split(","):
        if raw == "":
            continue
        if raw.startswith("-"):
            mode, name = "-", raw[1:]
        elif raw.startswith("+"):
            mode, name = "+", raw[1:]
        else:
            # Includes " values.x" (an unencoded "+" decoded as a space): it names no field.
            mode, name = "=", raw
            include_only = True
        ops.append((mode, tuple(name.split("."))))
    return FieldsSpec(tuple(ops), include_only)


def _keys(node: dict[str, Any], seg: str) -> list[str]:
    if seg == "*":
        return list(node.keys())
    return [seg] if seg in node else []


def _copy_path(src: Any, dst: Any, path: Sequence[str]) -> None:
    """Copy the subtree(s) at `path` from src into dst (both dicts), merging."""
    if not isinstance(src, dict) or not isinstance(dst, dict):
        return
    seg, rest = path[0], path[1:]
    for key in _keys(src, seg):
        value = src[key]
        if not rest:
            dst[key] = copy.deepcopy(value)
            continue
        if isinstance(value, dict):
            child = dst.get(key)
            if not isinstance(child, dict):
                child = dst[key] = {}
            _copy_path(value, child, rest)
        elif isinstance(value, list):
            existing = dst.get(key)
            if not isinstance(existing, list) or len(existing) != len(value):
                existing = dst[key] = [{} if isinstance(v, dict) else None for v in value]
            for i, elem in enumerate(value):
                if isinstance(elem, dict):
                    if not isinstance(existing[i], dict):
                        existing[i] = {}
                    _copy_path(elem, existing[i], rest)
            # Elements that are not objects cannot have sub-fields: drop the placeholders.
            if any(not isinstance(v, dict) for v in value):
                dst[key] = [v for v in existing if v is not None]


def _remove_path(node: Any, path: Sequence[str]) -> None:
    if isinstance(node, list):
        for elem in node:
            _remove_path(elem, path)
        return
    if not isinstance(node, dict):
        return
    seg, rest = path[0], path[1:]
    for key in _keys(node, seg):
        if rest:
            _remove_path(node[key], rest)
        else:
            del node[key]


def apply_fields(
    full: dict[str, Any],
    spec: FieldsSpec,
    default: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Apply a `fields` spec.

    `full` is the complete representation (including fields omitted by default);
    `default()` builds the normal representation (a fresh, mutable copy). Without `default`
    the full representation is the normal one.
    """
    if spec.include_only:
        result: dict[str, Any] = {}
    else:
        result = default() if default is not None else copy.deepcopy(full)
    for mode, path in spec.ops:
        if mode == "-":
            _remove_path(result, path)
        else:
            _copy_path(full, result, path)
    return result
