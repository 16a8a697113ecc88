"""Scope: include and exclude globs over 'workspace/repo', then the shard split.

The repositories are the emulator's dataset (built in-process, no server); what each
glob must match is computed with fnmatch over those names, case-folded as the README
promises, not listed by hand.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from typing import Any

import pytest

from tap_bitbucket.scope import Scope, shard_of
from tap_bitbucket.settings import Settings
from tests.emulator.data import Dataset, RepoInfo

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def repos() -> list[RepoInfo]:
    # Scale 3: enough repositories (24) that every shard of up to 5 gets some.
    found = Dataset(seed=1, scale=3).repos
    assert len(found) > 10 and len({r.workspace for r in found}) > 1
    return found


def scope(**config: Any) -> Scope:
    return Scope(Settings.from_config(config))


def kept(s: Scope, repos: list[RepoInfo]) -> set[str]:
    return {r.full_name for r in repos if s.includes(r.full_name, r.uuid)}


def test_no_globs_keep_every_repository(repos: list[RepoInfo]) -> None:
    assert kept(scope(), repos) == {r.full_name for r in repos}


def test_include_globs_keep_what_they_match(repos: list[RepoInfo]) -> None:
    workspace = repos[0].workspace
    assert kept(scope(repositories=[f"{workspace}/*"]), repos) == {
        r.full_name for r in repos if r.workspace == workspace
    }
    one = repos[1].full_name
    assert kept(scope(repositories=[one]), repos) == {one}
    both = [repos[0].full_name, f"{repos[-1].workspace}/{repos[-1].slug[0]}*"]
    assert kept(scope(repositories=both), repos) == {
        r.full_name for r in repos if any(fnmatch.fnmatchcase(r.full_name.lower(), g) for g in both)
    }


def test_globs_ignore_case(repos: list[RepoInfo]) -> None:
    name = repos[2].full_name
    assert kept(scope(repositories=[name.upper()]), repos) == {name}
    assert name not in kept(scope(exclude_repositories=[name.upper()]), repos)


def test_exclude_applies_after_include(repos: list[RepoInfo]) -> None:
    workspace = repos[0].workspace
    dropped = repos[0].full_name
    got = kept(scope(repositories=[f"{workspace}/*"], exclude_repositories=[dropped]), repos)
    assert got == {r.full_name for r in repos if r.workspace == workspace} - {dropped}


def test_includes_record_reads_the_repository_object(repos: list[RepoInfo]) -> None:
    s = scope(repositories=[repos[0].full_name])
    assert s.includes_record({"full_name": repos[0].full_name, "uuid": repos[0].uuid})
    assert not s.includes_record({"full_name": repos[1].full_name, "uuid": repos[1].uuid})
    assert not s.includes_record({})


@pytest.mark.parametrize("count", [2, 3, 5])
def test_shards_partition_the_repositories(repos: list[RepoInfo], count: int) -> None:
    """Each repository is in exactly one shard, and every shard gets some."""
    owners = Counter()
    for index in range(count):
        for name in kept(scope(shard_count=count, shard_index=index), repos):
            owners[name] += 1
    assert set(owners) == {r.full_name for r in repos}
    assert set(owners.values()) == {1}
    sizes = Counter(shard_of(r.uuid, count) for r in repos)
    assert set(sizes) == set(range(count)), sizes


def test_shard_of_ignores_braces_and_case(repos: list[RepoInfo]) -> None:
    for repo in repos:
        bare = repo.uuid.strip("{}")
        assert shard_of(repo.uuid, 7) == shard_of(bare.upper(), 7) == shard_of(f"{{{bare}}}", 7)
        assert 0 <= shard_of(repo.uuid, 7) < 7


def test_globs_and_shards_combine(repos: list[RepoInfo]) -> None:
    workspace = repos[0].workspace
    s = scope(repositories=[f"{workspace}/*"], shard_count=2, shard_index=1)
    assert kept(s, repos) == {
        r.full_name for r in repos if r.workspace == workspace and shard_of(r.uuid, 2) == 1
    }


def test_only_shard_zero_emits_the_workspace_tables() -> None:
    assert scope().emits_workspace_tables
    assert scope(shard_count=3, shard_index=0).emits_workspace_tables
    assert not scope(shard_count=3, shard_index=2).emits_workspace_tables


def test_workspaces_named_by_the_include_globs(repos: list[RepoInfo]) -> None:
    slugs = sorted({r.workspace for r in repos})
    assert scope().workspaces_named(slugs) == slugs
    assert scope(repositories=[f"{slugs[0]}/*"]).workspaces_named(slugs) == [slugs[0]]
    assert scope(repositories=["*/x"]).workspaces_named(slugs) == slugs


def test_unmatched_globs_are_reported(repos: list[RepoInfo]) -> None:
    names = [r.full_name for r in repos]
    s = scope(repositories=[f"{repos[0].workspace}/*", "nobody/nothing-*"])
    assert s.unmatched_globs(names) == ["nobody/nothing-*"]
    assert scope().unmatched_globs(names) == []
