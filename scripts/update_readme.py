"""Regenerate the README's settings and streams tables (between their marker comments).

    python -m scripts.update_readme           # rewrite README.md
    python -m scripts.update_readme --check   # exit 1 when README.md is stale

The settings table comes from `tap-bitbucket --about --format=json` (the tap's config
schema, SDK built-ins included); the streams table from the tap's stream classes and the
scopes that `spec/get-endpoints.tsv` (extracted from the vendored OpenAPI spec) lists for
each stream's endpoint. `tests/test_readme.py` fails when the README differs.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ENDPOINTS = ROOT / "spec" / "get-endpoints.tsv"
MARKERS = {
    "settings": ("<!-- BEGIN GENERATED: settings", "<!-- END GENERATED: settings -->"),
    "streams": ("<!-- BEGIN GENERATED: streams", "<!-- END GENERATED: streams -->"),
}
_NOTE = "(scripts/update_readme.py; do not edit by hand) -->"


def about() -> dict[str, Any]:
    tap = Path(sys.executable).parent / "tap-bitbucket"
    result = subprocess.run(
        [str(tap), "--about", "--format=json"], capture_output=True, text=True, check=True
    )
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def meltano_kind(prop: dict[str, Any]) -> str:
    """The Meltano setting kind of a config property (as declared in meltano.yml)."""
    types = prop.get("type", [])
    types = [types] if isinstance(types, str) else [t for t in types if t != "null"]
    if prop.get("secret") or prop.get("writeOnly"):
        return "password"
    if "enum" in prop:
        return "options"
    if prop.get("format") == "date-time":
        return "date_iso8601"
    for json_type, kind in (
        ("array", "array"),
        ("object", "object"),
        ("boolean", "boolean"),
        ("integer", "integer"),
        ("number", "decimal"),
    ):
        if json_type in types:
            return kind
    return "string"


def _cell(text: Any) -> str:
    return re.sub(r"\s+", " ", str(text)).replace("|", "\\|").strip()


def settings_table(info: dict[str, Any]) -> str:
    from tap_bitbucket.settings import SETTINGS  # noqa: PLC0415

    own = set(SETTINGS.to_dict()["properties"])
    properties: dict[str, dict[str, Any]] = info["settings"]["properties"]
    required = set(info["settings"].get("required", []))
    lines = []
    for title, names in (
        ("tap-bitbucket", [n for n in properties if n in own]),
        ("Singer SDK built-ins", [n for n in properties if n not in own]),
    ):
        lines += [
            f"**{title}**",
            "",
            "| Setting | Kind | Default | Env var | Description |",
            "|:--|:--|:--|:--|:--|",
        ]
        for name in names:
            prop = properties[name]
            kind = meltano_kind(prop)
            if kind == "options":
                kind += ": " + ", ".join(f"`{v}`" for v in prop["enum"])
            if kind == "password":
                kind += " (secret)"
            default = f"`{json.dumps(prop['default'])}`" if "default" in prop else ""
            if name in required:
                default = "**required**"
            env = f"`TAP_BITBUCKET_{name.upper()}`"
            description = prop.get("description") or prop.get("title") or ""
            lines.append(
                f"| `{name}` | {_cell(kind)} | {_cell(default)} | {env} | {_cell(description)} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def _scopes() -> dict[str, tuple[str, str]]:
    with ENDPOINTS.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return {
        re.sub(r"\{[^}]+\}", "{}", row["path"]): (row["scopes"], row["classic_scopes"])
        for row in rows
    }


def streams_table() -> str:
    from tap_bitbucket.tap import TapBitbucket  # noqa: PLC0415

    tap = TapBitbucket(config={}, validate_config=False)
    scopes = _scopes()
    lines = [
        "| Stream | Primary key | Replication | Parent | Default | Endpoint (GET) | Scope: API token / OAuth |",
        "|:--|:--|:--|:--|:--:|:--|:--|",
    ]
    for name in sorted(tap.streams):
        stream = tap.streams[name]
        key = ", ".join(f"`{k}`" for k in stream.primary_keys or [])
        method = stream.replication_method
        if stream.replication_key:
            method = f"{method} on `{stream.replication_key}`"
        parent = f"`{stream.parent_stream_type.name}`" if stream.parent_stream_type else ""
        endpoint = str(stream.path)
        token_scope, oauth_scope = scopes.get(re.sub(r"\{[^}]+\}", "{}", endpoint), ("?", "?"))
        oauth = ", ".join(f"`{s}`" for s in oauth_scope.split(",") if s) or ""
        lines.append(
            f"| `{name}` | {key} | {method} | {parent} | "
            f"{'yes' if stream.selected_by_default else 'no'} | `{endpoint}` | "
            f"`{token_scope}` / {oauth} |"
        )
    return "\n".join(lines)


def render(readme: str, blocks: dict[str, str]) -> str:
    """The README with each generated block replaced (markers kept)."""
    for name, body in blocks.items():
        begin, end = MARKERS[name]
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no '{begin} ... {end}' block")
        replacement = f"{begin} {_NOTE}\n{body}\n{end}"
        readme = pattern.sub(lambda _m, r=replacement: r, readme)
    return readme


def generated_blocks() -> dict[str, str]:
    return {"settings": settings_table(about()), "streams": streams_table()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.update_readme")
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md is stale")
    args = parser.parse_args(argv)
    current = README.read_text(encoding="utf-8")
    updated = render(current, generated_blocks())
    if args.check:
        if updated != current:
            print("README.md is stale: run `make readme`", file=sys.stderr)
            return 1
        return 0
    if updated != current:
        README.write_text(updated, encoding="utf-8")
        print("README.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
