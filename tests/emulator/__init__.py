"""Bitbucket Cloud emulator: a real threaded HTTP server with Bitbucket's quirks.

Public API (see README.md in this folder)::

    from tests.emulator import Emulator, EmulatorConfig, FaultRule

    with Emulator(EmulatorConfig(seed=1, scale=1)) as emu:
        emu.api_url, emu.oauth_url, emu.base_url, emu.dataset, emu.credentials
        emu.request_log, emu.request_counts(), emu.reset_log()
        emu.mutate(), emu.add_fault(FaultRule("503", at=[3])), emu.clear_faults()
        emu.revoke_token(token), emu.delete_repository("acme/api"), emu.configure(...)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .data import Dataset
from .faults import FAULT_KINDS, FaultRule, FieldDrift
from .oauth import Credentials, make_credentials
from .server import ROUTES, ApiServer, RequestLogEntry, Route

__all__ = [
    "FAULT_KINDS",
    "ROUTES",
    "Credentials",
    "Emulator",
    "EmulatorConfig",
    "FaultRule",
    "FieldDrift",
    "RequestLogEntry",
    "Route",
]

DEFAULT_CALLBACK_URL = "http://localhost:33333"


@dataclass
class EmulatorConfig:
    seed: int = 1
    scale: int = 1
    quiet_repos: int = 0  # extra repositories with 4 commits and nothing else (scale tests)
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port
    latency_ms: float = 0  # added to every API (/2.0) request
    rate_limit: int | None = None  # requests per window per credential; None = unlimited
    rate_limit_window_s: float = 3600
    rate_limit_retry_after: float | None = None  # Retry-After on 429; None = no header
    token_lifetime_s: float = 3600  # OAuth access tokens
    # A rotated refresh token is accepted once more within this many seconds (Bitbucket:
    # the old one "stops working shortly afterwards"); 0 = strict rotation.
    refresh_grace_s: float = 30
    faults: list[FaultRule] = field(default_factory=list)
    fault_seed: int = 0
    callback_url: str = DEFAULT_CALLBACK_URL  # the OAuth consumer's registered callback
    # Test hooks for the tap's pagination guards (not Bitbucket behaviour):
    next_host_override: str | None = None  # "scheme://host:port" used in next/previous links
    next_loop: bool = False  # pages after the first answer a `next` pointing at themselves
    next_loop_back: bool = False  # numbered pages after the first link back to page 1
    # Test hook for the drift detector: payload fields added or removed (none by default).
    field_drift: list[FieldDrift] = field(default_factory=list)


class Emulator:
    """A running (after `start()`) Bitbucket Cloud emulator on 127.0.0.1."""

    def __init__(
        self, config: EmulatorConfig | None = None, *, dataset: Any = None, **overrides: Any
    ) -> None:
        config = dataclasses.replace(config or EmulatorConfig(), **overrides)
        config.faults = list(config.faults)
        self.config = config
        if dataset is None:
            dataset = Dataset(config.seed, config.scale, config.quiet_repos)
        self.dataset = dataset
        user = getattr(dataset, "user", None) or {}
        credentials = make_credentials(
            config.seed,
            email=dataset.email,
            nickname=str(user.get("nickname", "")),
            callback_url=config.callback_url,
        )
        self._server = ApiServer(config, dataset, credentials)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> Emulator:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- addresses
    @property
    def base_url(self) -> str:
        return self._server.base_url

    @property
    def api_url(self) -> str:
        return self._server.base_url + "/2.0"

    @property
    def oauth_url(self) -> str:
        return self._server.base_url + "/site/oauth2"

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def credentials(self) -> Credentials:
        return self._server.credentials

    # ---------------------------------------------------------------- request log
    @property
    def request_log(self) -> list[RequestLogEntry]:
        return self._server.request_log()

    def request_counts(self) -> dict[str, int]:
        return self._server.request_counts()

    def reset_log(self) -> None:
        self._server.reset_log()

    @property
    def internal_errors(self) -> list[str]:
        """Tracebacks of requests the emulator failed on (answered 500); should stay empty."""
        return list(self._server.internal_errors)

    # ---------------------------------------------------------------- data and faults
    def mutate(self) -> Any:
        return self.dataset.mutate()

    def delete_repository(self, full_name: str) -> None:
        self.dataset.delete_repository(full_name)

    def add_item(self, path: str, item: dict[str, Any], *, touch_repo: bool) -> Any:
        """Append an item to a collection (see ``Dataset.add_item``)."""
        return self.dataset.add_item(path, item, touch_repo=touch_repo)

    def add_fault(self, rule: FaultRule | dict[str, Any]) -> FaultRule:
        return self._server.faults.add(rule)

    def clear_faults(self) -> None:
        self._server.faults.clear()

    def set_field_drift(self, drifts: list[FieldDrift]) -> None:
        """Replace the payload drift at run time (an empty list turns it off)."""
        self._server.set_field_drift(drifts)

    @property
    def faults(self) -> list[FaultRule]:
        return self._server.faults.rules

    def revoke_token(self, token: str) -> bool:
        """Invalidate an OAuth access/refresh token, the access token or the API token."""
        return self._server.revoke_token(token)

    def spend_rate_limit(self, count: int, credential: str = "access_token") -> int:
        """Count `count` requests against a credential's rate-limit window as if they had
        just been made (e.g. to reach `X-RateLimit-NearLimit` without making them).
        credential: "api_token", "access_token" or "oauth". Returns the use in the window."""
        creds = self.credentials
        buckets = {
            "api_token": f"user:{creds.email.casefold()}",
            "access_token": f"access_token:{creds.access_token}",
            "oauth": f"consumer:{creds.oauth_client_id}",
        }
        return self._server.rate_limiter.spend(buckets[credential], count)

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change latency_ms, rate_limit, rate_limit_window_s, rate_limit_retry_after,
        token_lifetime_s, refresh_grace_s, callback_url, fault_seed, next_host_override or
        next_loop at run time."""
        return self._server.apply_config(changes)

    def issue_oauth_tokens(self) -> dict[str, Any]:
        """An OAuth token response (with refresh token) without the browser round trip."""
        return self._server.oauth.issue_tokens()

    def issued_oauth_secrets(self) -> list[str]:
        """Every OAuth authorization code, access token and refresh token issued so far
        (for tests that check no secret ever reaches an output)."""
        return self._server.oauth.issued()

    def credentials_document(self) -> dict[str, Any]:
        """{"api_url", "oauth_url", "base_url", "credentials": {...}} (for --write-credentials)."""
        return self._server.credentials_dict()

    def __repr__(self) -> str:
        return f"Emulator({self.base_url or 'not started'}, seed={self.config.seed})"
