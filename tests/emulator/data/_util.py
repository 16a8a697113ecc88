"""Constants, the dataset's time base, timestamp formats and small id/link helpers."""

from __future__ import annotations

import html as _html
import random
import re
import uuid as _uuidlib
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, unquote

API = "https://api.bitbucket.org/2.0"
WEB = "https://bitbucket.org"
_AVATAR = "https://avatar-management--avatars.us-west-2.prod.public.atl-paas.net"

#: Fields that live Bitbucket omits from items of the ``/pullrequests`` collection.  The
#: dataset stores full objects; the server strips these unless ``fields`` adds them.
PR_LIST_OMITS: tuple[str, ...] = ("reviewers", "participants")

#: Path suffixes (below ``/repositories/{w}/{r}``) that answer 409 on an empty repository.
EMPTY_REPO_CONFLICT_SUFFIXES: tuple[str, ...] = (
    "/commits",
    "/refs",
    "/refs/branches",
    "/refs/tags",
)

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def _to_us(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(microseconds=1)


_START_US = _to_us(datetime(2025, 1, 1, tzinfo=UTC))
_INITIAL_CLOCK_US = _to_us(datetime(2026, 6, 1, tzinfo=UTC))
_DATA_END_US = _INITIAL_CLOCK_US - DAY
#: The dataset's "now" before any mutation; every generated timestamp is earlier.
INITIAL_CLOCK = _EPOCH + timedelta(microseconds=_INITIAL_CLOCK_US)
#: Upper bound of generated (pre-mutation) timestamps.
DATA_END = _EPOCH + timedelta(microseconds=_DATA_END_US)


# --------------------------------------------------------------------------- time format


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _ts(us: int) -> str:
    """``2026-03-04T14:08:59.123456+00:00`` (the common Bitbucket form)."""
    return _dt(us).isoformat(timespec="microseconds")


def _ts_s(us: int) -> str:
    """``2026-03-04T14:08:59+00:00`` (git dates: no fraction)."""
    return _dt(us).isoformat(timespec="seconds")


def _ts_z(us: int, nanos: int | None = None) -> str:
    """Pipelines form: ``...59.123Z`` or, with ``nanos``, ``...59.123456789Z``."""
    base = _dt(us).strftime("%Y-%m-%dT%H:%M:%S")
    frac = us % SECOND
    if nanos is None:
        return f"{base}.{frac // 1000:03d}Z"
    return f"{base}.{frac:06d}{nanos:03d}Z"


_TS_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?)(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_timestamp(value: str) -> datetime:
    """Parse any Bitbucket timestamp form (``Z``, 0-9 digit fractions, offsets) to aware UTC.

    Fractions longer than 6 digits are truncated; values without an offset are UTC.
    """
    m = _TS_RE.match(value.strip())
    if not m:
        raise ValueError(f"not a timestamp: {value!r}")
    main, frac, tz = m.groups()
    if "T" not in main and " " not in main:
        main += "T00:00:00"
    elif main.count(":") == 1:
        main += ":00"
    text = main.replace(" ", "T")
    if frac:
        text += "." + (frac[:6]).ljust(6, "0")
    if tz in (None, "Z"):
        tz = "+00:00"
    elif ":" not in tz:
        tz = tz[:3] + ":" + tz[3:]
    return datetime.fromisoformat(text + tz).astimezone(UTC)


# --------------------------------------------------------------------------- small helpers


def _uuid(rng: random.Random) -> str:
    return "{" + str(_uuidlib.UUID(int=rng.getrandbits(128), version=4)) + "}"


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def _enc(value: str) -> str:
    return quote(value, safe="")


def _link(href: str) -> dict[str, str]:
    return {"href": href}


def _render(raw: str | None) -> str:
    if not raw:
        return ""
    paras = [p for p in raw.split("\n\n") if p.strip()]
    return "".join("<p>" + _html.escape(p).replace("\n", "<br>") + "</p>" for p in paras)


def _content(raw: str | None) -> dict[str, Any]:
    return {
        "raw": raw if raw is not None else "",
        "markup": "markdown",
        "html": _render(raw),
        "type": "rendered",
    }


def _norm(path: str) -> str:
    path = path.split("?", 1)[0].split("#", 1)[0]
    if "%" in path:
        path = unquote(path)
    if path.startswith("/2.0/"):
        path = path[4:]
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path
