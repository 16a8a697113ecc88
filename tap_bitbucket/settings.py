"""The tap's settings: the config schema, and one frozen, typed object parsed from it.

Every reader of a setting goes through :class:`Settings`, parsed once per tap. Absent (or
null) means the default; an explicit value, 0 included, means that value. The old
``config.get(x) or default`` turned a configured 0 into the default (issue 12, bug 5:
``rate_limit_max_wait_seconds: 0`` waited up to an hour). Where 0 has no meaning
(``max_workers``, ``shard_count``, ``request_timeout_seconds``, ``max_retries`` which
counts tries, the first included) it is refused with one line.

Auth settings are parsed by :mod:`tap_bitbucket.auth.settings`; :attr:`Settings.raw`
holds the config as plain JSON types for it (the SDK reads fractional numbers from a
config file as ``Decimal``).
"""

from __future__ import annotations

import dataclasses
import decimal
import math
import re
import types
import typing as t
from datetime import datetime
from urllib.parse import urlsplit

from singer_sdk import typing as th

from tap_bitbucket import auth
from tap_bitbucket.errors import ConfigError
from tap_bitbucket.timestamps import parse_timestamp

if t.TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_API_URL = "https://api.bitbucket.org/2.0"

SETTINGS = th.PropertiesList(
    th.Property(
        "workspaces",
        th.ArrayType(th.StringType),
        description=(
            "Workspace slugs to sync. When empty, the tap lists the workspaces the "
            "credential can see through GET /user/workspaces (GET /workspaces answers 410 "
            "since 2026)."
        ),
    ),
    th.Property(
        "repositories",
        th.ArrayType(th.StringType),
        description=(
            "Include globs over 'workspace/repo' full names, e.g. 'acme/*' or 'acme/api'. "
            "Empty means every repository of the selected workspaces."
        ),
    ),
    th.Property(
        "exclude_repositories",
        th.ArrayType(th.StringType),
        description="Exclude globs over 'workspace/repo' full names; applied after 'repositories'.",
    ),
    th.Property(
        "start_date",
        th.DateTimeType,
        description=(
            "Earliest updated/created time to sync on the first run of incremental streams "
            "(ISO 8601). Later runs continue from the saved state."
        ),
    ),
    th.Property(
        "api_url",
        th.StringType,
        default=DEFAULT_API_URL,
        description=(
            "Base URL of the Bitbucket Cloud REST API 2.0, for proxies and the emulator. "
            "Pagination links to any other host are refused."
        ),
    ),
    th.Property(
        "user_agent",
        th.StringType,
        description="User-Agent header sent with every request.",
    ),
    th.Property(
        "lookback_seconds",
        th.IntegerType,
        default=300,
        description=(
            "Overlap applied to server-side updated_on bookmarks, so objects written while "
            "the previous sync ran are not missed. Objects in the window may be emitted twice."
        ),
    ),
    th.Property(
        "requests_per_hour",
        th.NumberType,
        description=(
            "Optional request budget: one token-bucket pacer shared by every stream and "
            "thread spreads calls so the sync stays under it (Bitbucket allows 1,000/h per "
            "user; up to 10,000/h for access tokens of large paid workspaces). At least 1."
        ),
    ),
    th.Property(
        "max_retries",
        th.IntegerType,
        default=8,
        description="Tries per request for 5xx, resets, timeouts and invalid bodies.",
    ),
    th.Property(
        "backoff_base_seconds",
        th.NumberType,
        default=1.0,
        description="First backoff wait for retried requests (exponential, full jitter).",
    ),
    th.Property(
        "backoff_max_seconds",
        th.NumberType,
        default=60.0,
        description="Longest single backoff wait.",
    ),
    th.Property(
        "rate_limit_max_wait_seconds",
        th.NumberType,
        default=3600,
        description=(
            "Total time one request may spend waiting out HTTP 429 before the sync fails. "
            "Bitbucket's limits are per rolling hour, so the default waits up to an hour."
        ),
    ),
    th.Property(
        "request_timeout_seconds",
        th.NumberType,
        default=60,
        description="Seconds to wait for Bitbucket to answer one request.",
    ),
    th.Property(
        "state_interval_seconds",
        th.NumberType,
        default=1.0,
        description=(
            "Shortest time between two STATE messages (the final state is always written). "
            "Lower means finer resume points, higher means less output."
        ),
    ),
    th.Property(
        "max_workers",
        th.IntegerType,
        default=4,
        description=(
            "Requests in flight at once: a bounded thread pool of this size fetches the "
            "next repositories' pages while records are written (1 = strictly one request "
            "at a time). Records and STATE are the same at every value; the pacer is shared."
        ),
    ),
    th.Property(
        "admin_refresh_hours",
        th.NumberType,
        default=24,
        description=(
            "How often the slow-changing settings tables (permissions, branch restrictions, "
            "webhooks, deploy keys, default reviewers, environments, downloads, workspace "
            "members and hooks, project permissions) are read again, per repository or "
            "project. Each is read at least once per interval, spread over the runs in "
            "between; 0 reads them on every run."
        ),
    ),
    th.Property(
        "max_requests_per_run",
        th.IntegerType,
        description=(
            "Stop cleanly once this many requests are made: the repository in flight is "
            "finished, the final STATE is written and the run exits 0; the next run goes "
            "on from the next repository. Absent means no cap."
        ),
    ),
    th.Property(
        "progress_interval_seconds",
        th.NumberType,
        default=30,
        description="Seconds between two progress lines (repositories, records, requests, ETA).",
    ),
    th.Property(
        "shard_count",
        th.IntegerType,
        default=1,
        description=(
            "Split repositories deterministically over this many tap processes "
            "(stable hash of the repository uuid)."
        ),
    ),
    th.Property(
        "shard_index",
        th.IntegerType,
        default=0,
        description="Which shard this process syncs, from 0 to shard_count - 1.",
    ),
    *auth.AUTH_PROPERTIES,
)

