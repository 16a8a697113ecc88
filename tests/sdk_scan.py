"""The scan behind tests/test_sdk_public_api.py: the tap uses the singer-sdk's public
API only (issue 12).

An AST scan of every module of `tap_bitbucket/` fails on:

(a) an import of a private singer_sdk name: a module or name starting with `_`
    (`from singer_sdk.helpers._state import ...`, `import singer_sdk._x`,
    `from singer_sdk.x import _y`), or a private attribute reached through an imported
    SDK name (`singer_sdk.helpers._state.x`, `Tap._private`);
(b) a method (or class-level attribute) of a class deriving, directly or not, from an SDK
    class that overrides an SDK attribute marked `@final` or a private one (`_name`, not
    dunder), or a method of such a class that writes the SDK's private instance state
    (`self._config[...] = ...`, where an SDK base assigns `self._config`). The SDK classes
    are inspected at test time: `typing.final` sets `__final__` on the function;
    `@final @property` loses that marker at run time (a property takes no attributes), so
    the decorators in the SDK class's own source count too;
(c) monkeypatching: an assignment to (or `del` of) an attribute of an imported module or
    class (`singer_sdk.x.y = ...`, `sys.excepthook = ...`), or `setattr`/`delattr` on one.
    ALLOWED lists the two process-level assignments cli.py makes on purpose.

`scan_package()` scans tap_bitbucket/; `scan_snippet(source)` scans a planted offence
(tests/test_sdk_public_api.py has a self-test for each rule).
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tap_bitbucket"
SDK = "singer_sdk"


@dataclass(frozen=True)
class Offence:
    where: str  # file:line
    rule: str  # "private-import" | "sdk-override" | "monkeypatch"
    text: str

    def __str__(self) -> str:
        return f"{self.where}: [{self.rule}] {self.text}"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imported_names(tree: ast.AST) -> dict[str, str]:
    """Local name -> what it was imported as ("os", "singer_sdk.helpers", "singer_sdk:Tap")."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    root = alias.name.split(".")[0]
                    names[root] = root
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}:{alias.name}"
    return names


def _is_sdk(origin: str) -> bool:
    return origin == SDK or origin.startswith((f"{SDK}.", f"{SDK}:"))


def _chain(node: ast.expr) -> list[str] | None:
    """`a.b.c` -> ["a", "b", "c"]; None when the root is not a plain name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


# ------------------------------------------------------------------ (a) private imports


def private_imports(tree: ast.AST, where: str) -> list[Offence]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_sdk(alias.name) and any(_private(p) for p in alias.name.split(".")):
                    found.append(Offence(f"{where}:{node.lineno}", "private-import", alias.name))
        elif isinstance(node, ast.ImportFrom) and node.module and _is_sdk(node.module):
            private_module = any(_private(p) for p in node.module.split("."))
            for alias in node.names:
                if private_module or _private(alias.name):
                    text = f"from {node.module} import {alias.name}"
                    found.append(Offence(f"{where}:{node.lineno}", "private-import", text))
    imported = _imported_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            chain = _chain(node)
            if chain and _is_sdk(imported.get(chain[0], "")):
                text = ".".join(chain)
                found.append(Offence(f"{where}:{node.lineno}", "private-import", text))
    return found


# ------------------------------------------------------------------ (b) SDK overrides


@functools.cache
def _final_in_source(cls: type) -> frozenset[str]:
    """Names decorated `@final` in the SDK class's own source (properties included)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return frozenset()
    names = set()
    for node in tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for deco in node.decorator_list:
                chain = _chain(deco)
                if chain and chain[-1] == "final":
                    names.add(node.name)
    return frozenset(names)


