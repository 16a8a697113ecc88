"""The one HTTP path: every request of the tap (streams, listings, the connection check).

:class:`Transport` owns what the whole process shares: the authenticator (one OAuth
token), the token-bucket pacer, the per-stream request counts and the prefetch cache.
Streams reach it through the SDK's public hooks only:

* ``requests_session`` returns a :class:`StreamSession`, whose ``send`` serves a
  prefetched answer when there is one, and otherwise paces, authenticates, sends with
  the configured timeout and proxies, and refreshes the credential once on a 401;
* ``request_decorator`` wraps the SDK's request in :meth:`Transport.retrying`.

So the SDK's own request loop (and its request-duration metric) stays intact.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import typing as t
from collections import Counter, deque
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import backoff
import requests
import urllib3
from singer_sdk.exceptions import RetriableAPIError

from tap_bitbucket.errors import APIError, AuthError, GaveUp
from tap_bitbucket.prefetch import Prefetcher

if t.TYPE_CHECKING:
    from collections.abc import Callable, Generator, Mapping

    from tap_bitbucket.auth import BitbucketAuth
    from tap_bitbucket.settings import Settings

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


class TokenBucket:
    """A token-bucket pacer shared by every stream and thread of the process.

    ``requests_per_hour`` sets the steady rate. Bitbucket's ``X-RateLimit-NearLimit``
    header (sent to access tokens, notes §4.4) halves the rate until the next hour.
    """

    def __init__(self, requests_per_hour: float | None, burst: int = 10) -> None:
        self._lock = threading.Lock()
        budget = requests_per_hour
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
            self.waited_s += wait
        if wait > 0:
            time.sleep(wait)

    def lower_to(self, limit_per_hour: float) -> None:
        """Never pace faster than the limit the server states (below requests_per_hour)."""
        with self._lock:
            rate = limit_per_hour / 3600.0
            if self.rate is not None and rate < self.rate:
                LOGGER.info("Pacing to the stated %.0f requests/h", limit_per_hour)
                self.rate = rate

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


class Transport:
    """Sends every request of the process; see the module docstring."""

    def __init__(self, settings: Settings, authenticator: BitbucketAuth, user_agent: str) -> None:
        self.settings = settings
        self.api_url = settings.api_url
        self.origin = settings.origin
        self.authenticator = authenticator
        self.user_agent = user_agent
        self.pacer = TokenBucket(settings.requests_per_hour)
        self.prefetcher = Prefetcher(settings.max_workers)
        self._local = threading.local()
        self._lock = threading.Lock()
        self.requests_by_stream: Counter[str] = Counter()
        self._proxy_cache: dict[tuple[str, str], dict[str, str]] = {}
        self._sent_at: deque[float] = deque()
        #: The hourly limit Bitbucket states (``X-RateLimit-Limit``, access tokens, §4.4).
        self.server_limit: int | None = None

    def session(self, stream_name: str) -> StreamSession:
        """A session that counts its requests for ``stream_name`` (one per stream)."""
        return StreamSession(self, stream_name)

    def close(self) -> None:
        self.prefetcher.close()

    # -- sending ---------------------------------------------------------------------

    def http(self) -> requests.Session:
        """The keep-alive connection pool of this thread (Session is not thread-safe)."""
        found = getattr(self._local, "http", None)
        if found is None:
            found = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=4)
            found.mount("http://", adapter)
            found.mount("https://", adapter)
            self._local.http = found
        return t.cast("requests.Session", found)

    def send(self, prepared: requests.PreparedRequest, stream_name: str) -> requests.Response:
        """One try: pace, authenticate, send; on a 401 refresh the credential once."""
        response = self._send_once(prepared, stream_name)
        if response.status_code == 401 and self.authenticator.handle_unauthorized(response):
            response = self._send_once(prepared, stream_name)
        return response

    def _send_once(self, prepared: requests.PreparedRequest, stream_name: str) -> requests.Response:
        parts = urlsplit(str(prepared.url))
        if (parts.scheme, parts.netloc) != self.origin:
            # Credentials go to the configured api_url host only (notes §8.7).
            msg = f"{stream_name}: refusing to send a request to {parts.scheme}://{parts.netloc}"
            raise APIError(msg)
        self.pacer.acquire()
        authed = self.authenticator(prepared.copy())
        authed.headers["User-Agent"] = self.user_agent
        with self._lock:
            self.requests_by_stream[stream_name] += 1
            self._sent_at.append(time.monotonic())
        response = self.http().send(
            authed,
            timeout=self.settings.request_timeout_seconds,
            allow_redirects=True,
            proxies=self._proxies(authed),
        )
        self._note_response(response)
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

    def _note_response(self, response: requests.Response) -> None:
        """Remember `Retry-After` of a 429/503 for this thread's next backoff wait, and
        slow the pacer when Bitbucket says the limit is near."""
        value = response.headers.get("Retry-After")
        self._local.retry_after = None
        if value and response.status_code in (429, 503):
            try:
                self._local.retry_after = max(0.0, float(value))
            except ValueError:
                self._local.retry_after = None
        limit = response.headers.get("X-RateLimit-Limit", "")
        if limit.isdigit() and int(limit) != self.server_limit:
            # Scaled limits reach 10,000/h (notes §4.3): the budget the progress lines and
            # the start-up estimate count against is the one the server states.
            if self.server_limit is None:
                LOGGER.info(
                    "Bitbucket states a rate limit of %s requests/hour (resource '%s')",
                    f"{int(limit):,}",
                    response.headers.get("X-RateLimit-Resource", "?"),
                )
            self.server_limit = int(limit)
            self.pacer.lower_to(self.server_limit)
        if response.headers.get("X-RateLimit-NearLimit", "").lower() == "true":
            self.pacer.slow_down(float(limit) if limit.isdigit() else None)

    # -- the budget --------------------------------------------------------------------

    def total_requests(self) -> int:
        with self._lock:
            return sum(self.requests_by_stream.values())

    def requests_last_hour(self) -> int:
        """Requests this process sent in the last rolling hour (Bitbucket's window)."""
        horizon = time.monotonic() - 3600
        with self._lock:
            while self._sent_at and self._sent_at[0] < horizon:
                self._sent_at.popleft()
            return len(self._sent_at)

    def hourly_budget(self) -> int | None:
        """The smaller of the server's stated limit and ``requests_per_hour``, if any."""
        known = [int(v) for v in (self.server_limit, self.settings.requests_per_hour) if v]
        return min(known) if known else None

    def unauthorized(self, response: requests.Response) -> AuthError:
        """The authenticator's own hint for a 401 it could not fix (issue 12, bug 6)."""
        return AuthError(f"{self.authenticator.unauthorized_message()} (GET {_path(response)})")

    # -- retries ---------------------------------------------------------------------

    def retrying(self, func: Callable[..., T], stream_name: str) -> Callable[..., T]:
        """Wrap one request in the retry policy, with `backoff`.

        * 429: wait `Retry-After` when sent, else exponential backoff with full jitter,
          and never give up while the total wait stays under `rate_limit_max_wait_seconds`.
        * 5xx, resets, timeouts, truncated bodies: at most `max_retries` tries.
        """
        max_tries = self.settings.max_retries
        ceiling = self.settings.rate_limit_max_wait_seconds
        local = self._local

        def give_up(exc: Exception) -> bool:
            local.tries += 1
            if _status(exc) == 429:
                return bool(local.waited >= ceiling)
            local.fault_tries += 1
            return bool(local.fault_tries >= max_tries)

        def on_backoff(details: Mapping[str, t.Any]) -> None:
            local.waited += float(details.get("wait") or 0)
            _log_retry(stream_name, details)

        decorated = backoff.on_exception(
            self._waits,
            RETRYABLE,
            max_tries=None,
            giveup=give_up,
            on_backoff=on_backoff,
            jitter=None,  # the generator applies full jitter itself
            logger=None,
        )(func)

        def call(*args: t.Any, **kwargs: t.Any) -> T:
            local.tries, local.fault_tries, local.waited = 0, 0, 0.0
            try:
                return decorated(*args, **kwargs)
            except (RetriableAPIError, requests.RequestException) as exc:
                raise GaveUp(self._give_up_message(stream_name, exc), exc) from None

        return call

    def _waits(self) -> Generator[float, None, None]:
        base = self.settings.backoff_base_seconds
        cap = self.settings.backoff_max_seconds
        attempt = 0
        while True:
            retry_after = getattr(self._local, "retry_after", None)
            self._local.retry_after = None
            if retry_after is not None:
                yield min(float(retry_after), max(cap, 1.0) * 10)
            else:
                yield random.uniform(min(base / 2, cap), min(cap, base * (2**attempt)))  # noqa: S311
            attempt += 1

    def _give_up_message(self, stream_name: str, exc: BaseException) -> str:
        response = getattr(exc, "response", None)
        request = getattr(exc, "request", None) or getattr(response, "request", None)
        url = getattr(response, "url", None) or getattr(request, "url", None) or self.api_url
        advice = (
            "Bitbucket or the network is failing; re-run the sync later (it resumes from the "
            "last STATE)."
        )
        if _unreachable(exc):
            # No answer at all (a name that does not resolve, a refused connection): the
            # setting is as likely at fault as the network (found by the nightly profile
            # of tests/test_fuzz_config.py, with api_url null meaning the default host).
            advice = (
                f"Cannot reach {urlsplit(str(url)).netloc}: check 'api_url' and the network "
                "or proxy, then re-run the sync (it resumes from the last STATE)."
            )
        return (
            f"{stream_name}: GET {urlsplit(str(url)).path} failed after "
            f"{getattr(self._local, 'tries', 0)} tries; last error: {_short(exc)}. {advice}"
        )

    def log_request_totals(self) -> None:
        total = sum(self.requests_by_stream.values())
        per_stream = ", ".join(f"{k}={v}" for k, v in sorted(self.requests_by_stream.items()))
        LOGGER.info("Requests made: %s in total (%s)", total, per_stream or "none")
        if self.pacer.waited_s:
            LOGGER.info("The requests_per_hour pacer waited %.1fs in total", self.pacer.waited_s)


class StreamSession(requests.Session):
    """The ``requests_session`` of one stream: every send goes through the transport."""

    def __init__(self, transport: Transport, stream_name: str) -> None:
        super().__init__()
        self.transport = transport
        self.stream_name = stream_name

    def send(self, request: requests.PreparedRequest, **kwargs: t.Any) -> requests.Response:
        # kwargs (the SDK's timeout and allow_redirects) give way to the settings: one
        # timeout for every request, redirects always followed (diffstat answers 302).
        prefetched = self.transport.prefetcher.take(str(request.url))
        if prefetched is not None:
            return prefetched
        return self.transport.send(request, self.stream_name)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _path(response: requests.Response) -> str:
    return urlsplit(str(response.url)).path


def _short(exc: object) -> str:
    text = str(exc).splitlines()[0] if exc else "an error"
    return text[:200]


def _log_retry(stream_name: str, details: Mapping[str, t.Any]) -> None:
    wait = float(details.get("wait") or 0)
    resume = datetime.now(timezone.utc) + timedelta(seconds=wait)
    LOGGER.info(
        "%s: retry %s after %s; waiting %.1fs (resuming at %s)",
        stream_name,
        details.get("tries"),
        _short(details.get("exception")),
        wait,
        resume.strftime("%H:%M:%S"),
    )


def _unreachable(exc: BaseException) -> bool:
    """No connection could be made at all (unresolvable name, refused), as opposed to a
    connection that broke or timed out."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(
        reason, urllib3.exceptions.NewConnectionError
    )