#: The numeric settings, each with (kind, smallest accepted value, whether 0 is refused).
#: ``None`` as default means "no value" (no pacer for requests_per_hour).
_NUMBERS: dict[str, tuple[type, float, bool]] = {
    "lookback_seconds": (int, 0, False),
    # Bitbucket's limits are per hour: under one request an hour the pacer would wait
    # hours before each request, a run that never ends (found by the config fuzz tests).
    "requests_per_hour": (float, 1, True),
    "max_retries": (int, 1, False),
    "backoff_base_seconds": (float, 0, False),
    "backoff_max_seconds": (float, 0, False),
    "rate_limit_max_wait_seconds": (float, 0, False),
    "request_timeout_seconds": (float, 0, True),
    "state_interval_seconds": (float, 0, False),
    "max_workers": (int, 1, False),
    "shard_count": (int, 1, False),
    "shard_index": (int, 0, False),
    "admin_refresh_hours": (float, 0, False),
    "max_requests_per_run": (int, 1, False),
    "progress_interval_seconds": (float, 0, True),
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every non-auth setting, typed; see :data:`SETTINGS` for what each one does."""

    workspaces: tuple[str, ...] = ()
    repositories: tuple[str, ...] = ()
    exclude_repositories: tuple[str, ...] = ()
    start_date: datetime | None = None
    api_url: str = DEFAULT_API_URL
    user_agent: str | None = None
    lookback_seconds: int = 300
    requests_per_hour: float | None = None
    max_retries: int = 8
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    rate_limit_max_wait_seconds: float = 3600.0
    request_timeout_seconds: float = 60.0
    state_interval_seconds: float = 1.0
    max_workers: int = 4
    shard_count: int = 1
    shard_index: int = 0
    admin_refresh_hours: float = 24.0
    max_requests_per_run: int | None = None
    progress_interval_seconds: float = 30.0
    #: The whole config as plain JSON types, for the auth module and the secret list.
    raw: Mapping[str, t.Any] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({}), repr=False, compare=False
    )

    @property
    def origin(self) -> tuple[str, str]:
        """(scheme, host) of ``api_url``: the only host credentials are sent to."""
        parts = urlsplit(self.api_url)
        return (parts.scheme, parts.netloc)

    @classmethod
    def from_config(cls, config: Mapping[str, t.Any]) -> Settings:
        """Parse and check a config mapping. Raises :class:`ConfigError` (one line)."""
        raw = {key: _plain(value) for key, value in config.items()}
        values: dict[str, t.Any] = {}
        for name, (kind, minimum, zero_refused) in _NUMBERS.items():
            number = _number(raw, name, kind, minimum, zero_refused=zero_refused)
            if number is not None:
                values[name] = number
        timeout = values.get("request_timeout_seconds")
        if timeout is not None and timeout > MAX_REQUEST_TIMEOUT_S:
            # A huge socket timeout overflows and times out at once (found by the nightly
            # profile of tests/test_fuzz_config.py: 536870912 s).
            raise ConfigError(
                "request_timeout_seconds",
                f"must be {MAX_REQUEST_TIMEOUT_S} or less (one hour), got {timeout:g}",
            )
        for name in ("workspaces", "repositories", "exclude_repositories"):
            values[name] = _strings(raw, name)
        for slug in values["workspaces"]:
            if not _SLUG.match(slug):
                # '#' or '?' would end the request path early ("#" asked GET /workspaces/,
                # which answers 410): found by the nightly profile of test_fuzz_config.py.
                raise ConfigError(
                    "workspaces",
                    f"workspace '{slug}' is not a workspace slug (letters, digits, '-', '_' "
                    "and '.'); check the slug in the workspace URL",
                )
        for name in ("repositories", "exclude_repositories"):
            for pattern in values[name]:
                _check_glob(name, pattern)
        api_url = _text(raw, "api_url") or DEFAULT_API_URL
        if not api_url.startswith(("https://", "http://")) or not urlsplit(api_url).netloc:
            raise ConfigError("api_url", f"'{api_url}' is not an http(s) URL")
        values["api_url"] = api_url.rstrip("/")
        values["user_agent"] = _text(raw, "user_agent")
        start = _text(raw, "start_date")
        if start:
            try:
                values["start_date"] = parse_timestamp(start)
            except ValueError:
                raise ConfigError("start_date", f"'{start}' is not an ISO 8601 date-time") from None
        settings = cls(**values, raw=types.MappingProxyType(raw))
        if not 0 <= settings.shard_index < settings.shard_count:
            raise ConfigError("shard_index", f"must be between 0 and {settings.shard_count - 1}")
        return settings


MAX_REQUEST_TIMEOUT_S = 3600
_SLUG = re.compile(r"^[A-Za-z0-9_.-]+$")


def _plain(value: t.Any) -> t.Any:
    """JSON types only: the SDK parses a config file's fractions as Decimal."""
    if isinstance(value, decimal.Decimal):
        whole = value.is_finite() and value == value.to_integral_value()
        return int(value) if whole else float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _number(
    raw: Mapping[str, t.Any], name: str, kind: type, minimum: float, *, zero_refused: bool
) -> int | float | None:
    value = raw.get(name)
    if value is None or value == "":
        return None
    what = "a whole number" if kind is int else "a number"
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ConfigError(name, f"must be {what}, got '{value}'") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(name, f"must be {what}, got {value!r}")
    if kind is int and value != int(value):
        raise ConfigError(name, f"must be {what}, got {value:g}")
    if zero_refused and value <= 0:
        raise ConfigError(name, f"must be greater than 0, got {value:g}")
    if value < minimum:
        raise ConfigError(name, f"must be {minimum:g} or more, got {value:g}")
    return int(value) if kind is int else float(value)


def _strings(raw: Mapping[str, t.Any], name: str) -> tuple[str, ...]:
    value = raw.get(name)
    if value is None:
        return ()
    if isinstance(value, str):  # an env var or a shell user's "a,b"
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(name, "must be a list of strings")
    stripped = tuple(v.strip() for v in value)
    if any(not v for v in stripped):
        raise ConfigError(name, "holds an empty string; remove it")
    return stripped


def _text(raw: Mapping[str, t.Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(name, f"must be a string, got {type(value).__name__}")
    return value.strip() or None


def _check_glob(setting: str, pattern: str) -> None:
    workspace, _, repo = pattern.partition("/")
    if not workspace or not repo:
        raise ConfigError(setting, f"'{pattern}' must look like 'workspace/repo' (globs allowed)")
    if pattern.count("[") != pattern.count("]"):
        raise ConfigError(setting, f"'{pattern}' has an unbalanced '['")
