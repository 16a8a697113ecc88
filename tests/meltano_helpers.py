"""Helpers for the Meltano end-to-end tests: a throwaway Meltano project, ground truth from
the emulator's dataset, and readers for what each loader wrote (DuckDB, JSONL, PostgreSQL).

The plugins are installed once by `make test` (`meltano install` into `.meltano/`); every
test runs in a temporary copy of the project whose `.meltano/` links to those plugin venvs,
so it has its own system database (state), catalog cache, output folder and no `.env`.
Each database is read with the loader's own driver (the duckdb / psycopg of its venv), so
the tap's venv needs neither.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tap_bitbucket.tap import TapBitbucket
from tests.emulator import Emulator
from tests.emulator.data import Dataset

ROOT = Path(__file__).resolve().parent.parent
MELTANO = ROOT / ".meltano-venv" / "bin" / "meltano"
PLUGIN_DIR = ROOT / ".meltano"
DUCKDB_PYTHON = PLUGIN_DIR / "loaders" / "target-duckdb" / "venv" / "bin" / "python"
POSTGRES_PYTHON = PLUGIN_DIR / "loaders" / "target-postgres" / "venv" / "bin" / "python"
SCHEMA = "bitbucket"  # default_target_schema of the SQL loaders in meltano.yml


def tap_streams() -> dict[str, Any]:
    """name -> stream object of a config-less tap (the catalog never depends on config)."""
    return dict(TapBitbucket(config={}, validate_config=False).streams)


STREAMS = tap_streams()
ALL_STREAMS = sorted(STREAMS)
DEFAULT_STREAMS = sorted(n for n, s in STREAMS.items() if s.selected_by_default)


def require_installed() -> None:
    """Fail (never skip) when `make test` did not install Meltano and the plugins."""
    missing = [
        str(p.relative_to(ROOT))
        for p in (
            MELTANO,
            DUCKDB_PYTHON,
            POSTGRES_PYTHON,
            PLUGIN_DIR / "extractors" / "tap-bitbucket" / "venv" / "bin" / "tap-bitbucket",
            PLUGIN_DIR / "loaders" / "target-jsonl" / "venv" / "bin" / "target-jsonl",
        )
        if not p.exists()
    ]
    if missing:
        pytest.fail(
            f"Meltano or its plugins are not installed ({', '.join(missing)}): run `make test`, "
            "which installs them (`make meltano-install`) before pytest."
        )


# ----------------------------------------------------------------------------- ground truth


def _collection_pattern(path_template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path_template) + "$")


def _diffstats(dataset: Dataset) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(pull request list path, PR id, diffstat entry) of every pull request."""
    for path in dataset.collection_paths():
        if re.fullmatch(r"/repositories/[^/]+/[^/]+/pullrequests", path):
            for pr in dataset.collection(path) or []:
                target = dataset.diffstat_target(f"{path}/{pr['id']}")
                for entry in (dataset.collection(target) or []) if target else []:
                    yield path, pr["id"], entry


def ground_truth(dataset: Dataset, streams: Iterable[str]) -> dict[str, int]:
    """Rows each stream must yield: the objects of every collection at the stream's endpoint.

    `collection_paths()` lists exactly the collections the emulator answers with 200 (no
    empty repository's commits, no Pipelines-disabled repository's pipelines, deleted
    repositories left out), so no other filter applies. A pull request's diffstat is a
    302 to a repository-level diffstat collection, found through `diffstat_target`.
    """
    paths = dataset.collection_paths()
    counts: dict[str, int] = {}
    for name in streams:
        if name == "pull_request_diffstats":
            counts[name] = sum(1 for _ in _diffstats(dataset))
            continue
        pattern = _collection_pattern(STREAMS[name].path)
        counts[name] = sum(len(dataset.collection(p) or []) for p in paths if pattern.match(p))
    return counts


def upsert_keys(dataset: Dataset) -> dict[str, set[tuple[Any, ...]]]:
    """Keys of the rows a mutation can make stale: branches (deleted or renamed) and diffstat
    files (a PR's diff changes when it gets new commits or is merged). Take it before
    `mutate()` and pass it to `expected_after_mutation`."""
    branches = set()
    for path in dataset.collection_paths():
        if path.endswith("/refs/branches"):
            branches |= {(path, b["name"]) for b in dataset.collection(path) or []}
    diffstats = {
        (
            path,
            pid,
            json.dumps([(e.get("old") or {}).get("path"), (e.get("new") or {}).get("path")]),
        )
        for path, pid, e in _diffstats(dataset)
    }
    return {"branches": branches, "pull_request_diffstats": diffstats}


