"""tap-bitbucket: the Tap class."""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import re
import sys
import traceback
import typing as t

import click
from singer_sdk import Tap
from singer_sdk.exceptions import ConfigValidationError

from tap_bitbucket import auth
from tap_bitbucket.directory import Directory
from tap_bitbucket.errors import ConfigError, TapBitbucketError
from tap_bitbucket.output import TapWriter, ThrottledStateWriter
from tap_bitbucket.redact import install_redaction
from tap_bitbucket.scope import Scope
from tap_bitbucket.sdk_gaps import quiet_unsorted_warning
from tap_bitbucket.services import Services
from tap_bitbucket.settings import SETTINGS, Settings
from tap_bitbucket.streams import STREAM_TYPES
from tap_bitbucket.streams.bookmarks import Bookmarks, validate_state
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
            self._services = Services(
                settings=settings,
                transport=transport,
                scope=Scope(settings),
                directory=Directory(settings, transport),
                bookmarks=Bookmarks(self.state, settings),
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
            self.sync_all()
            self.state_writer.flush()
        finally:
            services.transport.close()
            if isinstance(self.message_writer, TapWriter):
                self.message_writer.close()
            services.transport.log_request_totals()

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
        for pattern in scope.unmatched_globs(names):
            raise ConfigError(
                "repositories",
                f"'{pattern}' matches no repository of the workspaces "
                f"{', '.join(slugs) or '(none visible)'}; check the glob (it matches "
                "'workspace/repo' full names) and the credential's access",
            )

    # -- CLI -------------------------------------------------------------------------

    @classmethod
    def get_singer_command(cls) -> click.Command:
        command = super().get_singer_command()
        original_invoke = click.Command.invoke
        for param in command.params:
            # click.File would answer an unreadable file with a multi-line usage error;
            # `invoke` reads these files itself and reports one line instead.
            if param.name in ("state", "catalog"):
                param.type = click.STRING

        def invoke(ctx: click.Context) -> t.Any:
            logging.captureWarnings(capture=True)
            sys.excepthook = _excepthook
            try:
                return original_invoke(command, ctx)
            except ConfigValidationError as exc:
                _report(_config_error_from_schema(exc))
            except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt):
                raise
            except Exception as exc:
                _report(exc)
            finally:
                # The process is about to exit: without this the interpreter's shutdown
                # collections walk every object the sync left (measured 0.3 s at scale 1
                # and 1.1 s with 8 workers, after the last record was written).
                gc.freeze()
            return None

        command.invoke = invoke  # type: ignore[method-assign]
        return command

    @classmethod
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> t.Any:
        """`--config`: a missing or malformed file is one line, not a traceback."""
        try:
            return super().cb_config(ctx, param, value)
        except Exception as exc:  # any failure to read the file is the same error
            files = ", ".join(str(v) for v in value)
            error = ConfigError(
                "config", f"cannot read the config file {files}: {_file_problem(exc)}"
            )
            error.__cause__ = exc
            _report(error)

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: t.Any = None,
        state: t.Any = None,
        catalog: t.Any = None,
    ) -> None:
        """Tap.invoke, with the tap's own run around the SDK's sync_all (which is final)."""
        super(Tap, cls).invoke(about=about, about_format=about_format)
        cls.print_version(print_fn=cls.logger.info)
        state_file, catalog_file = _json_file("state", state), _json_file("catalog", catalog)
        tap = cls(
            config=config.config if config else None,
            state=None if state_file is None else json.load(state_file),
            catalog=None if catalog_file is None else json.load(catalog_file),
            parse_env_config=bool(config and config.parse_env),
            validate_config=True,
        )
        tap.run()

    @classmethod
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        """`--test`: one cheap authenticated call first, failing fast on bad credentials."""
        try:
            if value and value != "disabled":
                config = ctx.params.get("config")
                tap = cls(
                    config=config.config if config else None,
                    parse_env_config=bool(config and config.parse_env),
                    validate_config=True,
                )
                tap.services.directory.check_credentials()
            super().cb_test(ctx, param, value)
        except (click.exceptions.Exit, click.ClickException):
            raise
        except ConfigValidationError as exc:
            _report(_config_error_from_schema(exc))
        except Exception as exc:
            _report(exc)



def _config_error_from_schema(exc: ConfigValidationError) -> ConfigError:
    errors = list(exc.errors) or [str(exc)]
    first = str(errors[0])
    known = SETTINGS.to_dict()["properties"]
    # The SDK ends each message with the path, e.g. "... in config['auth_scheme']"; the
    # message itself may quote other setting names (an enum of schemes), so trust the path.
    path = re.search(r"config\[['\"]([^'\"]+)['\"]\]", first)
    setting = path.group(1) if path and path.group(1) in known else "config"
    if setting == "config":
        for token in first.replace("[", " ").replace("]", " ").replace("'", " ").split():
            if token in known:
                setting = token
                break
    error = ConfigError(setting, first)
    error.__cause__ = exc  # the traceback shown with debug logging
    return error


def _file_problem(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _json_file(option: str, path: str | None) -> t.Any:
    """Read the --state/--catalog file; one-line ConfigError when it cannot be used.

    Returns a file-like object (what the SDK's invoke expects), or None.
    """
    if path is None:
        return None
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        error = ConfigError(option, f"cannot read the {option} file {path}: {_file_problem(exc)}")
        raise error from exc
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ConfigError(option, f"the {option} file {path} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ConfigError(option, f"the {option} file {path} must hold a JSON object")
    return io.StringIO(text)


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: t.Any) -> None:
    """Failures raised outside `invoke` (e.g. in `--test`): same one-line report."""
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    try:
        _report(exc)
    except SystemExit as done:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(done.code or 1))


def _report(exc: BaseException) -> t.NoReturn:
    """One line on stderr for every failure; a traceback only with debug logging."""
    exc_type, tb = type(exc), exc.__traceback__
    debug = logging.getLogger().isEnabledFor(logging.DEBUG) or LOGGER.isEnabledFor(logging.DEBUG)
    if debug:
        traceback.print_exception(exc_type, exc, tb, file=sys.stderr)
    if isinstance(exc, TapBitbucketError):
        line = str(exc)
    else:
        detail = str(exc).splitlines()[0] if str(exc) else exc_type.__name__
        line = f"{exc_type.__name__}: {detail} (set TAP_BITBUCKET_LOGLEVEL=debug for a traceback)"
    from tap_bitbucket.redact import redact_current  # noqa: PLC0415

    sys.stderr.write(f"tap-bitbucket: error: {redact_current(line)}\n")
    sys.stderr.flush()
    code = exc.exit_code if isinstance(exc, TapBitbucketError) else 1
    sys.stdout.flush()
    raise SystemExit(code)




if __name__ == "__main__":
    TapBitbucket.cli()
