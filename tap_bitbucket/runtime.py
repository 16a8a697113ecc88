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

import backoff
import requests
from singer_sdk.exceptions import RetriableAPIError

if t.TYPE_CHECKING:
    from collections.abc import Callable, Generator, Mapping

    from singer_sdk.helpers.types import Context

    from tap_bitbucket.client import BitbucketStream, SkipPartition

LOGGER = logging.getLogger("tap_bitbucket")
T = t.TypeVar("T")

# What a retry can fix: server faults and 429 (RetriableAPIError), resets, timeouts and
# bodies cut short (ChunkedEncodingError, or invalid JSON raised as RetriableAPIError).
RETRYABLE = (
    RetriableAPIError,
    ConnectionResetError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


class TokenBucket:
    """A token-bucket pacer shared by every stream and thread of the process.

    ``requests_per_hour`` sets the steady rate. Bitbucket's ``X-RateLimit-NearLimit``
    header (sent to access tokens, notes §4.4) halves the rate until the next hour.
    """

    def __init__(self, requests_per_hour: float | None, burst: int = 10) -> None:
        self._lock = threading.Lock()
        budget = float(requests_per_hour) if requests_per_hour else None  # config: Decimal
        self.capacity = max(1.0, min(float(burst), budget / 100)) if budget else float(burst)
        # The bucket starts full, so a rolling hour sees `capacity` requests on top of the
        # refill: refill at (budget - capacity) per hour and no hour exceeds the budget
        # (a burst of at most 1 % of the budget keeps the steady rate within 1 % of it).
        self.rate = max(budget - self.capacity, budget / 2) / 3600.0 if budget else None
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
                LOGGER.info(
                    "Bitbucket reports the rate limit is near; pacing to %.0f requests/h",
                    new * 3600,
                )
                self.rate = new
                self.capacity = 1.0
                self.tokens = min(self.tokens, 1.0)


class Runtime:
    """What every stream shares: api_url, authenticator, session, pacer and counters."""

    def __init__(self, config: Mapping[str, t.Any], authenticator: t.Any, user_agent: str) -> None:
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
        self._proxy_cache: dict[tuple[str, str], dict[str, str]] = {}

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
        response = self.session().send(
            authed,
            timeout=stream.request_timeout,
            allow_redirects=True,
            proxies=self._proxies(authed),
        )
        self.note_response(response)
        near = response.headers.get("X-RateLimit-NearLimit", "").lower() == "true"
        if near:
            limit = response.headers.get("X-RateLimit-Limit")
            self.pacer.slow_down(float(limit) if limit and limit.isdigit() else None)
        return response

    def _proxies(self, prepared: requests.PreparedRequest) -> dict[str, str]:
        """Environment proxies (HTTPS_PROXY, NO_PROXY...), resolved once per host.

        requests resolves them on every send by scanning os.environ several times, which
        cost more CPU than parsing the response in a profile of a full sync.
        """
        parts = urlsplit(str(prepared.url))
        key = (parts.scheme, parts.netloc)
        cached = self._proxy_cache.get(key)
        if cached is None:
            cached = requests.utils.resolve_proxies(prepared, {}, trust_env=True)
            self._proxy_cache[key] = cached
        return cached

    def _refresh_after_401(self, response: requests.Response) -> bool:
        handler = getattr(self.authenticator, "handle_unauthorized", None)
        return bool(handler(response)) if handler else False

    # -- retries ---------------------------------------------------------------------

    def retrying(self, func: Callable[..., T], stream_name: str) -> Callable[..., T]:
        """Wrap one request in the retry policy, with `backoff`.

        * 429: wait `Retry-After` when sent, else exponential backoff with full jitter,
          and never give up while the total wait stays under `rate_limit_max_wait_seconds`.
        * 5xx, resets, timeouts, truncated bodies: at most `max_retries` tries.
        """
        max_tries = int(self.config.get("max_retries") or 8)
        ceiling = float(self.config.get("rate_limit_max_wait_seconds") or 3600)
        local = self._local

        def give_up(exc: Exception) -> bool:
            local.tries += 1
            if _status(exc) == 429:
                return bool(local.waited >= ceiling)
            local.fault_tries += 1
            return bool(local.fault_tries >= max_tries)

        def on_backoff(details: Mapping[str, t.Any]) -> None:
            local.waited += float(details.get("wait") or 0)
            self.log_retry(stream_name, details)

        decorated = backoff.on_exception(
            self._wait_generator,
            RETRYABLE,
            max_tries=None,
            giveup=give_up,
            on_backoff=on_backoff,
            jitter=None,  # the generator applies full jitter itself
            logger=None,
        )(func)

        def call(*args: t.Any, **kwargs: t.Any) -> T:
            local.tries, local.fault_tries, local.waited = 0, 0, 0.0
            return decorated(*args, **kwargs)

        return call

    def _wait_generator(self) -> Generator[float, None, None]:
        base = float(self.config.get("backoff_base_seconds") or 1.0)
        cap = float(self.config.get("backoff_max_seconds") or 60.0)
        attempt = 0
        while True:
            retry_after = getattr(self._local, "retry_after", None)
            self._local.retry_after = None
            if retry_after is not None:
                yield min(float(retry_after), max(cap, 1.0) * 10)
            else:
                yield random.uniform(base / 2, min(cap, base * (2**attempt)))  # noqa: S311
            attempt += 1

    def note_response(self, response: requests.Response) -> None:
        """Remember `Retry-After` of a 429/503 for the next backoff wait of this thread."""
        value = response.headers.get("Retry-After")
        self._local.retry_after = None
        if value and response.status_code in (429, 503):
            try:
                self._local.retry_after = max(0.0, float(value))
            except ValueError:
                self._local.retry_after = None

    def give_up_message(self, stream_name: str, exc: BaseException) -> str:
        response = getattr(exc, "response", None)
        request = getattr(exc, "request", None) or getattr(response, "request", None)
        url = getattr(response, "url", None) or getattr(request, "url", None) or self.api_url
        path = urlsplit(str(url)).path
        return (
            f"{stream_name}: GET {path} failed after {getattr(self._local, 'tries', 0)} tries; "
            f"last error: {_short(exc)}. Bitbucket or the network is failing; re-run the sync "
            "later (it resumes from the last STATE)."
        )

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
        if self.pacer.waited_s:
            LOGGER.info("The requests_per_hour pacer waited %.1fs in total", self.pacer.waited_s)


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
