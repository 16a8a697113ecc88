"""Per-process shared machinery: one authenticator, one pacer, request accounting.

Every stream (and every worker thread) goes through the one :class:`Runtime` owned by
the tap, so the request budget, the OAuth token and the counters are shared.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import typing as t
from collections import Counter
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import requests

if t.TYPE_CHECKING:
    from collections.abc import Generator, Mapping

    from singer_sdk.helpers.types import Context

    from tap_bitbucket.client import BitbucketStream, SkipPartition

LOGGER = logging.getLogger("tap_bitbucket")


class TokenBucket:
    """A token-bucket pacer shared by every stream and thread of the process.

    ``requests_per_hour`` sets the steady rate. Bitbucket's ``X-RateLimit-NearLimit``
    header (sent to access tokens, notes §4.4) halves the rate until the next hour.
    """

    def __init__(self, requests_per_hour: float | None, burst: int = 10) -> None:
        self._lock = threading.Lock()
        self.rate = (requests_per_hour / 3600.0) if requests_per_hour else None
        self.capacity = float(max(1, min(burst, int(requests_per_hour or burst))))
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.waited_s = 0.0

    def acquire(self) -> None:
        if self.rate is None:
            return
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            self.tokens -= 1.0
            wait = 0.0 if self.tokens >= 0 else -self.tokens / self.rate
        if wait > 0:
            self.waited_s += wait
            time.sleep(wait)

    def slow_down(self, limit_per_hour: float | None = None) -> None:
        with self._lock:
            base = (limit_per_hour / 3600.0) if limit_per_hour else (self.rate or 1000 / 3600.0)
            new = base / 2
            if self.rate is None or new < self.rate:
                LOGGER.info("Bitbucket reports the rate limit is near; pacing to %.0f requests/h", new * 3600)
                self.rate = new
                self.capacity = 1.0
                self.tokens = min(self.tokens, 1.0)


class Runtime:
    """What every stream shares: api_url, authenticator, session, pacer and counters."""

    def __init__(self, config: Mapping[str, t.Any], authenticator: t.Any, user_agent: str) -> None:  # noqa: ANN401
        self.config = config
        self.api_url = str(config.get("api_url") or "https://api.bitbucket.org/2.0").rstrip("/")
        parts = urlsplit(self.api_url)
        self.origin = (parts.scheme, parts.netloc)
        self.authenticator = authenticator
        self.user_agent = user_agent
        self.pacer = TokenBucket(config.get("requests_per_hour"))
        self._local = threading.local()
        self._lock = threading.Lock()
        self.requests_by_stream: Counter[str] = Counter()
        self.skips: list[tuple[str, str, int, str]] = []
        self._warned: set[tuple[str, str]] = set()

    def session(self) -> requests.Session:
        """One keep-alive session per thread (requests.Session is not thread-safe)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=4)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return t.cast("requests.Session", session)

    # -- sending ---------------------------------------------------------------------

    def send(
        self,
        stream: BitbucketStream,
        prepared: requests.PreparedRequest,
        context: Context | None,
    ) -> requests.Response:
        """Send one request: pace, authenticate, refresh once on 401, validate."""
        response = self._send_once(stream, prepared)
        if response.status_code == 401 and self._refresh_after_401(response):
            response = self._send_once(stream, prepared)
        stream.validate_response(response)
        return response

    def _send_once(
        self, stream: BitbucketStream, prepared: requests.PreparedRequest
    ) -> requests.Response:
        self.pacer.acquire()
        authed = self.authenticator(prepared.copy())
        with self._lock:
            self.requests_by_stream[stream.name] += 1
        response = self.session().send(authed, timeout=stream.timeout, allow_redirects=True)
        near = response.headers.get("X-RateLimit-NearLimit", "").lower() == "true"
        if near:
            limit = response.headers.get("X-RateLimit-Limit")
            self.pacer.slow_down(float(limit) if limit and limit.isdigit() else None)
        return response

    def _refresh_after_401(self, response: requests.Response) -> bool:
        handler = getattr(self.authenticator, "handle_unauthorized", None)
        return bool(handler(response)) if handler else False

    # -- retries ---------------------------------------------------------------------

    def wait_generator(self) -> Generator[float, None, None]:
        """Exponential backoff with full jitter; Retry-After wins when present."""
        base = float(self.config.get("backoff_base_seconds", 1.0))
        cap = float(self.config.get("backoff_max_seconds", 60.0))
        attempt = 0
        while True:
            retry_after = getattr(self._local, "retry_after", None)
            self._local.retry_after = None
            if retry_after is not None:
                yield retry_after
            else:
                yield random.uniform(0, min(cap, base * (2**attempt)))  # noqa: S311
            attempt += 1

    def log_retry(self, stream_name: str, details: Mapping[str, t.Any]) -> None:
        exc = details.get("exception")
        wait = float(details.get("wait") or 0)
        resume = datetime.now(timezone.utc) + timedelta(seconds=wait)
        LOGGER.info(
            "%s: retry %s after %s; waiting %.1fs (resuming at %s)",
            stream_name,
            details.get("tries"),
            _short(exc),
            wait,
            resume.strftime("%H:%M:%S"),
        )

    # -- expected errors -------------------------------------------------------------

    def warn_skip(self, stream_name: str, context: Context | None, skip: SkipPartition) -> None:
        where = _describe(context)
        with self._lock:
            self.skips.append((stream_name, where, skip.status, skip.reason))
        LOGGER.warning(
            "Skipping stream '%s' for %s: HTTP %s, %s",
            stream_name,
            where,
            skip.status,
            skip.reason,
        )

    def log_request_totals(self) -> None:
        total = sum(self.requests_by_stream.values())
        per_stream = ", ".join(f"{k}={v}" for k, v in sorted(self.requests_by_stream.items()))
        LOGGER.info("Requests made: %s in total (%s)", total, per_stream or "none")


def _describe(context: Mapping[str, t.Any] | None) -> str:
    if not context:
        return "the tap"
    if "repo_slug" in context:
        return f"repository {context.get('workspace_slug')}/{context['repo_slug']}"
    if "project_key" in context:
        return f"project {context.get('workspace_slug')}/{context['project_key']}"
    if "workspace_slug" in context:
        return f"workspace {context['workspace_slug']}"
    return str(dict(context))


def _short(exc: object) -> str:
    text = str(exc).splitlines()[0] if exc else "an error"
    return text[:200]
