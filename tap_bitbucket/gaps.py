"""Scopes the credential lacks, learned once per run (issue 13).

Bitbucket answers 403 "Your credentials lack one or more required privilege scopes."
when the *credential* lacks a scope (an access token cannot read permissions at all,
an API token made without ``read:webhook:bitbucket``...), whatever the repository
(notes §1, §5). Asking every other repository the same question would cost one request
per repository for a known answer. A 403 that is about one repository (no admin rights
there) carries another message and stays per repository.
"""

from __future__ import annotations

import json
import logging
import threading
import typing as t
from importlib import resources

LOGGER = logging.getLogger("tap_bitbucket")

#: The text of Bitbucket's credential-wide 403 (seen in real responses and the notes).
SCOPE_MESSAGE = "lack one or more required privilege scopes"


def is_scope_refusal(message: str) -> bool:
    return SCOPE_MESSAGE in message


def required_scopes(body: t.Any) -> list[str]:
    """The ``error.detail.required`` list of a scope refusal, when Bitbucket sends one:
    ``{"required": ["account"], "granted": ["team"]}`` (backstage/backstage#22383)."""
    error = body.get("error") if isinstance(body, dict) else None
    detail = error.get("detail") if isinstance(error, dict) else None
    required = detail.get("required") if isinstance(detail, dict) else None
    return [str(s) for s in required] if isinstance(required, list) else []


def scopes_of(stream: str) -> str:
    """The scopes the stream's endpoint needs, from the generated tap_bitbucket/scopes.json."""
    table = json.loads(resources.files("tap_bitbucket").joinpath("scopes.json").read_text())
    entry = table.get(stream) or {}
    oauth = ", ".join(entry.get("oauth") or []) or "?"
    granular = ", ".join(entry.get("api_token") or []) or "?"
    return f"OAuth scope {oauth}; API or access token scope {granular}"


class CredentialGaps:
    """Streams the credential cannot read this run: learned at the first refusal."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._missing: dict[str, str] = {}

    def learn(self, stream: str, where: str, required: list[str]) -> None:
        """Record a credential-wide refusal; the one WARNING of the stream for this run."""
        with self._lock:
            if stream in self._missing:
                return
            self._missing[stream] = ", ".join(required)
        said = f"; Bitbucket requires {', '.join(required)}" if required else ""
        LOGGER.warning(
            "Skipping stream '%s' everywhere this run: the credential lacks a scope "
            "(HTTP 403 at %s%s). Grant %s to sync it.",
            stream,
            where,
            said,
            scopes_of(stream),
        )

    def known(self, stream: str) -> bool:
        with self._lock:
            return stream in self._missing

    def streams(self) -> list[str]:
        with self._lock:
            return sorted(self._missing)
