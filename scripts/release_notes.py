"""Print one version's section of CHANGELOG.md (the body of its GitHub release).

    python scripts/release_notes.py v0.2.0 > notes.md      # or 0.2.0, or --changelog PATH

Exits 1 when the changelog has no such section, or when the section is empty, so a
release is never cut without its notes. Standard library only: the release workflow runs
it before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

CHANGELOG = Path(__file__).resolve().parents[1] / "CHANGELOG.md"
# Keep a Changelog: "## [0.2.0] - 2026-12-06"; the section ends at the next "## "
# heading or at the link reference definitions at the bottom.
_HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?\s*$")
_LINK_DEFINITION = re.compile(r"^\[[^\]]+\]: \S+")


class NotFound(LookupError):
    pass


def section(text: str, version: str) -> str:
    """The body of `version`'s section (without its heading), stripped."""
    version = version.removeprefix("v")
    lines = text.splitlines()
    start = None
    for number, line in enumerate(lines):
        match = _HEADING.match(line)
        if start is None:
            if match and match["version"] == version:
                start = number + 1
            continue
        if match or line.startswith("## ") or _LINK_DEFINITION.match(line):
            lines = lines[start:number]
            break
    else:
        if start is None:
            raise NotFound(f"CHANGELOG.md has no section for {version}")
        lines = lines[start:]
    body = "\n".join(lines).strip()
    if not body:
        raise NotFound(f"the CHANGELOG.md section for {version} is empty")
    return body + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print a version's CHANGELOG.md section.")
    parser.add_argument("version", help="e.g. v0.2.0 or 0.2.0 (a tag name works)")
    parser.add_argument("--changelog", type=Path, default=CHANGELOG)
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(section(args.changelog.read_text(encoding="utf-8"), args.version))
    except NotFound as exc:
        print(f"release_notes: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
