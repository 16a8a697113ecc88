"""The analytics models of transform/ (issue 15) against ground truth, on DuckDB and PostgreSQL.

Each test starts its own emulator, loads its data with the real pipeline (Meltano, the tap,
target-duckdb 0.8.0 or target-postgres), builds the dbt project (models and dbt tests), reads
every mart back with the loader's own driver and compares it cell by cell with what
tests/analytics_truth.py computes in Python from the emulator's objects:

* DuckDB through Meltano: `meltano run tap-bitbucket target-duckdb dbt-duckdb:build`;
* DuckDB through dbt alone, as the issue's interface states it (`dbt build --project-dir
  transform --profiles-dir transform --target duckdb`, BITBUCKET_DUCKDB_PATH, schema
  `tap_bitbucket`), after every loaded row was appended again, with older versions of
  pull requests and comments next to them: the staging layer keeps the newest;
* PostgreSQL (a real server this test starts): `meltano run tap-bitbucket target-postgres
  dbt-postgres:build`.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import subprocess
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.analytics_truth import Marts, compute
from tests.emulator import Emulator, EmulatorConfig
from tests.meltano_helpers import (
    DUCKDB_PYTHON,
    PLUGIN_DIR,
    ROOT,
    MeltanoProject,
    Warehouse,
    as_utc,
    postgres_server,
    read_duckdb,
    read_postgres,
)

UTILITIES = PLUGIN_DIR / "utilities"
DBT_DUCKDB = UTILITIES / "dbt-duckdb" / "venv" / "bin" / "dbt"
DBT_POSTGRES = UTILITIES / "dbt-postgres" / "venv" / "bin" / "dbt"
ANALYTICS = "analytics"  # the models' schema (transform/profiles.yml)
MART_KEYS = {
    "bitbucket__pull_requests": ("repository_full_name", "pull_request_id"),
    "bitbucket__deployments": ("deployment_uuid",),
    "bitbucket__dora_monthly": ("repository_full_name", "month"),
    "bitbucket__pipeline_health": ("repository_full_name", "month"),
}
TIMINGS: dict[str, float] = {}


def require_dbt() -> None:
    missing = [str(p.relative_to(ROOT)) for p in (DBT_DUCKDB, DBT_POSTGRES) if not p.exists()]
    if missing:
        pytest.fail(
            f"the dbt utilities are not installed ({', '.join(missing)}): run `make test`, "
            "which installs them (`make meltano-install`) before pytest."
        )


def copy_transform(dest: Path) -> Path:
    target = dest / "transform"
    shutil.copytree(
        ROOT / "transform", target, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages")
    )
    return target


# ----------------------------------------------------------------------------- comparison


def _same(have: Any, want: Any) -> bool:
    if want is None or have is None:
        return want is None and have is None
    if isinstance(want, bool):
        return isinstance(have, bool) and have == want
    if isinstance(want, datetime):
        return as_utc(have) == want
    if isinstance(want, date):
        return str(have)[:10] == want.isoformat()
    if isinstance(want, (int, float)):
        return math.isclose(float(have), float(want), rel_tol=1e-9, abs_tol=1e-6)
    return bool(have == want)


def _key(row: dict[str, Any], columns: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(str(row[c])[:10] if c == "month" else row[c] for c in columns)


def check_marts(warehouse: Warehouse, truth: Marts) -> None:
    """Every mart has exactly the expected rows, columns and values."""
    expected = {
        "bitbucket__pull_requests": truth.pull_requests,
        "bitbucket__deployments": truth.deployments,
        "bitbucket__dora_monthly": truth.dora_monthly,
        "bitbucket__pipeline_health": truth.pipeline_health,
    }
    for mart, want in expected.items():
        rows = warehouse.rows.get(mart)
        assert rows is not None, f"{mart} was not built"
        assert want, f"{mart}: the ground truth is empty, the emulator's data is too thin"
        columns = list(next(iter(want.values())))
        assert list(warehouse.columns[mart]) == columns, f"{mart}: columns differ"
        got = {_key(r, MART_KEYS[mart]): r for r in rows}
        assert len(got) == len(rows), f"{mart}: duplicate keys"
        assert set(got) == set(want), (
            f"{mart}: rows differ; missing {sorted(set(want) - set(got))[:5]}, "
            f"extra {sorted(set(got) - set(want))[:5]}"
        )
        wrong = [
            (key, col, got[key][col], value)
            for key, row in want.items()
            for col, value in row.items()
            if not _same(got[key][col], value)
        ]
        assert not wrong, f"{mart}: {len(wrong)} cells differ (key, column, got, want): {wrong[:8]}"


def check_edge_cases(truth: Marts) -> None:
    """The data has every case the definitions must get right, and the marts agree on it
    (check_marts compared them): each is found in the ground truth here."""
    prs = truth.pull_requests.values()
    deployments = truth.deployments.values()
    author_only = [truth.pull_requests[k] for k in truth.author_only_comments]
    assert author_only, "no pull request whose only comments are by its author"
    assert any(p["first_review_at"] is None for p in author_only), (
        "an author-only conversation should leave some pull request without a review"
    )
    assert any(
        p["first_approval_at"] is not None and p["first_approval_at"] == p["first_review_at"]
        for p in prs
    ), "no review that is only an approval (first review = first approval)"
    assert any(p["merged_at"] is not None and p["deployed_at"] is None for p in prs), (
        "no merge that is never deployed"
    )
    assert any(
        d["is_production"] and d["is_failure"] and d["restored_at"] is None for d in deployments
    ), "no failed production deployment that is never restored"
    assert any(
        d["is_production"] and d["is_failure"] and d["restored_at"] is not None for d in deployments
    ), "no restored production failure"
    months = {m["month"] for m in truth.dora_monthly.values() if m["production_deployments"]}
    assert len(months) >= 3, f"production deployments in {len(months)} months only"
    no_commits = [p for k, p in truth.pull_requests.items() if not truth.commits_per_pr.get(k)]
    assert no_commits, "no pull request without commits"
    assert all(
        p["first_commit_at"] is None
        and p["coding_seconds"] is None
        and p["lead_time_seconds"] is None
        for p in no_commits
    ), "a pull request without commits must have null first_commit_at, coding and lead times"
    assert any(p["deployed_at"] is not None for p in no_commits), (
        "no deployed pull request without commits (its lead time is null for that reason only)"
    )
    assert truth.deleted_account_comments, "no comment from a deleted account"
    assert any(
        truth.pull_requests[k]["first_review_at"] == at
        for k, at in truth.deleted_account_comments.items()
    ), "no pull request whose first review is a deleted account's comment"
    assert any(
        m["deployment_days"] < m["production_deployments"] for m in truth.dora_monthly.values()
    ), "no two successful production deployments on one day"
    per_repo: dict[str, set[date]] = {}
    for m in truth.dora_monthly.values():
        if m["production_deployments"]:
            per_repo.setdefault(m["repository_full_name"], set()).add(m["month"])
    assert max(len(v) for v in per_repo.values()) >= 6, "no repository deploys in 6 months"

    def median(column: str) -> float:
        return statistics.median(p[column] for p in prs if p[column] is not None)

    assert median("deploy_seconds") < median("cycle_seconds"), (
        "the deploy stage dominates: production deployments are too rare"
    )


# ----------------------------------------------------------------------------- tests


def _emulator() -> Emulator:
    return Emulator(EmulatorConfig(seed=1, scale=1))


def test_duckdb_meltano_run_with_dbt_build(tmp_path: Path) -> None:
    require_dbt()
    with _emulator() as emu:
        truth = compute(emu.dataset)
        project = MeltanoProject(tmp_path, emu)
        copy_transform(project.root)
        started = time.monotonic()
        log = project.run("target-duckdb", then=("dbt-duckdb:build",))
        TIMINGS["duckdb meltano run + dbt build"] = time.monotonic() - started
    assert "Completed successfully" in log, log[-3000:]
    check_marts(read_duckdb(project.root / "output" / "demo.duckdb", ANALYTICS), truth)
    check_edge_cases(truth)


_DUPLICATE = r"""
import sys
import duckdb
con = duckdb.connect(sys.argv[1])
schema = sys.argv[2]
older = {
    # An older version of every pull request and comment: other values, an earlier updated_on.
    "pull_requests": "* REPLACE (updated_on - INTERVAL 1 DAY AS updated_on, 'OPEN' AS state,"
    " NULL::JSON AS merge_commit)",
    "pull_request_comments": "* REPLACE (updated_on - INTERVAL 1 DAY AS updated_on,"
    " created_on - INTERVAL 300 DAY AS created_on)",
}
tables = [r[0] for r in con.execute(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]
).fetchall()]
for t in tables:
    extra = f"UNION ALL SELECT {older[t]} FROM {schema}.{t}" if t in older else ""
    con.execute(
        f"CREATE TABLE {schema}.{t}_twice AS SELECT * FROM {schema}.{t} "
        f"UNION ALL SELECT * FROM {schema}.{t} {extra}"
    )
    con.execute(f"DROP TABLE {schema}.{t}")
    con.execute(f"ALTER TABLE {schema}.{t}_twice RENAME TO {t}")