def expected_after_mutation(
    dataset: Dataset, streams: Iterable[str], before: dict[str, set[tuple[Any, ...]]]
) -> dict[str, int]:
    """Rows in an upserting warehouse after an incremental sync of a mutated dataset.

    Nothing is deleted from a warehouse by a sync: a deleted branch, or a file gone from a
    pull request's diff, stays (upserts do not prune), so those count on top of the new
    truth: the union of the keys before and after.
    """
    counts = ground_truth(dataset, streams)
    after = upsert_keys(dataset)
    for name, keys in before.items():
        if name in counts:
            counts[name] = len(keys | after[name])
    return counts


def repo_uuid(dataset: Dataset, path: str) -> str:
    match = re.match(r"^/repositories/([^/]+/[^/]+)", path)
    assert match, path
    info = dataset.repo(match.group(1))
    assert info is not None, path
    return info.uuid


def as_utc(value: Any) -> datetime:
    """A timestamp as loaded (ISO text, with or without zone, 'T' or ' ') in UTC."""
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip().replace(" ", "T", 1)
        text = re.sub(r"Z$", "+00:00", text)
        text = re.sub(r"([+-]\d\d)$", r"\1:00", text)
        # Nanoseconds (pipelines) are cut to microseconds, as the tap does.
        text = re.sub(r"(\.\d{6})\d+", r"\1", text)
        parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def as_json(value: Any) -> Any:
    """A nested value as loaded: JSON text (DuckDB, JSONL) or already decoded (psycopg)."""
    return json.loads(value) if isinstance(value, str) else value


# ----------------------------------------------------------------------------- meltano


