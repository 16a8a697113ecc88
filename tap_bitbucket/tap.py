"""tap-bitbucket: the Tap class and its config schema."""

from __future__ import annotations

import decimal
import fnmatch
import logging
import sys
import typing as t

from singer_sdk import Tap
from singer_sdk import typing as th

from tap_bitbucket import auth
from tap_bitbucket.client import parse_timestamp
from tap_bitbucket.concurrency import RepoFanOut
from tap_bitbucket.errors import ConfigError
from tap_bitbucket.output import TapWriter, ThrottledStateWriter
from tap_bitbucket.redact import install_redaction
from tap_bitbucket.runtime import Runtime
from tap_bitbucket.streams import STREAM_TYPES

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from singer_sdk.helpers.types import Context
    from singer_sdk.streams import Stream

    from tap_bitbucket.streams.repository import RepositoriesStream
    from tap_bitbucket.streams.workspace import WorkspacesStream

LOGGER = logging.getLogger("tap_bitbucket")
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
            "user; up to 10,000/h for access tokens of large paid workspaces)."
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
            "Requests in flight at once: the child streams of repositories run on a bounded "
            "thread pool of this size (1 = strictly one request at a time). Output order "
            "and STATE stay as with 1; the pacer is shared."
        ),
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


class TapBitbucket(Tap):
    """Singer tap for Bitbucket Cloud."""

    name = "tap-bitbucket"
    package_name = "tap-bitbucket"
    config_jsonschema = SETTINGS.to_dict()
    message_writer_class = TapWriter

    _runtime: Runtime | None = None

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        # The SDK reads config files with every fractional number as a Decimal; the tap's
        # numbers are seconds and rates, and the auth settings accept int and float only
        # (`oauth_callback_timeout: 0.5` was refused, `backoff_base_seconds: 0.05` ignored).
        for key, value in list(self._config.items()):
            if isinstance(value, decimal.Decimal):
                self._config[key] = float(value)
        install_redaction(self._secret_values)
        logging.getLogger("singer_sdk").addFilter(_drop_unsorted_warning)
        interval = float(self.config.get("state_interval_seconds", 1.0))
        self._throttled_state = ThrottledStateWriter(self.message_writer, interval)

    @property
    def state_writer(self) -> ThrottledStateWriter:
        return self._throttled_state

    # -- config ----------------------------------------------------------------------

    def _secret_values(self) -> list[str]:
        values = [str(self.config.get(k) or "") for k in auth.SECRET_SETTINGS]
        if self._runtime is not None:
            values.extend(self._runtime.authenticator.secret_values())
        return [v for v in values if v]

    def validate_settings(self) -> None:
        """Checks that need more than the JSON schema. Raises ConfigError (one line)."""
        config = self.config
        auth.validate_auth_config(config)
        api_url = str(config.get("api_url") or DEFAULT_API_URL)
        if not api_url.startswith(("https://", "http://")):
            raise ConfigError("api_url", f"'{api_url}' is not an http(s) URL")
        if config.get("start_date"):
            try:
                parse_timestamp(str(config["start_date"]))
            except ValueError:
                raise ConfigError(
                    "start_date", f"'{config['start_date']}' is not an ISO 8601 date-time"
                ) from None
        for key in ("repositories", "exclude_repositories"):
            for pattern in config.get(key) or []:
                if (
                    "/" not in pattern
                    or not pattern.split("/", 1)[0]
                    or not pattern.split("/", 1)[1]
                ):
                    raise ConfigError(
                        key, f"'{pattern}' must look like 'workspace/repo' (globs allowed)"
                    )
                if pattern.count("[") != pattern.count("]"):
                    raise ConfigError(key, f"'{pattern}' has an unbalanced '['")
        # `or default` would turn an explicit 0 into the default: test for None instead.
        shard_count = _int_setting(config, "shard_count", 1)
        shard_index = _int_setting(config, "shard_index", 0)
        if shard_count < 1:
            raise ConfigError("shard_count", "must be 1 or more")
        if not 0 <= shard_index < shard_count:
            raise ConfigError("shard_index", f"must be between 0 and {shard_count - 1}")
        if _int_setting(config, "max_workers", 1) < 1:
            raise ConfigError("max_workers", "must be 1 or more")
        rph = config.get("requests_per_hour")
        if rph is not None and float(rph) <= 0:
            raise ConfigError("requests_per_hour", "must be a positive number")

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            authenticator = auth.build_authenticator(self.config, logger=LOGGER)
            agent = str(self.config.get("user_agent") or f"tap-bitbucket/{self.plugin_version}")
            self._runtime = Runtime(self.config, authenticator, agent)
        return self._runtime

    _fanout: RepoFanOut | None = None

    def fanout(self, parent_name: str, workers: int) -> RepoFanOut:
        """The one worker pool of this sync (its threads keep their worker taps)."""
        if self._fanout is None:
            self._fanout = RepoFanOut(self, parent_name, workers)
        return self._fanout

    @property
    def active_fanout(self) -> RepoFanOut | None:
        return self._fanout

    #: Workspace slugs in the order this sync visits them (set by the workspaces stream).
    workspace_order: tuple[str, ...] = ()

    def visit_workspaces(self, slugs: Iterable[str]) -> None:
        """Record the order of the workspaces; the pool starts listing the first one's
        repositories while the main thread still reads workspace-level tables."""
        self.workspace_order = tuple(slugs)
        if self.workspace_order and self._fanout is not None:
            repositories = t.cast("RepositoriesStream", self.streams["repositories"])
            repositories.prefetch({"workspace_slug": self.workspace_order[0]})

    def workspace_after(self, slug: str) -> Context | None:
        """The context of the workspace visited after ``slug``, if any."""
        order = self.workspace_order
        if slug in order and order.index(slug) + 1 < len(order):
            return {"workspace_slug": order[order.index(slug) + 1]}
        return None

    def share_runtime(self, other: TapBitbucket) -> None:
        """Use another tap's runtime: one authenticator, pacer and counter per process."""
        self._runtime = other.runtime

    def repository_in_scope(self, full_name: str, uuid: str) -> bool:
        """Include/exclude globs, then the shard split."""
        name = full_name.lower()
        include = [p.lower() for p in self.config.get("repositories") or []]
        exclude = [p.lower() for p in self.config.get("exclude_repositories") or []]
        if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
            return False
        if any(fnmatch.fnmatchcase(name, p) for p in exclude):
            return False
        shards = int(self.config.get("shard_count") or 1)
        if shards > 1:
            from tap_bitbucket.streams.repository import shard_of  # noqa: PLC0415

            return shard_of(uuid, shards) == int(self.config.get("shard_index") or 0)
        return True

    # -- streams ---------------------------------------------------------------------

    def discover_streams(self) -> list[Stream]:
        # The catalog never depends on config: the same streams and schemas always.
        return [stream_class(tap=self) for stream_class in STREAM_TYPES]

    def check_scope(self) -> None:
        """What only the API can tell, checked before any record is written.

        Every configured workspace must exist (GET /workspaces/{slug}) and every include
        glob of ``repositories`` must match at least one repository of the workspaces it
        names (one listing per such workspace). Both go through the streams' own request
        path: pacer, retries, 401 refresh. Raises ConfigError.
        """
        slugs = [str(s) for s in self.config.get("workspaces") or []]
        include = [str(p) for p in self.config.get("repositories") or []]
        if not slugs and not include:
            return
        from tap_bitbucket.streams.workspace import workspace_slug  # noqa: PLC0415

        workspaces = t.cast("WorkspacesStream", self.streams["workspaces"])
        for slug in slugs:
            workspaces.workspace(slug)  # ConfigError when missing or not visible
        if not include:
            return
        if not slugs:  # every workspace the credential can see (GET /user/workspaces)
            slugs = [workspace_slug(a) for a in workspaces.accesses()]

        repositories = t.cast("RepositoriesStream", self.streams["repositories"])
        names: list[str] = []
        for slug in slugs:
            if any(fnmatch.fnmatchcase(slug.lower(), p.split("/", 1)[0].lower()) for p in include):
                rows = repositories.listing({"workspace_slug": slug}, keep=True)
                names += [str(r.get("full_name")).lower() for r in rows]
        for pattern in include:
            if not any(fnmatch.fnmatchcase(name, pattern.lower()) for name in names):
                raise ConfigError(
                    "repositories",
                    f"'{pattern}' matches no repository of the workspaces "
                    f"{', '.join(slugs) or '(none visible)'}; check the glob (it matches "
                    "'workspace/repo' full names) and the credential's access",
                )

    def check_connection(self) -> None:
        self.validate_settings()
        from tap_bitbucket.streams.workspace import check_credentials  # noqa: PLC0415

        check_credentials(self)

    def sync_all(self) -> None:  # type: ignore[misc]
        self.validate_settings()
        self.runtime.authenticator.prepare()
        self.check_scope()
        repositories = t.cast("RepositoriesStream", self.streams["repositories"])
        if repositories.fans_out():
            # Created before the first request, so the first workspace's repositories
            # can be listed on a worker while the main thread reads workspace tables.
            self.fanout(repositories.name, repositories.workers())
        try:
            super().sync_all()
            self._throttled_state.flush()
        finally:
            if self._fanout is not None:
                self._fanout.close()
            if isinstance(self.message_writer, TapWriter):
                self.message_writer.close()
            self.runtime.log_request_totals()


def _drop_unsorted_warning(record: logging.LogRecord) -> bool:
    """The SDK warns once per partition that unsorted streams are not resumable.

    Not true here: the tap promotes each repository's bookmark as soon as that
    repository is done (streams/base.py), so the warning would only be noise.
    """
    return not str(record.msg).startswith("Stream is assumed to be unsorted")


def _int_setting(config: t.Mapping[str, t.Any], name: str, default: int) -> int:
    value = config.get(name)
    return default if value is None else int(value)


if __name__ == "__main__":
    # `python -m tap_bitbucket.tap` (what the tests run) is the same command as
    # `tap-bitbucket`; imported here only, since cli imports this module.
    from tap_bitbucket.cli import main

    sys.exit(main())