con.close()
"""


def test_duckdb_dbt_build_is_idempotent_over_duplicated_rows(tmp_path: Path) -> None:
    require_dbt()
    database = tmp_path / "loaded.duckdb"
    with _emulator() as emu:
        truth = compute(emu.dataset)
        project = MeltanoProject(tmp_path, emu)
        project.run(
            "target-duckdb",
            env={
                "TARGET_DUCKDB_FILEPATH": str(database),
                "TARGET_DUCKDB_DEFAULT_TARGET_SCHEMA": "tap_bitbucket",
            },
        )
    subprocess.run(
        [str(DUCKDB_PYTHON), "-c", _DUPLICATE, str(database), "tap_bitbucket"],
        check=True,
        timeout=300,
    )
    transform = copy_transform(tmp_path)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("BITBUCKET_", "DBT_", "TARGET_"))
    }
    env["BITBUCKET_DUCKDB_PATH"] = str(database)
    started = time.monotonic()
    result = subprocess.run(
        [
            *(str(DBT_DUCKDB), "build", "--project-dir", str(transform)),
            *("--profiles-dir", str(transform), "--target", "duckdb"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    TIMINGS["duckdb dbt build"] = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    check_marts(read_duckdb(database, ANALYTICS), truth)


def test_postgres_meltano_run_with_dbt_build(tmp_path: Path) -> None:
    require_dbt()
    with _emulator() as emu, postgres_server() as pg:
        truth = compute(emu.dataset)
        project = MeltanoProject(tmp_path, emu)
        copy_transform(project.root)
        env = {
            "TARGET_POSTGRES_HOST": pg["host"],
            "TARGET_POSTGRES_PORT": str(pg["port"]),
            "TARGET_POSTGRES_USER": pg["user"],
            "TARGET_POSTGRES_PASSWORD": pg["password"],
            "TARGET_POSTGRES_DATABASE": pg["database"],
        }
        started = time.monotonic()
        log = project.run("target-postgres", env=env, then=("dbt-postgres:build",))
        TIMINGS["postgres meltano run + dbt build"] = time.monotonic() - started
        assert "Completed successfully" in log, log[-3000:]
        check_marts(read_postgres(pg["dsn"], ANALYTICS), truth)