class MeltanoProject:
    """A temporary copy of the Meltano project, wired to the installed plugins and an emulator."""

    def __init__(self, workdir: Path, emu: Emulator) -> None:
        require_installed()
        self.root = workdir / "project"
        (self.root / ".meltano").mkdir(parents=True)
        shutil.copy2(ROOT / "meltano.yml", self.root / "meltano.yml")
        for kind in ("extractors", "loaders"):
            (self.root / ".meltano" / kind).symlink_to(PLUGIN_DIR / kind)
        (self.root / "output").mkdir()
        self.emu = emu
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TAP_BITBUCKET", "TARGET_", "MELTANO_", "BITBUCKET_EMULATOR_"))
        }
        env.update(
            MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
            MELTANO_ENVIRONMENT="demo",
            BITBUCKET_EMULATOR_API_URL=emu.api_url,
            BITBUCKET_EMULATOR_OAUTH_URL=emu.oauth_url,
            BITBUCKET_EMULATOR_EMAIL=emu.credentials.email,
            BITBUCKET_EMULATOR_API_TOKEN=emu.credentials.api_token,
        )
        self.env = env
        self.runs: list[float] = []

    def run(
        self,
        target: str,
        *,
        select_all: bool = False,
        env: Mapping[str, str] | None = None,
        timeout: float = 600,
        then: tuple[str, ...] = (),
    ) -> str:
        """`meltano run tap-bitbucket <target> [then...]` in the demo environment (`then`:
        more blocks, e.g. "dbt-duckdb:build"); returns its log."""
        run_env = dict(self.env)
        if select_all:
            run_env["TAP_BITBUCKET__SELECT"] = json.dumps(["*.*"])
        run_env.update(env or {})
        started = time.monotonic()
        result = subprocess.run(
            [str(MELTANO), "--log-format", "uncolored", "run", "tap-bitbucket", target, *then],
            cwd=self.root,
            env=run_env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
        )
        self.runs.append(time.monotonic() - started)
        log = result.stdout + result.stderr
        if result.returncode != 0:
            pytest.fail(
                f"meltano run tap-bitbucket {target} {' '.join(then)} exited {result.returncode}:\n"
                + failure_excerpt(log)
            )
        return log

    def state(self, target: str) -> dict[str, Any]:
        """The tap's state as Meltano stored it for this pipeline."""
        state_id = f"demo:tap-bitbucket-to-{target}"
        result = subprocess.run(
            [str(MELTANO), "--log-level", "error", "state", "get", state_id],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        document: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return document


def failure_excerpt(log: str, limit: int = 40) -> str:
    """The lines that explain a failed run: errors and tracebacks first, then the tail."""
    lines = log.splitlines()
    wanted = re.compile(r"error|exception|traceback|failed|invalid", re.IGNORECASE)
    errors = [line for line in lines if wanted.search(line) and "METRIC" not in line]
    return "\n".join([*errors[:limit], "...", *lines[-15:]])


# ----------------------------------------------------------------------------- readers

_DUCKDB_DUMP = r"""
import json, sys
import duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
schema = sys.argv[2]
out = {"columns": {}, "rows": {}}
tables = [r[0] for r in con.execute(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]
).fetchall()]
for t in tables:
    cols = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", [schema, t]
    ).fetchall()
    out["columns"][t] = {c: d for c, d in cols}
    cur = con.execute(f'SELECT * FROM "{schema}"."{t}"')
    names = [d[0] for d in cur.description]
    out["rows"][t] = [dict(zip(names, row)) for row in cur.fetchall()]
print(json.dumps(out, default=str))
"""

_POSTGRES_DUMP = r"""
import json, sys
import psycopg
dsn, schema = sys.argv[1], sys.argv[2]
out = {"columns": {}, "rows": {}}
with psycopg.connect(dsn) as con:
    con.execute("SET TIME ZONE 'UTC'")
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema]
    ).fetchall()]
    for t in tables:
        cols = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position", [schema, t]
        ).fetchall()
        out["columns"][t] = {c: d for c, d in cols}
        cur = con.execute(f'SELECT * FROM "{schema}"."{t}"')
        names = [d.name for d in cur.description]
        out["rows"][t] = [dict(zip(names, row)) for row in cur.fetchall()]
print(json.dumps(out, default=str))
"""


class Warehouse:
    """Tables, column types and rows that a loader wrote, as plain Python values."""

    def __init__(self, columns: dict[str, dict[str, str]], rows: dict[str, list[dict]]) -> None:
        self.columns = columns
        self.rows = rows

    def counts(self) -> dict[str, int]:
        return {t: len(r) for t, r in self.rows.items()}

    def index(self, table: str, *keys: str) -> dict[tuple[Any, ...], dict[str, Any]]:
        return {tuple(row[k] for k in keys): row for row in self.rows.get(table, [])}


def _dump(python: Path, script: str, *args: str) -> Warehouse:
    result = subprocess.run(
        [str(python), "-c", script, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    return Warehouse(data["columns"], data["rows"])


def read_duckdb(path: Path, schema: str = SCHEMA) -> Warehouse:
    return _dump(DUCKDB_PYTHON, _DUCKDB_DUMP, str(path), schema)


def read_postgres(dsn: str, schema: str = SCHEMA) -> Warehouse:
    return _dump(POSTGRES_PYTHON, _POSTGRES_DUMP, dsn, schema)


def read_jsonl(folder: Path) -> Warehouse:
    """One `<stream>.jsonl` per stream (target-jsonl); no column types."""
    rows: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            rows[path.stem] = [json.loads(line) for line in fh if line.strip()]
    return Warehouse({}, rows)


# ----------------------------------------------------------------------------- postgres


def _postgres_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    pytest.fail(
        f"PostgreSQL server binary {name!r} not found (PATH or /usr/lib/postgresql/*/bin): "
        "install the Debian package postgresql (.ci/run does)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_server() -> Iterator[dict[str, Any]]:
    """A throwaway PostgreSQL server on a free loopback port, stopped at exit.

    PostgreSQL refuses to run as root; as root the cluster belongs to the `postgres`
    account when it exists (the Debian package makes it) or else to `nobody`.
    """
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    user: str | None = None
    if os.geteuid() == 0:
        user = "postgres"
        try:
            import pwd  # noqa: PLC0415

            pwd.getpwnam(user)
        except KeyError:
            user = "nobody"
    base = Path(tempfile.mkdtemp(prefix="tap-bitbucket-pg-"))
    data = base / "data"
    if user is not None:
        shutil.chown(base, user=user)
    try:
        subprocess.run(
            [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
            user=user,
            capture_output=True,
            check=True,
            timeout=120,
        )
        port = 0
        for _attempt in range(3):
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off"
            )
            started = subprocess.run(
                [pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"],
                user=user,
                capture_output=True,
                check=False,
                timeout=120,
            )
            if started.returncode == 0:
                break
        else:
            log = (base / "log").read_text(errors="replace") if (base / "log").exists() else ""
            pytest.fail(f"PostgreSQL did not start: {started.stderr!r}\n{log[-2000:]}")
        try:
            yield {
                "host": "127.0.0.1",
                "port": port,
                "user": "postgres",
                # trust authentication ignores it, but target-postgres insists on one
                "password": "postgres",
                "database": "postgres",
                "dsn": f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
            }
        finally:
            subprocess.run(
                [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                user=user,
                capture_output=True,
                check=False,
                timeout=120,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
