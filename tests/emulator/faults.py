"""Fault injection and the rate limiter.

`FaultRule` describes one kind of failure and when it fires; `FaultInjector` decides, for a
request with a given number and path, which rule (if any) fires. Request numbers are
per-emulator and 1-based, counted over API (`/2.0/...`) and OAuth (`/site/oauth2/...`)
requests; admin requests (`/_emulator/...`) are not numbered.

Scheduling (a rule fires only for requests whose path matches `path_regex`, searched in the
request path including the `/2.0` prefix, without the query string):

* `at=[n, ...]`: fires on those global request numbers;
* `every=N`: fires on every N-th request matching `path_regex` (N, 2N, ...);
* `probability=p`: fires with probability p per matching request, drawn from
  `random.Random(fault_seed)` under a lock (reproducible for a sequential client);
* none of the three: fires on every matching request.

`count` caps how often a rule fires in total. The first rule that fires wins.
"""

from __future__ import annotations

import copy
import random
import re
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["FAULT_KINDS", "FaultInjector", "FaultRule", "FieldDrift", "RateLimiter"]

FAULT_KINDS = (
    "500",
    "502",
    "503",
    "504",
    "error",  # any status given by `status` (e.g. 555), JSON error envelope
    "429",
    "reset",
    "truncate",
    "latency",
    "timeout",
    "revoke",
    # Answers that are 200 OK but not a page (issue 16's server-answer cases):
    "html_200",
    "error_200",
    "empty_page",
    "oversized_page",
)

DEFAULT_TIMEOUT_MS = 30_000