@functools.cache
def _private_state(cls: type) -> frozenset[str]:
    """Private instance attributes the SDK class's own source assigns (`self._x = ...`)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return frozenset()
    return frozenset(
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
        and _private(node.attr)
    )


def _self_writes(node: ast.ClassDef) -> list[tuple[str, int]]:
    """`self._x` written by the class's methods: `self._x = `, `self._x[k] = `, `self._x.y = `,
    `del self._x[k]`."""
    found = []
    for item in ast.walk(node):
        targets: list[ast.expr] = []
        if isinstance(item, ast.Assign | ast.Delete):
            targets = list(item.targets)
        elif isinstance(item, ast.AugAssign | ast.AnnAssign):
            targets = [item.target]
        for target in targets:
            while isinstance(target, ast.Subscript | ast.Attribute) and not (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            ):
                target = target.value
            if isinstance(target, ast.Attribute) and _private(target.attr):
                found.append((target.attr, item.lineno))
    return found


def _final_at_runtime(value: Any) -> bool:
    for candidate in (value, getattr(value, "fget", None), getattr(value, "__func__", None)):
        if getattr(candidate, "__final__", False):
            return True
    return False


def sdk_owner(cls: type, name: str) -> tuple[type, str] | None:
    """(SDK class, why) when `name` defined on `cls` overrides a final or private SDK
    attribute of one of its SDK bases; None otherwise."""
    for base in cls.__mro__[1:]:
        if not base.__module__.startswith(SDK) or name not in vars(base):
            continue
        if _final_at_runtime(vars(base)[name]) or name in _final_in_source(base):
            return base, "@final"
        if _private(name):
            return base, "private"
    return None


def _own_names(node: ast.ClassDef) -> list[tuple[str, int]]:
    names = []
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            names.append((item.name, item.lineno))
        elif isinstance(item, ast.Assign):
            names += [(t.id, item.lineno) for t in item.targets if isinstance(t, ast.Name)]
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            names.append((item.target.id, item.lineno))
    return names


def sdk_overrides(tree: ast.Module, namespace: dict[str, Any], where: str) -> list[Offence]:
    found = []
    for node in tree.body:
        cls = namespace.get(node.name) if isinstance(node, ast.ClassDef) else None
        if not isinstance(cls, type):
            continue
        for name, line in _own_names(node):
            owner = sdk_owner(cls, name)
            if owner:
                base, why = owner
                text = f"{cls.__name__}.{name} overrides {why} {base.__module__}.{base.__name__}"
                found.append(Offence(f"{where}:{line}", "sdk-override", text))
        sdk_bases = [b for b in cls.__mro__[1:] if b.__module__.startswith(SDK)]
        for name, line in _self_writes(node):
            owner = next((b for b in sdk_bases if name in _private_state(b)), None)
            if owner:
                text = (
                    f"{cls.__name__} writes self.{name}, private state of "
                    f"{owner.__module__}.{owner.__name__}"
                )
                found.append(Offence(f"{where}:{line}", "sdk-override", text))
    return found


# ------------------------------------------------------------------ (c) monkeypatching

#: (file, target) -> why. Python documents both as meant to be reassigned by a program
#: (the sys module docs: excepthook "can be customized by assigning another function",
#: and a broken pipe's recipe replaces stdout); neither touches the SDK.
ALLOWED = {
    ("tap_bitbucket/cli.py", "assigns sys.excepthook"): (
        "puts the caller's hook back after SingerCommand.invoke replaced it"
    ),
    ("tap_bitbucket/cli.py", "assigns sys.stdout"): (
        "after a BrokenPipeError, gives the interpreter's exit flush nothing to write"
    ),
}


def monkeypatches(tree: ast.AST, where: str) -> list[Offence]:
    imported = _imported_names(tree)
    found = []

    def check(target: ast.expr, line: int, verb: str) -> None:
        if isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                check(element, line, verb)
            return
        if isinstance(target, ast.Attribute):
            chain = _chain(target)
            if chain and chain[0] in imported:
                found.append(Offence(f"{where}:{line}", "monkeypatch", f"{verb} {'.'.join(chain)}"))

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                check(target, node.lineno, "assigns")
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            check(node.target, node.lineno, "assigns")
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                check(target, node.lineno, "deletes")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"setattr", "delattr"}
            and node.args
        ):
            chain = _chain(node.args[0])
            if chain and chain[0] in imported:
                text = f"{node.func.id}({'.'.join(chain)}, ...)"
                found.append(Offence(f"{where}:{node.lineno}", "monkeypatch", text))
    return found


# ------------------------------------------------------------------ the scan


def scan(source: str, where: str, namespace: dict[str, Any]) -> list[Offence]:
    tree = ast.parse(source)
    return [
        *private_imports(tree, where),
        *sdk_overrides(tree, namespace, where),
        *monkeypatches(tree, where),
    ]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def scan_package() -> list[Offence]:
    found = []
    for path in package_modules():
        source = path.read_text(encoding="utf-8")
        # Only modules that define classes need importing (for their bases); importing
        # __main__ would run the CLI.
        has_class = any(isinstance(n, ast.ClassDef) for n in ast.parse(source).body)
        namespace = vars(importlib.import_module(_module_name(path))) if has_class else {}
        found += scan(source, str(path.relative_to(ROOT)), namespace)
    return found


def scan_snippet(source: str) -> list[Offence]:
    """Scan a planted source snippet, executed as a throw-away module for its classes."""
    source = textwrap.dedent(source)
    module = types.ModuleType("planted")
    exec(compile(source, "planted.py", "exec"), vars(module))
    return scan(source, "planted.py", vars(module))
