"""Keep secrets out of logs and error messages.

``install_redaction(get_secrets)`` makes every log record that mentions a secret value show
``***`` instead. It works at three levels so that no record slips through, whichever logger
or handler emits it:

* a log-record factory (every record, created by any logger, passes through it);
* a :class:`logging.Filter` on the root logger, the ``singer_sdk`` and ``tap_bitbucket``
  loggers;
* the same filter on every handler those loggers have when ``install_redaction`` runs.

The secrets are looked up on each record through the callables given to
``install_redaction`` (an authenticator's ``secret_values``), so tokens obtained later (a
refreshed OAuth token) are covered too. The work is cheap: nothing happens while there is no
secret, and the one compiled pattern is rebuilt only when the set of secrets changes.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"

#: Values shorter than this are not treated as secrets: masking every "a" or "12" would
#: make logs unreadable and such values cannot be real credentials anyway.
MIN_SECRET_LENGTH = 4

_LOGGER_NAMES = ("", "singer_sdk", "tap_bitbucket")


def basic_auth_value(user: str, password: str) -> str:
    """Return the base64 part of an HTTP Basic ``Authorization`` header."""
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _variants(secrets: Iterable[object]) -> frozenset[str]:
    """Each usable secret plus the encoded forms it may take inside URLs or bodies."""
    out: set[str] = set()
    for value in secrets:
        if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
            continue
        out.add(value)
        out.add(quote(value, safe=""))
        out.add(quote_plus(value, safe=""))
    return frozenset(out)


def _compile(secrets: frozenset[str]) -> re.Pattern[str] | None:
    if not secrets:
        return None
    # Longest first, so that a secret that contains another one is masked as a whole.
    ordered = sorted(secrets, key=lambda s: (-len(s), s))
    return re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str, secrets: Iterable[object]) -> str:
    """Return ``text`` with every secret value (and its URL-encoded forms) replaced by ``***``."""
    pattern = _compile(_variants(secrets))
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


class _Redactor:
    """Process-wide registry of secret getters with a cached, compiled pattern."""

    def __init__(self) -> None:
        self._getters: list[Callable[[], Iterable[str]]] = []
        self._lock = threading.Lock()
        self._key: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self._busy = threading.local()
        self._collected: tuple[str, ...] | None = None

    def add_getter(self, getter: Callable[[], Iterable[str]]) -> None:
        with self._lock:
            if getter not in self._getters:
                self._getters.append(getter)

    def pattern(self) -> re.Pattern[str] | None:
        getters = list(self._getters)
        if not getters:
            return None
        collected: list[str] = []
        for getter in getters:
            try:
                collected.extend(getter())
            except Exception:  # noqa: S112 - a broken getter must never break logging
                continue
        # Every log record asks; the secrets rarely change (an OAuth refresh), so the
        # URL-encoded variants are recomputed only when the raw values differ.
        raw = tuple(collected)
        if raw == self._collected:
            return self._pattern
        key = _variants(collected)
        self._collected = raw
        if key != self._key:
            with self._lock:
                if key != self._key:
                    self._pattern = _compile(key)
                    self._key = key
        return self._pattern

    def redact_text(self, text: str) -> str:
        pattern = self.pattern()
        return text if pattern is None else pattern.sub(MASK, text)

    def redact_record(self, record: logging.LogRecord) -> None:
        if getattr(self._busy, "on", False):  # a getter that logs must not recurse
            return
        self._busy.on = True
        try:
            pattern = self.pattern()
            if pattern is None:
                return
            # A record passes here up to three times (factory, logger and handler
            # filters); formatting it again (a METRIC line is a json.dumps) is wasted
            # unless its message or the secrets changed since.
            checked = (pattern, record.msg, record.args)
            previous = record.__dict__.get("_tap_bitbucket_redacted")
            if previous is not None and all(a is b for a, b in zip(previous, checked, strict=True)):
                return
            try:
                message = record.getMessage()
            except Exception:
                return
            cleaned = pattern.sub(MASK, message)
            if cleaned != message:
                record.msg = cleaned
                record.args = None
            record.__dict__["_tap_bitbucket_redacted"] = (pattern, record.msg, record.args)
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = pattern.sub(MASK, record.exc_text)
            if record.stack_info:
                record.stack_info = pattern.sub(MASK, record.stack_info)
        finally:
            self._busy.on = False


_REDACTOR = _Redactor()


class SecretRedactingFilter(logging.Filter):
    """A logging filter that masks every registered secret; it never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        _REDACTOR.redact_record(record)
        return True


_FILTER = SecretRedactingFilter()
_factory_installed = False
_install_lock = threading.Lock()


def _install_factory() -> None:
    global _factory_installed  # noqa: PLW0603 - one process-wide hook
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _REDACTOR.redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


def install_redaction(get_secrets: Callable[[], Iterable[str]]) -> None:
    """Mask the values returned by ``get_secrets()`` in every log record from now on.

    May be called several times (one call per authenticator); the secrets of every getter
    are masked. Calling it again also attaches the filter to handlers added since.
    """
    with _install_lock:
        _REDACTOR.add_getter(get_secrets)
        _install_factory()
        for name in _LOGGER_NAMES:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
            for handler in logger.handlers:
                if _FILTER not in handler.filters:
                    handler.addFilter(_FILTER)


def redact_current(text: str) -> str:
    """Mask, in ``text``, every secret known now to the ``install_redaction`` getters.

    For error lines printed outside logging (the CLI's one-line error report).
    """
    return _REDACTOR.redact_text(text)


redact_registered = redact_current
