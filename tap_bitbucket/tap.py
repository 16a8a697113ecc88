"""tap-bitbucket: the Tap class."""

from __future__ import annotations

import json
import logging
import typing as t

from singer_sdk import Tap

from tap_bitbucket import auth
from tap_bitbucket.directory import Directory
from tap_bitbucket.errors import ConfigError
from tap_bitbucket.gaps import CredentialGaps
from tap_bitbucket.output import TapWriter, ThrottledStateWriter
from tap_bitbucket.planning import plan_run
from tap_bitbucket.progress import Progress
from tap_bitbucket.redact import install_redaction
from tap_bitbucket.scope import Scope
from tap_bitbucket.sdk_gaps import quiet_unsorted_warning
from tap_bitbucket.services import Services
from tap_bitbucket.settings import SETTINGS, Settings
from tap_bitbucket.streams import STREAM_TYPES
from tap_bitbucket.streams.bookmarks import Bookmarks
from tap_bitbucket.streams.state_check import stale_repository_entries, validate_state
from tap_bitbucket.transport import Transport

if t.TYPE_CHECKING:
    from singer_sdk.streams import Stream

LOGGER = logging.getLogger("tap_bitbucket")


class TapBitbucket(Tap):
    """Singer tap for Bitbucket Cloud."""

    name = "tap-bitbucket"
    package_name = "tap-bitbucket"
    config_jsonschema = SETTINGS.to_dict()
    message_writer_class = TapWriter

    _services: Services | None = None
    _state_writer_throttled: ThrottledStateWriter | None = None

    def discover_streams(self) -> list[Stream]:
        # The catalog never depends on config: the same streams and schemas always.
        return [stream_class(tap=self) for stream_class in STREAM_TYPES]

    def load_state(self, state: dict[str, t.Any]) -> None:
        validate_state(state)
        super().load_state(state)

    @property
    def services(self) -> Services:
        """What the streams share, built on first use (discovery never needs it)."""
        if self._services is None:
            settings = Settings.from_config(self.config)
            auth.validate_auth_config(settings.raw)
            authenticator = auth.build_authenticator(settings.raw, logger=LOGGER)
            transport = Transport(
                settings,
                authenticator,
                settings.user_agent or f"tap-bitbucket/{self.plugin_version}",
            )
            secrets = [str(settings.raw.get(k) or "") for k in auth.SECRET_SETTINGS]
            install_redaction(
                lambda: [v for v in (*secrets, *authenticator.secret_values()) if v]
            )
            writer = self.message_writer
            self._services = Services(
                settings=settings,
                transport=transport,
                scope=Scope(settings),
                directory=Directory(settings, transport),
                bookmarks=Bookmarks(self.state, settings),
                gaps=CredentialGaps(),
                progress=Progress(
                    settings,
                    transport,
                    lambda: writer.records_written if isinstance(writer, TapWriter) else 0,
                ),
                write_state=lambda: self.state_writer.write_state(self.state),
            )
        return self._services

    @property
    def state_writer(self) -> ThrottledStateWriter:  # type: ignore[override]
        # Streams write STATE through this public property; the throttle keeps a state
        # that grows with the repositories from being copied after every partition.
        if self._state_writer_throttled is None:
            interval = self.services.settings.state_interval_seconds
            self._state_writer_throttled = ThrottledStateWriter(self.message_writer, interval)
        return self._state_writer_throttled

    def run(self) -> None:
        """A whole sync: checks that need the API, the SDK's sync_all, then the end."""
        services = self.services
        quiet_unsorted_warning()
        try:
            services.transport.authenticator.prepare()
            self.check_scope()
            plan_run(self.streams.values(), services)
            services.progress.start()
            self.sync_all()
            self.state_writer.flush()
            self.warn_stale_state()
            refusal = services.directory.refusal()
            if refusal is not None:
                raise refusal
        finally:
            services.progress.stop()
            services.transport.close()
            if isinstance(self.message_writer, TapWriter):
                self.message_writer.close()
            services.transport.log_request_totals()

    def warn_stale_state(self) -> None:
        """One WARNING per repository entry of the state that matches no repository any
        more (renamed or deleted): the tap never reads it again (issue 16)."""
        stale = stale_repository_entries(self.state, self.services.directory.listed())
        for entry, streams in stale.items():
            LOGGER.warning(
                "State entry for %s matches no repository of its workspace (renamed or "
                "deleted?), so it no longer applies (streams: %s); delete it from the state "
                "to silence this warning.",
                entry,
                ", ".join(sorted(streams)),
            )

    def check_scope(self) -> None:
        """What only the API can tell, checked before any record is written: every
        configured workspace exists, and every include glob matches a repository."""
        services = self.services
        directory, scope = services.directory, services.scope
        for slug in services.settings.workspaces:
            directory.workspace(slug)  # ConfigError when missing or not visible
        if not scope.include:
            return
        slugs = directory.workspace_slugs()
        names = [
            str(r.get("full_name"))
            for slug in scope.workspaces_named(slugs)
            for r in directory.repositories(slug)
        ]
        if directory.refusal() is not None:
            return  # a glob of a refused workspace cannot match: the end of the run says why
        for pattern in scope.unmatched_globs(names):
            raise ConfigError(
                "repositories",
                f"'{pattern}' matches no repository of the workspaces "
                f"{', '.join(slugs) or '(none visible)'}; check the glob (it matches "
                "'workspace/repo' full names) and the credential's access",
            )

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: t.Any = None,
        state: t.IO[str] | None = None,
        catalog: t.IO[str] | None = None,
    ) -> None:
        """Tap.invoke, with :meth:`run` around the SDK's ``sync_all`` (which is final)."""
        super(Tap, cls).invoke(about=about, about_format=about_format)
        cls.print_version(print_fn=cls.logger.info)
        tap = cls(
            config=config.config if config else None,
            state=None if state is None else json.load(state),
            catalog=None if catalog is None else json.load(catalog),
            parse_env_config=bool(config and config.parse_env),
            validate_config=True,
        )
        tap.run()

    def check_connection(self) -> None:
        """One cheap authenticated call (`--test` makes it before the SDK's own test)."""
        self.services.directory.check_credentials()


if __name__ == "__main__":
    # `python -m tap_bitbucket.tap` (what the tests run) is the same command as
    # `tap-bitbucket`; imported here only, since cli imports this module.
    from tap_bitbucket.cli import console

    console()
