"""Checking a --state before the run uses it, and its entries that no longer apply.

Every key the tap or the SDK reads from a bookmark is checked here, at every level, so a
state the tap cannot use fails at start-up with one line that names where it is wrong
(issue 16: ``{"bookmarks": {"pull_requests": "garbage"}}`` ended in an AttributeError's
text, and a ``progress_markers: null`` still did). The keys themselves are named in
:mod:`tap_bitbucket.streams.bookmarks`.
"""

from __future__ import annotations

import typing as t
from datetime import datetime, timedelta, timezone

from tap_bitbucket.errors import StateError
from tap_bitbucket.streams import bookmarks as keys
from tap_bitbucket.timestamps import parse_timestamp

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: A bookmark may be this far ahead of the clock (Bitbucket's clock against ours); one
#: further ahead would silently skip every record until that date, so it is refused.
FUTURE_SLACK = timedelta(days=1)

# The singer-sdk's own state keys (its documented state format), read back on the next run.
REPLICATION_KEY = "replication_key"
REPLICATION_KEY_VALUE = "replication_key_value"
PROGRESS_MARKERS = "progress_markers"
SIGNPOST = "replication_key_signpost"
STARTING_VALUE = "starting_replication_value"


def validate_state(state: t.Any, now: datetime | None = None) -> None:
    """Refuse a state the tap cannot use, with one line that names where it is wrong.

    A state written by this tap (or an older version of it) always passes; unknown
    streams and keys the tap does not read are left alone (the SDK keeps them).
    """
    clock = now or datetime.now(timezone.utc)
    if not isinstance(state, dict):
        raise StateError("the state must be a JSON object")
    bookmarks = state.get("bookmarks", {})
    if not isinstance(bookmarks, dict):
        raise StateError(f"'bookmarks' must be an object of stream names{_got(bookmarks)}")
    for name, stream_state in bookmarks.items():
        where = f"bookmarks.{name}"
        _expect(where, stream_state, dict, "an object")
        partitions = stream_state.get("partitions", [])
        _expect(f"{where}.partitions", partitions, list, "a list")
        for index, partition in enumerate(partitions):
            here = f"{where}.partitions[{index}]"
            if not isinstance(partition, dict) or not isinstance(partition.get("context"), dict):
                raise StateError(f"'{here}' must be an object with a 'context'{_got(partition)}")
            for key, value in partition["context"].items():
                if value is not None and not isinstance(value, (str, int, float, bool)):
                    raise StateError(f"'{here}.context.{key}' must be a string or a number")
            _check_bookmark(here, partition, clock)
        _check_bookmark(where, stream_state, clock)


def _check_bookmark(where: str, bookmark: dict[str, t.Any], now: datetime) -> None:
    """The keys of one stream or partition state, each with what its reader expects."""
    for key in (REPLICATION_KEY, keys.REPO_UPDATED_ON, keys.RESUME_AT):
        _optional(f"{where}.{key}", bookmark.get(key), str, "a string")
    for key in (REPLICATION_KEY_VALUE, keys.HIGH_WATER, keys.REFRESHED_AT, keys.CHILDREN_SINCE):
        _date(f"{where}.{key}", bookmark.get(key), now)
    for key in (SIGNPOST, STARTING_VALUE):
        _date(f"{where}.{key}", bookmark.get(key), now, future_ok=True)
    markers = bookmark.get(PROGRESS_MARKERS, {})
    _expect(f"{where}.{PROGRESS_MARKERS}", markers, dict, "an object")
    _optional(
        f"{where}.{PROGRESS_MARKERS}.{REPLICATION_KEY}",
        markers.get(REPLICATION_KEY),
        str,
        "a string",
    )
    _date(
        f"{where}.{PROGRESS_MARKERS}.{REPLICATION_KEY_VALUE}",
        markers.get(REPLICATION_KEY_VALUE),
        now,
    )
    recent = bookmark.get(keys.RECENT_KEYS, [])
    _expect(f"{where}.{keys.RECENT_KEYS}", recent, list, "a list")
    if not all(isinstance(k, str) for k in recent):
        raise StateError(f"'{where}.{keys.RECENT_KEYS}' must be a list of strings")
    running = bookmark.get(keys.RUNNING, {})
    _expect(f"{where}.{keys.RUNNING}", running, dict, "an object")
    for uuid, created_on in running.items():
        _date(f"{where}.{keys.RUNNING}.{uuid}", created_on, now, required=True)


def _expect(where: str, value: t.Any, kind: type, what: str) -> None:
    if not isinstance(value, kind):
        raise StateError(f"'{where}' must be {what}{_got(value)}")


def _optional(where: str, value: t.Any, kind: type, what: str) -> None:
    if value is not None:
        _expect(where, value, kind, what)


def _date(
    where: str, value: t.Any, now: datetime, *, future_ok: bool = False, required: bool = False
) -> None:
    if value is None and not required:
        return
    shown = repr(value)[:40]
    if not isinstance(value, str):
        raise StateError(f"'{where}' is not a date-time ({shown})")
    try:
        moment = parse_timestamp(value)
    except (ValueError, OverflowError):
        raise StateError(f"'{where}' is not a date-time ({shown})") from None
    if not future_ok and moment > now + FUTURE_SLACK:
        raise StateError(
            f"'{where}' is in the future ({shown}): the run would skip everything before it"
        )


def _got(value: t.Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    name = "null" if value is None else names.get(type(value))
    if name is None:
        name = "a number" if isinstance(value, (int, float)) else type(value).__name__
    return f" (got {name})"


# -- entries that no longer apply -------------------------------------------------------


def stale_repository_entries(
    state: Mapping[str, t.Any], listed: Mapping[str, Iterable[Mapping[str, t.Any]]]
) -> dict[str, list[str]]:
    """Repository partitions that match no listed repository: description -> streams.

    ``listed``: the repositories this run listed, by workspace; entries of another
    workspace are left alone (nothing can be said about them). A partition matches a
    repository with the same uuid and slug: a renamed repository keeps its uuid and gets
    a new partition, so the one under its old slug no longer applies. Partitions keyed
    by ``repo_uuid`` alone (PR and pipeline children) follow the uuid, so they still do.
    """
    known = {
        workspace: {(str(r.get("uuid")), str(r.get("slug"))) for r in rows}
        for workspace, rows in listed.items()
    }
    stale: dict[str, list[str]] = {}
    for stream, stream_state in (state.get("bookmarks") or {}).items():
        for partition in stream_state.get("partitions") or []:
            context = partition["context"]
            workspace, slug = context.get("workspace_slug"), context.get("repo_slug")
            if workspace not in known or slug is None:
                continue
            uuid = context.get("repo_uuid")
            if (str(uuid), str(slug)) not in known[workspace]:
                stale.setdefault(f"repository {workspace}/{slug} ({uuid})", []).append(stream)
    return stale
