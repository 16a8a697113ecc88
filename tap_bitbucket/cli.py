"""The `tap-bitbucket` command: the SDK's click command, with every failure as ONE line.

``main()`` runs the command the SDK builds (``get_singer_command``, reached through the
public ``cli`` accessor so the SDK also sets up console logging) in click's
``standalone_mode=False``: click then raises instead of printing usage and exiting, and
everything that ends the run reaches ``report()``, which prints
``tap-bitbucket: error: <message>`` on stderr and returns the exit code.

The tap's own behaviour on the command line lives in ``CommandLineTap``, a subclass that
overrides only public, non-final SDK classmethods (``cb_config``, ``cb_test``,
``invoke``): each turns what the SDK would log as several lines into an exception that
``report()`` can print as one.

Hooks singer-sdk 0.54 lacks (each workaround is pinned by a test in tests/test_cli.py that
fails when an SDK upgrade changes the behaviour it works around):

* a way to choose the command class or its error reporting: ``get_singer_command`` always
  builds a ``SingerCommand``, whose ``invoke`` installs ``sys.excepthook`` and turns a
  ``ConfigValidationError`` into several log lines and exit 1;
* a step before the connection test (``run_connection_test`` is final), so ``cb_test``
  builds its own tap from the parsed ``--config`` as the SDK's does, through the
  ``config``/``parse_env`` attributes of the SDK's private parsed form.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import re
import sys
import traceback
import typing as t

import click
from singer_sdk.exceptions import ConfigValidationError

from tap_bitbucket.catalog_check import check_catalog
from tap_bitbucket.errors import ConfigError, TapBitbucketError
from tap_bitbucket.redact import redact_current
from tap_bitbucket.settings import SETTINGS
from tap_bitbucket.tap import TapBitbucket

if t.TYPE_CHECKING:
    from collections.abc import Sequence

LOGGER = logging.getLogger("tap_bitbucket")
PROG_NAME = "tap-bitbucket"
PREFIX = f"{PROG_NAME}: error: "
DEBUG_HINT = "(set TAP_BITBUCKET_LOGLEVEL=debug for a traceback)"
#: What a shell reports for a run ended by Ctrl-C (128 + SIGINT).
INTERRUPTED = 130


class CommandLineTap(TapBitbucket):
    # No docstring of its own: `--about` prints the class docstring as the description.
    __doc__ = TapBitbucket.__doc__

    @classmethod
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> t.Any:
        # The SDK reads --config in this eager callback; a missing or malformed file would
        # surface as a bare OSError/JSON error that does not say which option it was.
        try:
            return super().cb_config(ctx, param, value)
        except Exception as exc:  # any failure to read the file is the same error
            files = ", ".join(str(v) for v in value)
            raise ConfigError(
                "config", f"cannot read the config file {files}: {file_problem(exc)}"
            ) from exc

    @classmethod
    def invoke(
        cls,
        *,
        state: t.IO[str] | None = None,
        catalog: t.IO[str] | None = None,
        **kwargs: t.Any,
    ) -> None:
        # click.File has opened --state/--catalog (an unopenable one is click's own one-line
        # BadParameter); the SDK would then fail on malformed JSON without naming the file.
        state = json_object_file("state", state)
        catalog = json_object_file("catalog", catalog)
        try:
            super().invoke(state=state, catalog=catalog, **kwargs)
        except ConfigValidationError as exc:
            # Raised while the SDK's SingerCommand.invoke is on the stack: it would catch it,
            # log every schema error plus a summary, and exit 1. As a ConfigError it passes.
            raise config_error_from_schema(exc) from exc

    @classmethod
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        # The SDK's connection test syncs a record of every stream; one authenticated call
        # first fails fast, with one line, on a bad credential.
        try:
            if value and value != "disabled":
                config = ctx.params.get("config")
                tap = cls(
                    config=config.config if config else None,
                    parse_env_config=bool(config and config.parse_env),
                    validate_config=True,
                )
                tap.check_connection()
            super().cb_test(ctx, param, value)
        except ConfigValidationError as exc:
            raise config_error_from_schema(exc) from exc


def main(args: Sequence[str] | None = None) -> int:
    """Run `tap-bitbucket` with ``args`` (default: ``sys.argv[1:]``); return the exit code."""
    logging.captureWarnings(capture=True)
    # SingerCommand.invoke replaces sys.excepthook with one that logs a traceback; every
    # failure is caught below, so the caller's hook is put back rather than left replaced.
    previous_hook = sys.excepthook
    code = 0
    try:
        command = CommandLineTap.cli
        result = command.main(
            args=list(sys.argv[1:] if args is None else args),
            prog_name=PROG_NAME,
            standalone_mode=False,
        )
        # standalone_mode=False returns ctx.exit()'s code (an int) or the callback's result.
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:  # the SDK ends `--about` and SIGTERM with sys.exit
        code = exit_code_of(exc)
    except BaseException as exc:
        code = report(exc)
    finally:
        sys.excepthook = previous_hook
    return flush_stdout(code)


def console() -> None:
    """The `tap-bitbucket` console script: :func:`main`, then exit the process."""
    code = main()
    # The process is about to exit: without this the interpreter's shutdown collections
    # walk every object the sync left (measured 0.3 s at scale 1 and 1.1 s with 8
    # workers, after the last record was written). Only here: a caller of main() in a
    # long-lived process would keep every run's objects (17 MB a run in the property
    # tests, which run the tap in-process hundreds of times).
    gc.freeze()
    sys.exit(code)


def report(exc: BaseException) -> int:
    """Print one line on stderr for ``exc`` (a traceback first with debug logging on).

    Returns the exit code: ``exit_code`` of a TapBitbucketError, click's own for usage
    errors, 130 for an interrupt, 1 for anything else.
    """
    if is_debug():
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        sys.stderr.write(redact_current(text))
    line, code = describe(exc)
    sys.stderr.write(f"{PREFIX}{one_line(redact_current(line))}\n")
    sys.stderr.flush()
    return code


def one_line(text: str) -> str:
    """Control characters escaped: a value quoted from the input (a workspace '0\\r0',
    found by tests/test_fuzz_config.py) must not break the one line in two."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def describe(exc: BaseException) -> tuple[str, int]:
    """The message and exit code for ``exc``."""
    if isinstance(exc, ConfigValidationError):
        exc = config_error_from_schema(exc)
    if isinstance(exc, TapBitbucketError):
        return str(exc), exc.exit_code
    if isinstance(exc, click.ClickException):
        return first_line(exc.format_message(), type(exc).__name__), exc.exit_code
    if isinstance(exc, (KeyboardInterrupt, click.Abort)):
        return "interrupted", INTERRUPTED
    name = type(exc).__name__
    return f"{name}: {first_line(str(exc), name)} {DEBUG_HINT}", 1


