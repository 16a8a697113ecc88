"""What the tap itself needs from Bitbucket's objects, checked before it relies on them.

Any other field is Bitbucket's business: a value of an unexpected type, a missing field
or an unknown enum value is emitted as sent, and the record check (record_check.py)
names it. Three things the tap depends on are checked here, found by the property tests
of server answers (tests/test_fuzz_server.py, issue 16), where each one ended in a
``KeyError``, ``TypeError`` or ``ValueError`` line, or in records silently left out:

* a record's **primary key**, after the stream's transform: a record without one can
  be deduplicated by no target;
* the **fields a child's context is made of** (``child_context_fields``): the tap would
  ask for the children of nothing;
* the **replication key**: a value that is not a timestamp would be compared with
  bookmarks and become one that the next run cannot read back. A missing or null one
  is kept as null: the record is emitted, is never "older than the bookmark", and does
  not move it (the SDK skips null values).

An answer that breaks them fails the run with one line naming the stream, the endpoint
and the field: nothing of it reaches the STATE.
"""

from __future__ import annotations

import typing as t

from tap_bitbucket.errors import APIError
from tap_bitbucket.timestamps import parse_timestamp

_JSON_NAMES = {str: "a string", int: "a number", float: "a number", bool: "a boolean"}
_JSON_NAMES.update({dict: "an object", list: "a list", type(None): "null"})


def as_object(value: t.Any) -> dict[str, t.Any]:
    """``value`` when it is an object, else an empty one: for the nested fields a
    stream reads (``state.name``, ``user.uuid``) whatever Bitbucket sends there."""
    return value if isinstance(value, dict) else {}


def usable_key(value: t.Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool) and value != ""


def check_keys(
    stream: str, record: dict[str, t.Any], fields: t.Iterable[str], endpoint: t.Callable[[], str]
) -> None:
    """Each of ``fields`` must be a non-empty string or a number. ``endpoint`` gives the
    path for the error line, only when there is one (it is not free to build)."""
    for field in fields:
        value = record.get(field)
        if not usable_key(value):
            what = "missing" if field not in record else _json_name(value)
            raise _broken(stream, endpoint(), field, what, "to identify the record and reach its children")


def is_timestamp(value: t.Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_timestamp(value)
    except ValueError:
        return False
    return True


def check_timestamp(stream: str, field: str, value: t.Any, endpoint: t.Callable[[], str]) -> None:
    """A replication value must be null or a timestamp (``endpoint`` as for check_keys)."""
    if value is None or is_timestamp(value):
        return
    what = f"{_json_name(value)} that is not a timestamp"
    raise _broken(stream, endpoint(), field, what, "to bookmark the stream")


def _broken(stream: str, endpoint: str, field: str, what: str, why: str) -> APIError:
    return APIError(
        f"{stream}: GET {endpoint} sent an object whose '{field}' is {what}; the tap needs "
        f"it {why}, so it stops before writing a STATE with it. Re-run the sync later; if "
        "it repeats, report it to Atlassian."
    )


def _json_name(value: t.Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)