@dataclass
class FaultRule:
    """One injected fault.

    kind: one of FAULT_KINDS.
      "500" / "502" / "503" / "504": that status. Body: JSON error envelope for 500, an HTML
          error page for 502/503/504 (what Bitbucket's edge proxies send); override with
          `body="json"` or `body="html"`. `status` overrides the code.
      "error": status `status` (required) with a JSON error envelope (or `body="html"`).
      "429": text/plain `Rate limit for this resource has been exceeded`; `Retry-After`
          only when `retry_after` is set.
      "reset": the socket is closed (RST) without any response. On the OAuth token endpoint
          this happens before the grant is processed (nothing is spent or rotated).
      "truncate": the real response is computed, its full Content-Length is sent, but only
          the first half of the body is written before the connection is closed.
      "latency": sleep `latency_ms`, then answer normally.
      "timeout": sleep `latency_ms` (default 30 s) before answering; meant to exceed the
          client's read timeout.
      "revoke": the credential of this request is revoked, then 401 is answered.
      "html_200": 200 with an HTML page (a captive portal or a proxy's maintenance page).
      "error_200": 200 with Bitbucket's JSON error envelope and no `values`.
      "empty_page": a collection answers 200 with no values but a `next` link to the same
          request plus `_emulator_empty=N` (N counts the empty pages); the page after the
          last one that fires is the real page, so nothing is lost by following `next`.
      "oversized_page": a collection answers the whole rest of the list in one page,
          ignoring `pagelen`, with no `next`.
    """

    kind: str
    path_regex: str = ".*"
    at: list[int] | None = None
    every: int | None = None
    probability: float | None = None
    count: int | None = None
    latency_ms: int = 0
    status: int | None = None
    retry_after: float | None = None
    body: str | None = None
    _fired: int = field(default=0, repr=False, compare=False)
    _seen: int = field(default=0, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.kind = str(self.kind)
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.kind == "error" and self.status is None:
            raise ValueError('fault kind "error" needs a status')
        if self.body not in (None, "json", "html"):
            raise ValueError('body must be None, "json" or "html"')
        if self.every is not None and self.every < 1:
            raise ValueError("every must be >= 1")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        self._regex = re.compile(self.path_regex)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        allowed = {
            "kind",
            "path_regex",
            "at",
            "every",
            "probability",
            "count",
            "latency_ms",
            "status",
            "retry_after",
            "body",
        }
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault rule fields: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("_fired", None)
        out.pop("_seen", None)
        out["fired"] = self._fired
        return out

    @property
    def fired(self) -> int:
        return self._fired

    @property
    def status_code(self) -> int:
        if self.status is not None:
            return int(self.status)
        if self.kind in ("500", "502", "503", "504", "429"):
            return int(self.kind)
        if self.kind == "revoke":
            return 401
        if self.kind in ("html_200", "error_200", "empty_page", "oversized_page"):
            return 200
        return 0

    @property
    def sleep_s(self) -> float:
        if self.kind == "timeout":
            return (self.latency_ms or DEFAULT_TIMEOUT_MS) / 1000.0
        if self.kind == "latency":
            return self.latency_ms / 1000.0
        return 0.0


class FaultInjector:
    """Thread-safe rule set; `pick()` is called once per numbered request."""

    def __init__(self, rules: list[FaultRule] | None = None, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._rules: list[FaultRule] = []
        for rule in rules or []:
            self.add(rule)

    def add(self, rule: FaultRule | dict[str, Any]) -> FaultRule:
        if isinstance(rule, dict):
            rule = FaultRule.from_dict(rule)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng = random.Random(seed)

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def pick(self, number: int, path: str) -> FaultRule | None:
        with self._lock:
            chosen: FaultRule | None = None
            for rule in self._rules:
                if not rule._regex.search(path):
                    continue
                rule._seen += 1
                if chosen is not None:
                    continue
                if rule.count is not None and rule._fired >= rule.count:
                    continue
                if rule.at is not None:
                    fire = number in rule.at
                elif rule.every is not None:
                    fire = rule._seen % rule.every == 0
                elif rule.probability is not None:
                    fire = self._rng.random() < rule.probability
                else:
                    fire = True
                if fire:
                    rule._fired += 1
                    chosen = rule
            return chosen


class RateLimiter:
    """Sliding-window limiter: at most `limit` requests per `window_s` per key.

    Only admitted requests use budget (a 429 does not extend the lock-out).
    """

    def __init__(self, limit: int | None, window_s: float, clock: Any = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}
        self.limit = limit
        self.window_s = float(window_s)
        self._clock = clock

    def configure(self, limit: int | None, window_s: float) -> None:
        with self._lock:
            self.limit = limit
            self.window_s = float(window_s)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()

    def _expire(self, hits: deque[float], now: float) -> None:
        horizon = now - self.window_s
        while hits and hits[0] <= horizon:
            hits.popleft()

    def hit(self, key: str) -> tuple[bool, int]:
        """Record one request for `key`; returns (allowed, used in the window after it)."""
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            self._expire(hits, now)
            if self.limit is not None and len(hits) >= self.limit:
                return False, len(hits)
            hits.append(now)
            return True, len(hits)

    def spend(self, key: str, count: int) -> int:
        """Count `count` admitted requests for `key` now; returns the use in the window."""
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            self._expire(hits, now)
            hits.extend([now] * int(count))
            return len(hits)

    def used(self, key: str) -> int:
        now = self._clock()
        with self._lock:
            hits = self._hits.get(key)
            if not hits:
                return 0
            self._expire(hits, now)
            return len(hits)


@dataclass
class FieldDrift:
    """Opt-in payload drift (off unless configured): Bitbucket adding or dropping a field.

    On every API answer whose request path matches `path_regex` (searched like a fault
    rule's, including `/2.0`), each item of a collection's `values` (or the object itself)
    gets `add` (dotted path -> value; missing parents are not created) and loses `remove`
    (dotted paths). Items are copied first: the dataset is never changed.
    """

    path_regex: str
    add: dict[str, Any] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._regex = re.compile(self.path_regex)

    def matches(self, path: str) -> bool:
        return bool(self._regex.search(path))

    def apply(self, item: Any) -> Any:
        if not isinstance(item, dict):
            return item
        out: dict[str, Any] = copy.deepcopy(item)
        for dotted, value in self.add.items():
            parent, key = _parent_of(out, dotted)
            if parent is not None:
                parent[key] = copy.deepcopy(value)
        for dotted in self.remove:
            parent, key = _parent_of(out, dotted)
            if parent is not None:
                parent.pop(key, None)
        return out


def _parent_of(obj: dict[str, Any], dotted: str) -> tuple[dict[str, Any] | None, str]:
    *parents, key = dotted.split(".")
    node: Any = obj
    for name in parents:
        node = node.get(name) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), key
