#!/usr/bin/env python3
"""Generate tap_bitbucket/scopes.json: the scopes each stream's endpoint needs.

    python -m scripts.generate_scopes            # (re)write the file
    python -m scripts.generate_scopes --check    # exit 1 when it is stale

Read from the vendored spec's ``security`` (OAuth consumer scopes) and
``x-atlassian-oauth2-scopes`` (the granular scopes of API tokens and access tokens) of
each stream's GET operation; the stream paths come from the stream registry. The tap
names these scopes when Bitbucket says a credential lacks one (issue 13).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from tap_bitbucket.streams import STREAM_TYPES

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "spec" / "bitbucket-cloud-swagger.v3.json"
OUT_PATH = ROOT / "tap_bitbucket" / "scopes.json"

# The tap's context keys, as the spec names the same path parameters.
_PARAMS = {"workspace_slug": "workspace", "commit_hash": "commit"}


def spec_path(stream_path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: "{" + _PARAMS.get(m[1], m[1]) + "}", stream_path)


def generate(spec_file: Path = SPEC_PATH) -> str:
    paths = json.loads(spec_file.read_text(encoding="utf-8"))["paths"]
    out: dict[str, dict[str, list[str]]] = {}
    for stream in STREAM_TYPES:
        operation: dict[str, Any] = (paths.get(spec_path(str(stream.path))) or {}).get("get") or {}
        oauth = sorted(
            {s for entry in operation.get("security") or [] for s in entry.get("oauth2") or []}
        )
        granular = sorted(
            {
                s
                for entry in operation.get("x-atlassian-oauth2-scopes") or []
                for s in entry.get("scopes") or []
            }
        )
        out[str(stream.name)] = {"oauth": oauth, "api_token": granular}
    return json.dumps(out, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = generate()
    current = OUT_PATH.read_text(encoding="utf-8") if OUT_PATH.exists() else ""
    if args.check:
        if text != current:
            print(f"stale: {OUT_PATH}; run: python -m scripts.generate_scopes", file=sys.stderr)
            return 1
        print(f"{OUT_PATH.name} up to date")
        return 0
    OUT_PATH.write_text(text, encoding="utf-8", newline="\n")
    print(f"wrote {OUT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
