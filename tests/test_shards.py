"""Sharding: N tap processes with `shard_count=N`, `shard_index=i` cover every repository
exactly once. For several N the shards' record sets are disjoint and their union equals an
unsharded sync (the real `tap-bitbucket` command, one process per shard, one emulator)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tap_bitbucket.scope import shard_of
from tests.emulator import Emulator
from tests.meltano_helpers import STREAMS

TAP = str(Path(sys.executable).parent / "tap-bitbucket")
# Workspace-level tables too: they must come from one shard only (shard 0), or the
# shards' record sets would overlap.
SELECTED = (
    "workspaces",
    "workspace_members",
    "projects",
    "project_user_permissions",
    "repositories",
    "branches",
    "pull_requests",
    "pipelines",
)


@pytest.fixture(scope="module")
def shard_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One emulator for the module, and a catalog selecting a few streams of each level."""
    workdir = tmp_path_factory.mktemp("shards")
    with Emulator() as emu:
        base = {
            "api_url": emu.api_url,
            "username": emu.credentials.email,
            "api_token": emu.credentials.api_token,
        }
        config = workdir / "config.json"
        config.write_text(json.dumps(base))
        discovered = subprocess.run(
            [TAP, "--config", str(config), "--discover"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        catalog = json.loads(discovered.stdout)
        for stream in catalog["streams"]:
            for entry in stream["metadata"]:
                if entry["breadcrumb"] == []:
                    entry["metadata"]["selected"] = stream["tap_stream_id"] in SELECTED
        catalog_path = workdir / "catalog.json"
        catalog_path.write_text(json.dumps(catalog))
        yield {"emu": emu, "base": base, "catalog": catalog_path, "dir": workdir}


def _start(env: dict[str, Any], name: str, **settings: Any) -> subprocess.Popen[str]:
    config = env["dir"] / f"{name}.json"
    config.write_text(json.dumps({**env["base"], **settings}))
    return subprocess.Popen(
        [TAP, "--config", str(config), "--catalog", str(env["catalog"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


def _records(proc: subprocess.Popen[str]) -> dict[str, list[dict[str, Any]]]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in SELECTED}
    for line in out.splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD":
            records[message["stream"]].append(message["record"])
    return records


def _keys(stream: str, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [tuple(row[k] for k in STREAMS[stream].primary_keys) for row in rows]


@pytest.fixture(scope="module")
def unsharded(shard_env: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return _records(_start(shard_env, "unsharded"))


@pytest.mark.parametrize("count", [2, 3, 5])
def test_shards_partition_an_unsharded_sync(
    shard_env: dict[str, Any], unsharded: dict[str, list[dict[str, Any]]], count: int
) -> None:
    procs = [
        _start(shard_env, f"shard-{count}-{i}", shard_count=count, shard_index=i)
        for i in range(count)
    ]
    shards = [_records(p) for p in procs]
    assert all(unsharded[s] for s in SELECTED), "the unsharded sync should cover every stream"
    repo_names = {r["uuid"]: r["full_name"] for r in unsharded["repositories"]}
    for stream in SELECTED:
        everything = _keys(stream, unsharded[stream])
        per_shard = [_keys(stream, shard[stream]) for shard in shards]
        seen: set[tuple[Any, ...]] = set()
        for keys in per_shard:
            assert len(set(keys)) == len(keys), f"{stream}: duplicates inside a shard"
            assert not seen & set(keys), f"{stream}: shards overlap"
            seen |= set(keys)
        assert seen == set(everything), f"{stream}: union differs from the unsharded sync"
        # Same records, not only the same keys.
        merged = sorted(json.dumps(r, sort_keys=True) for s in shards for r in s[stream])
        assert merged == sorted(json.dumps(r, sort_keys=True) for r in unsharded[stream])
    for index, shard in enumerate(shards):
        # A repository and everything under it land in the shard its uuid hashes to.
        uuids = {r["uuid"] for r in shard["repositories"]}
        assert all(shard_of(u, count) == index for u in uuids), (index, uuids)
        for stream in ("branches", "pull_requests", "pipelines"):
            assert {r["repo_uuid"] for r in shard[stream]} <= uuids, (stream, index)
    assert sum(1 for s in shards if s["repositories"]) >= 2, (
        f"with {len(repo_names)} repositories, {count} shards should spread them"
    )


def test_shard_settings_are_validated(shard_env: dict[str, Any]) -> None:
    proc = _start(shard_env, "bad-shard", shard_count=3, shard_index=3)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "shard_index" in err
