"""Which repositories a sync covers: include and exclude globs, then the shard split."""

from __future__ import annotations

import fnmatch
import hashlib
import typing as t

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from tap_bitbucket.settings import Settings


def shard_of(repo_uuid: str, shard_count: int) -> int:
    """Stable shard of a repository: the same on every machine and Python version."""
    digest = hashlib.sha256(repo_uuid.strip("{}").lower().encode()).digest()
    return int.from_bytes(digest[:8], "big") % shard_count


class Scope:
    """The repository filter of one sync, from the settings."""

    def __init__(self, settings: Settings) -> None:
        self.include = tuple(p.lower() for p in settings.repositories)
        self.exclude = tuple(p.lower() for p in settings.exclude_repositories)
        self.shard_count = settings.shard_count
        self.shard_index = settings.shard_index

    @property
    def emits_workspace_tables(self) -> bool:
        """Workspace-level tables belong to shard 0, so N shards emit them once."""
        return self.shard_index == 0

    def includes(self, full_name: str, repo_uuid: str) -> bool:
        name = full_name.lower()
        if self.include and not any(fnmatch.fnmatchcase(name, p) for p in self.include):
            return False
        if any(fnmatch.fnmatchcase(name, p) for p in self.exclude):
            return False
        return self.shard_count == 1 or shard_of(repo_uuid, self.shard_count) == self.shard_index

    def includes_record(self, repository: dict[str, t.Any]) -> bool:
        return self.includes(str(repository.get("full_name") or ""), str(repository.get("uuid") or ""))

    def workspaces_named(self, slugs: Iterable[str]) -> list[str]:
        """The workspaces that an include glob can match (all of them without globs)."""
        if not self.include:
            return list(slugs)
        heads = [p.split("/", 1)[0] for p in self.include]
        return [s for s in slugs if any(fnmatch.fnmatchcase(s.lower(), h) for h in heads)]

    def unmatched_globs(self, full_names: Iterable[str]) -> list[str]:
        """Include globs that match none of ``full_names``."""
        names = [n.lower() for n in full_names]
        return [p for p in self.include if not any(fnmatch.fnmatchcase(n, p) for n in names)]
