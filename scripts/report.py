"""output/report.html: the analytics marts of transform/ as one self-contained HTML page.

    python -m scripts.report [--duckdb output/demo.duckdb] [--out output/report.html]

The marts are read from the DuckDB file with the dbt-duckdb utility's own duckdb (the
loader's version, see meltano.yml), then drawn with plotly; plotly.js is inlined, so the
page works offline and can be mailed or kept as a CI artifact. Each chart is a <div> with
the id in CHARTS; tests/test_report_browser.py opens the page in Chromium and counts the
marks each chart drew against `expected_points`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DUCKDB_PYTHON = ROOT / ".meltano" / "utilities" / "dbt-duckdb" / "venv" / "bin" / "python"
SCHEMA = "analytics"
MARTS = (
    "bitbucket__pull_requests",
    "bitbucket__deployments",
    "bitbucket__dora_monthly",
    "bitbucket__pipeline_health",
)
CHARTS = ("cycle-time", "deployments-per-week", "failure-and-restore", "pipelines", "waiting")
SLOWEST = 10
HOUR = 3600.0

_DUMP = r"""
import json, sys
import duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
out = {}
for t in sys.argv[3:]:
    cur = con.execute(f'SELECT * FROM "{sys.argv[2]}"."{t}"')
    names = [d[0] for d in cur.description]
    out[t] = [dict(zip(names, row)) for row in cur.fetchall()]
print(json.dumps(out, default=str))
"""


def read_marts(path: Path, python: Path = DUCKDB_PYTHON) -> dict[str, list[dict[str, Any]]]:
    if not python.exists():
        raise SystemExit(f"error: {python} is missing: run `make run` (it installs dbt-duckdb)")
    result = subprocess.run(
        [str(python), "-c", _DUMP, str(path), SCHEMA, *MARTS],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        raise SystemExit(f"error: cannot read the marts from {path}: {result.stderr[-500:]}")
    data: dict[str, list[dict[str, Any]]] = json.loads(result.stdout)
    return data


def _ts(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


def _hours(value: Any) -> float | None:
    return None if value is None else float(value) / HOUR


def _month(moment: datetime) -> str:
    return moment.strftime("%Y-%m-01")


def series(marts: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The numbers each chart plots (all repositories together), nulls left out."""
    prs = marts["bitbucket__pull_requests"]
    by_month: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in prs:
        merged = _ts(p["merged_at"])
        if merged is not None:
            by_month[_month(merged)].append(p)
    stages = {}
    for stage in ("coding", "pickup", "review", "deploy"):
        points = []
        for month in sorted(by_month):
            kept = [
                p[f"{stage}_seconds"] for p in by_month[month] if p[f"{stage}_seconds"] is not None
            ]
            if kept:
                points.append((month, statistics.median(kept) / HOUR))
        stages[stage] = points

    weekly: dict[str, int] = defaultdict(int)
    monthly: dict[str, dict[str, list[Any]]] = defaultdict(lambda: {"ok": [], "failed": []})
    for d in marts["bitbucket__deployments"]:
        completed = _ts(d["completed_at"])
        if not d["is_production"] or completed is None:
            continue
        if d["status"] == "SUCCESSFUL":
            monday = completed.date() - timedelta(days=completed.weekday())
            weekly[monday.isoformat()] += 1
            monthly[_month(completed)]["ok"].append(d)
        elif d["status"] == "FAILED":
            monthly[_month(completed)]["failed"].append(d)
    failure_rate = [
        (m, 100.0 * len(v["failed"]) / (len(v["failed"]) + len(v["ok"])))
        for m, v in sorted(monthly.items())
    ]
    restore = []
    for m, v in sorted(monthly.items()):
        waits = [
            (_ts(d["restored_at"]) - _ts(d["completed_at"])).total_seconds() / HOUR  # type: ignore[operator]
            for d in v["failed"]
            if d["restored_at"]
        ]
        if waits:
            restore.append((m, statistics.median(waits)))

    runs: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for h in marts["bitbucket__pipeline_health"]:
        month = str(h["month"])[:10]
        for col in ("completed_runs", "successful_runs", "total_duration_seconds"):
            runs[month][col] += float(h[col] or 0)
    success = [
        (m, 100.0 * v["successful_runs"] / v["completed_runs"])
        for m, v in sorted(runs.items())
        if v["completed_runs"]
    ]
    duration = [
        (m, v["total_duration_seconds"] / v["completed_runs"] / 60.0)
        for m, v in sorted(runs.items())
        if v["completed_runs"]
    ]

    # Waiting for a first review, as of the newest moment in the data (not the clock:
    # the same warehouse gives the same report).
    moments = [_ts(p[c]) for p in prs for c in ("created_at", "merged_at", "first_review_at")]
    as_of = max((m for m in moments if m is not None), default=datetime(1970, 1, 1))
    waiting = sorted(
        (
            (
                (as_of - created).total_seconds() / 86400.0,
                f"{p['repository_full_name']}#{p['pull_request_id']}",
            )
            for p in prs
            if p["state"] == "OPEN"
            and p["first_review_at"] is None
            and (created := _ts(p["created_at"])) is not None
        ),
        reverse=True,
    )[:SLOWEST]
    return {
        "stages": stages,
        "weekly": sorted(weekly.items()),
        "failure_rate": failure_rate,
        "restore": restore,
        "success": success,
        "duration": duration,
        "waiting": waiting,
        "as_of": as_of.isoformat(sep=" ", timespec="minutes"),
    }


