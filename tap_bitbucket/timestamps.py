"""Bitbucket timestamps: parsing every form it sends, and the one form the tap writes."""

from __future__ import annotations

import re
from datetime import datetime, timezone

_FRACTION = re.compile(r"^(.*?T\d\d:\d\d:\d\d)(\.\d+)?(.*)$")


def parse_timestamp(value: str) -> datetime:
    """Parse any Bitbucket timestamp (Z, offsets, 0-9 digit fractions) as aware UTC."""
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    match = _FRACTION.match(text)
    if match:
        frac = (match.group(2) or "")[:7]
        frac = frac.ljust(7, "0") if frac else ""
        text = f"{match.group(1)}{frac}{match.group(3)}"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def format_timestamp(value: datetime) -> str:
    """The form the tap writes to state and to ``q`` filters."""
    return value.astimezone(timezone.utc).isoformat()


def newer_than(value: object, bound: datetime | None) -> bool:
    """Whether a record's timestamp is after ``bound`` (everything is, without a bound).

    The one "newer than the bookmark" filter of the newest-first scans (commits,
    activity, PR commits) and of projects. A record without a date cannot be shown to
    be old, so it is kept: leaving it out would sync less than asked, silently (found
    by tests/test_fuzz_server.py). Values that are not timestamps never get here
    (shapes.py stops the run first).
    """
    if bound is None or not value:
        return True
    return parse_timestamp(str(value)) > bound