def is_debug() -> bool:
    return logging.getLogger().isEnabledFor(logging.DEBUG) or LOGGER.isEnabledFor(logging.DEBUG)


def exit_code_of(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    # sys.exit("message") prints the message and exits 1; keep it to the one-line format.
    return report(RuntimeError(str(exc.code)))


def flush_stdout(code: int) -> int:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (a target) went away. The interpreter would flush again at shutdown
        # and print "Exception ignored ... BrokenPipeError": give that flush nothing to do.
        sys.stdout = io.StringIO()
        return code or 1
    return code


def first_line(text: str, fallback: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else fallback


def config_error_from_schema(exc: ConfigValidationError) -> ConfigError:
    """The SDK's schema errors as one ConfigError naming the (first) setting at fault."""
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
    error = ConfigError(setting, f"{first}; {schema_advice(first)}")
    error.__cause__ = exc  # the traceback shown with debug logging
    return error


_TYPE_WORDS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "array": "a list",
    "boolean": "true or false",
    "object": "an object",
}


def schema_advice(message: str) -> str:
    """What to do about one of the SDK's schema errors (found by tests/test_fuzz_config.py:
    "[] is not of type 'string', 'null' in config['access_token']" said nothing more)."""
    wrong_type = re.search(r"is not of type (.+?)(?: in config|$)", message)
    if wrong_type:
        names = re.findall(r"'(\w+)'", wrong_type.group(1))
        words = [_TYPE_WORDS[n] for n in names if n in _TYPE_WORDS]
        if words:
            return f"set it to {' or '.join(words)}, or remove it"
    return "fix the value (`tap-bitbucket --about` lists every setting)"


def file_problem(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return first_line(str(exc), type(exc).__name__)


def json_object_file(option: str, handle: t.IO[str] | None) -> t.IO[str] | None:
    """Check that an opened --state/--catalog file holds a JSON object.

    Returns a file-like object over the same text (what the SDK's invoke reads), or None.
    An empty file counts as an empty object.
    """
    if handle is None:
        return None
    name = getattr(handle, "name", option)
    name = "<stdin>" if name in ("-", "<stdin>") else name
    try:
        text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            option, f"cannot read the {option} file {name}: {file_problem(exc)}"
        ) from exc
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ConfigError(option, f"the {option} file {name} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ConfigError(option, f"the {option} file {name} must hold a JSON object")
    if option == "catalog":
        check_catalog(value)
    return io.StringIO(text if text.strip() else "{}")