def expected_points(data: dict[str, Any]) -> dict[str, int]:
    """How many marks each chart draws (bars and line markers)."""
    return {
        "cycle-time": sum(len(v) for v in data["stages"].values()),
        "deployments-per-week": len(data["weekly"]),
        "failure-and-restore": len(data["failure_rate"]) + len(data["restore"]),
        "pipelines": len(data["success"]) + len(data["duration"]),
        "waiting": len(data["waiting"]),
    }


def figures(data: dict[str, Any]) -> dict[str, Any]:
    import plotly.graph_objects as go  # noqa: PLC0415 (only the report needs plotly)

    def xy(points: list[tuple[Any, float]]) -> tuple[list[Any], list[float]]:
        return [p[0] for p in points], [p[1] for p in points]

    cycle = go.Figure()
    for stage, points in data["stages"].items():
        x, y = xy(points)
        cycle.add_bar(x=x, y=y, name=f"{stage} (median)")
    cycle.update_layout(
        barmode="stack",
        title="Pull-request cycle time by month merged: median hours per stage",
        yaxis_title="hours",
    )
    x, y = xy(data["weekly"])
    weekly = go.Figure(go.Bar(x=x, y=y, name="deployments"))
    weekly.update_layout(
        title="Successful production deployments per week (week starting Monday)",
        yaxis_title="deployments",
    )
    failure = go.Figure()
    x, y = xy(data["failure_rate"])
    failure.add_scatter(x=x, y=y, mode="lines+markers", name="change failure rate (%)")
    x, y = xy(data["restore"])
    failure.add_scatter(
        x=x,
        y=y,
        mode="markers",
        name="median time to restore (hours)",
        yaxis="y2",
        marker={"size": 12, "symbol": "diamond"},
    )
    failure.update_layout(
        title="Change failure rate and time to restore, by month",
        yaxis={"title": "% of production deployments", "rangemode": "tozero"},
        yaxis2={"title": "hours", "overlaying": "y", "side": "right", "rangemode": "tozero"},
    )
    pipelines = go.Figure()
    x, y = xy(data["success"])
    pipelines.add_scatter(x=x, y=y, mode="lines+markers", name="success rate (%)")
    x, y = xy(data["duration"])
    pipelines.add_bar(x=x, y=y, name="mean duration (minutes)", yaxis="y2", opacity=0.5)
    pipelines.update_layout(
        title="Pipelines: success rate of completed runs and their mean duration, by month",
        yaxis={"title": "%", "range": [0, 105]},
        yaxis2={"title": "minutes", "overlaying": "y", "side": "right"},
    )
    names = [w[1] for w in data["waiting"]][::-1]
    days = [w[0] for w in data["waiting"]][::-1]
    waiting = go.Figure(go.Bar(x=days, y=names, orientation="h", name="days waiting"))
    waiting.update_layout(
        title=f"Slowest open pull requests waiting for a first review (as of {data['as_of']} UTC)",
        xaxis_title="days since opened",
        height=max(300, 60 + 32 * len(names)),
        margin={"l": 220},
    )
    return dict(zip(CHARTS, (cycle, weekly, failure, pipelines, waiting), strict=True))


def render(marts: dict[str, list[dict[str, Any]]]) -> str:
    data = series(marts)
    parts = []
    for i, (chart, fig) in enumerate(figures(data).items()):
        parts.append(
            fig.to_html(
                full_html=False,
                include_plotlyjs=(i == 0),  # inlined once: the page needs no network
                div_id=chart,
                config={"displaylogo": False, "responsive": True},
            )
        )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<title>Bitbucket engineering analytics</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}</style></head><body>"
        "<h1>Bitbucket engineering analytics</h1>"
        f"<p>From the dbt marts of transform/ ({date.today().isoformat()}). "
        "Definitions: README, section Analytics.</p>" + "\n".join(parts) + "</body></html>\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duckdb", type=Path, default=ROOT / "output" / "demo.duckdb")
    parser.add_argument("--out", type=Path, default=ROOT / "output" / "report.html")
    args = parser.parse_args(argv)
    if not args.duckdb.exists():
        print(f"error: {args.duckdb} does not exist: run `make run` first", file=sys.stderr)
        return 2
    html = render(read_marts(args.duckdb))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(html, encoding="utf-8")
    print(f"Report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
