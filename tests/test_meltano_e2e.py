"""End to end through Meltano: `meltano run tap-bitbucket <loader>` against the emulator.

Each test starts its own emulator and runs the real `meltano run` (Meltano 4.4.1 and the
plugins that `make test` installed into `.meltano/`) in a temporary copy of the project, with
its own system database, so Meltano's state is the only state. It then reads back what the
loader wrote, with the loader's own driver, and compares it with the emulator's ground truth:

* DuckDB (the main job, default stream selection): every default stream's row count, then
  `mutate()` and a second, incremental run that updates exactly the changed rows;
* DuckDB, JSONL and PostgreSQL (a real server on loopback) with every stream selected:
  counts, column types, nested objects, unicode and NUL-free text, and (JSONL, PostgreSQL)
  the incremental second run.

A loader that logs "Loading N rows" and loses rows (target-duckdb 0.8.0 with duckdb >= 1.3
drops one row per batch) fails the counts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.emulator import Emulator
from tests.emulator.data import Dataset, MutationSummary
from tests.meltano_helpers import (
    ALL_STREAMS,
    DEFAULT_STREAMS,
    STREAMS,
    MeltanoProject,
    Warehouse,
    as_json,
    as_utc,
    expected_after_mutation,
    ground_truth,
    postgres_server,
    read_duckdb,
    read_jsonl,
    read_postgres,
    repo_uuid,
    upsert_keys,
)

COMMENTS_TEMPLATE = "/repositories/{workspace}/{repo_slug}/pullrequests/{pull_request_id}/comments"


def _content(row: dict[str, Any]) -> dict[str, Any]:
    """A row without the loaders' own metadata columns."""
    return {k: v for k, v in row.items() if not k.startswith("_sdc_")}


def _key(stream: str, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(str(row[k]) for k in STREAMS[stream].primary_keys)


# ----------------------------------------------------------------------------- checks


def check_counts(warehouse: Warehouse, expected: dict[str, int]) -> None:
    counts = warehouse.counts()
    assert sorted(counts) == sorted(expected), "tables differ from the selected streams"
    wrong = {s: (counts[s], n) for s, n in expected.items() if counts[s] != n}
    assert not wrong, f"row counts (loaded, ground truth) differ: {wrong}"
    for stream, rows in warehouse.rows.items():
        keys = {_key(stream, row) for row in rows}
        assert len(keys) == len(rows), f"{stream}: duplicate primary keys"


def check_changes(warehouse: Warehouse, dataset: Dataset, summary: MutationSummary) -> None:
    """Every object the mutation touched is in the warehouse with its new values."""
    prs = warehouse.index("pull_requests", "repo_uuid", "id")
    assert summary.changed["pullrequests"], "the mutation changed no pull request"
    for path in summary.changed["pullrequests"]:
        obj = dataset.object(path)
        assert obj is not None
        row = prs.get((repo_uuid(dataset, path), obj["id"]))
        assert row is not None, f"{path} missing"
        assert as_utc(row["updated_on"]) == as_utc(obj["updated_on"]), path
        assert row["state"] == obj["state"], path
        assert int(row["comment_count"]) == obj["comment_count"], path
    comments = warehouse.index("pull_request_comments", "repo_uuid", "pull_request_id", "id")
    for path in summary.changed["pullrequest_comments"]:
        m = re.fullmatch(r"(.+)/pullrequests/(\d+)/comments/(\d+)", path)
        assert m, path
        assert (repo_uuid(dataset, path), int(m.group(2)), int(m.group(3))) in comments, path
    commits = warehouse.index("commits", "repo_uuid", "hash")
    for path in summary.changed["commits"]:
        assert (repo_uuid(dataset, path), path.rsplit("/", 1)[1]) in commits, path
    pipelines = warehouse.index("pipelines", "uuid")
    for path in summary.changed["pipelines"]:
        obj = dataset.object(path)
        assert obj is not None
        row = pipelines.get((obj["uuid"],))
        assert row is not None, f"{path} missing"
        assert as_json(row["state"])["name"] == obj["state"]["name"], path
    projects = warehouse.index("projects", "uuid")
    for path in summary.changed["projects"]:
        obj = dataset.object(path)
        assert obj is not None
        assert as_utc(projects[(obj["uuid"],)]["updated_on"]) == as_utc(obj["updated_on"]), path


def check_exactly_changed(
    before: Warehouse, after: Warehouse, dataset: Dataset, summary: MutationSummary
) -> None:
    """The second run changed the changed pull requests, and no other."""
    old = {k: _content(r) for k, r in before.index("pull_requests", "repo_uuid", "id").items()}
    new = {k: _content(r) for k, r in after.index("pull_requests", "repo_uuid", "id").items()}
    differing = {k for k, row in new.items() if old.get(k) != row}
    changed = set()
    for path in summary.changed["pullrequests"]:
        obj = dataset.object(path)
        assert obj is not None
        changed.add((repo_uuid(dataset, path), obj["id"]))
    assert differing == changed
    old_comments = set(before.index("pull_request_comments", "repo_uuid", "pull_request_id", "id"))
    new_comments = set(after.index("pull_request_comments", "repo_uuid", "pull_request_id", "id"))
    added = {
        (uuid, int(pid), int(cid))
        for uuid, pid, cid in new_comments - {(u, int(p), int(c)) for u, p, c in old_comments}
    }
    expected = set()
    for path in summary.changed["pullrequest_comments"]:
        m = re.fullmatch(r".+/pullrequests/(\d+)/comments/(\d+)", path)
        assert m
        expected.add((repo_uuid(dataset, path), int(m.group(1)), int(m.group(2))))
    assert added == expected


def check_incremental_requests(emu: Emulator, first_run_comment_requests: int) -> None:
    """The second run read comments only of recently updated pull requests (Meltano's state)."""
    second = emu.request_counts().get(COMMENTS_TEMPLATE, 0)
    assert 0 < second < first_run_comment_requests / 4, (second, first_run_comment_requests)


def _schema_family(prop: dict[str, Any]) -> str | None:
    if "anyOf" in prop or "oneOf" in prop:
        return None
    types = prop.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    types = [t for t in types if t != "null"]
    if len(types) != 1:
        return None
    kind = types[0]
    if kind in ("object", "array"):
        return "json"
    if kind == "string":
        return "time" if prop.get("format") == "date-time" else "text"
    return {"integer": "int", "number": "number", "boolean": "bool"}.get(kind)


def _db_family(db_type: str) -> str:
    t = db_type.lower()
    if "json" in t or t in ("array", "struct") or t.endswith("[]"):
        return "json"
    if "timestamp" in t:
        return "time"
    if t in ("boolean", "bool"):
        return "bool"
    if "int" in t:
        return "int"
    if any(x in t for x in ("double", "numeric", "decimal", "real", "float")):
        return "number"
    if any(x in t for x in ("char", "text", "string")):
        return "text"
    return t


def check_types(warehouse: Warehouse) -> None:
    """Every top-level property of every loaded stream is a column of a matching type."""
    problems = []
    for stream, columns in warehouse.columns.items():
        lowered = {c.lower(): d for c, d in columns.items()}
        for name, prop in STREAMS[stream].schema["properties"].items():
            if name.lower() not in lowered:
                problems.append(f"{stream}.{name}: no column")
                continue
            want, got = _schema_family(prop), _db_family(lowered[name.lower()])
            if want is not None and want != got and not (want == "number" and got == "int"):
                problems.append(f"{stream}.{name}: {lowered[name.lower()]} for {want}")
    assert not problems, problems


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _clean(value: str | None) -> str:
    """Text as a loader must hold it: without NUL bytes (empty and null are alike: the
    pipelinewise loaders write '' as NULL)."""
    return (value or "").replace("\x00", "")


def check_content(warehouse: Warehouse, dataset: Dataset) -> None:
    """Nested objects and arrays, unicode and NUL-stripped text, as the API sent them."""
    for stream, rows in warehouse.rows.items():
        for row in rows:
            assert not any("\x00" in s for s in _strings(row)), f"NUL byte in {stream}"
        for name, prop in STREAMS[stream].schema["properties"].items():
            if _schema_family(prop) == "json":
                for row in rows:
                    if row.get(name) is not None:
                        assert isinstance(as_json(row[name]), (dict, list)), (stream, name)
    nul_seen = emoji_seen = 0
    prs = warehouse.index("pull_requests", "repo_uuid", "id")
    commits = warehouse.index("commits", "repo_uuid", "hash")
    comments = warehouse.index("pull_request_comments", "repo_uuid", "pull_request_id", "id")
    for path in dataset.collection_paths():
        if re.fullmatch(r"/repositories/[^/]+/[^/]+/pullrequests", path):
            uuid = repo_uuid(dataset, path)
            for obj in dataset.collection(path) or []:
                row = prs[(uuid, obj["id"])]
                assert (row["title"] or "") == _clean(obj["title"])
                assert (row["description"] or "") == _clean(obj["description"])
                assert (as_json(row["summary"])["raw"] or "") == _clean(obj["summary"]["raw"])
                author = as_json(row["author"])
                assert (author or {}).get("uuid") == (obj["author"] or {}).get("uuid")
                participants = as_json(row["participants"])
                assert [p["user"]["uuid"] for p in participants] == [
                    p["user"]["uuid"] for p in obj["participants"]
                ]
                assert as_json(row["destination"])["branch"] == obj["destination"]["branch"]
                nul_seen += "\x00" in (obj["description"] or "")
                emoji_seen += any(
                    ord(c) > 0xFFFF for c in (obj["title"] or "") + (obj["description"] or "")
                )
        elif re.fullmatch(r"/repositories/[^/]+/[^/]+/commits", path):
            uuid = repo_uuid(dataset, path)
            for obj in dataset.collection(path) or []:
                row = commits[(uuid, obj["hash"])]
                assert (row["message"] or "") == _clean(obj["message"])
                assert [p["hash"] for p in as_json(row["parents"])] == [
                    p["hash"] for p in obj["parents"]
                ]
                nul_seen += "\x00" in obj["message"]
        elif re.fullmatch(r"/repositories/[^/]+/[^/]+/pullrequests/\d+/comments", path):
            uuid, pid = repo_uuid(dataset, path), int(path.split("/")[-2])
            for obj in dataset.collection(path) or []:
                row = comments[(uuid, pid, obj["id"])]
                assert (as_json(row["content"])["raw"] or "") == _clean(obj["content"]["raw"])
                nul_seen += "\x00" in (obj["content"]["raw"] or "")
    assert nul_seen >= 2, "the dataset should carry NUL bytes in text"
    assert emoji_seen >= 1, "the dataset should carry emoji"


def _normalise_keys(warehouse: Warehouse) -> Warehouse:
    """Integer key columns as ints (JSONL and SQL agree), for index lookups."""
    for rows in warehouse.rows.values():
        for row in rows:
            for k in ("id", "pull_request_id"):
                if isinstance(row.get(k), str) and row[k].isdigit():
                    row[k] = int(row[k])
    return warehouse


# ----------------------------------------------------------------------------- tests


def test_duckdb_main_job_default_streams_then_incremental(
    make_emulator: Any, tmp_path: Path
) -> None:
    """The main job: default streams into DuckDB, then an incremental run after mutations."""
    emu = make_emulator()
    project = MeltanoProject(tmp_path, emu)
    warehouse_path = project.root / "output" / "demo.duckdb"

    project.run("target-duckdb")
    first = _normalise_keys(read_duckdb(warehouse_path))
    check_counts(first, ground_truth(emu.dataset, DEFAULT_STREAMS))
    assert not set(ALL_STREAMS) - set(DEFAULT_STREAMS) & set(first.rows)
    state = project.state("target-duckdb")["singer_state"]["bookmarks"]
    assert {"pull_requests", "commits", "pipelines"} <= set(state)
    comment_requests = emu.request_counts()[COMMENTS_TEMPLATE]

    # Nothing changed: a rerun keeps every row as it was (idempotent) and, starting from
    # Meltano's state, reads only the lookback window.
    emu.reset_log()
    project.run("target-duckdb")
    rerun = _normalise_keys(read_duckdb(warehouse_path))
    assert rerun.rows == first.rows
    assert emu.request_counts().get(COMMENTS_TEMPLATE, 0) < comment_requests / 4

    emu.reset_log()
    keys = upsert_keys(emu.dataset)
    summary = emu.mutate()
    project.run("target-duckdb")
    second = _normalise_keys(read_duckdb(warehouse_path))
    check_counts(second, expected_after_mutation(emu.dataset, DEFAULT_STREAMS, keys))
    check_changes(second, emu.dataset, summary)
    check_exactly_changed(first, second, emu.dataset, summary)
    check_incremental_requests(emu, comment_requests)


def test_duckdb_loads_every_stream(make_emulator: Any, tmp_path: Path) -> None:
    """All 29 streams, non-default ones included, with their types and content."""
    emu = make_emulator()
    project = MeltanoProject(tmp_path, emu)
    project.run("target-duckdb", select_all=True)
    warehouse = _normalise_keys(read_duckdb(project.root / "output" / "demo.duckdb"))
    check_counts(warehouse, ground_truth(emu.dataset, ALL_STREAMS))
    check_types(warehouse)
    check_content(warehouse, emu.dataset)


def test_jsonl_every_stream_then_incremental(make_emulator: Any, tmp_path: Path) -> None:
    emu = make_emulator()
    project = MeltanoProject(tmp_path, emu)
    first_dir = project.root / "output" / "demo-jsonl"
    project.run("target-jsonl", select_all=True)
    first = _normalise_keys(read_jsonl(first_dir))
    check_counts(first, ground_truth(emu.dataset, ALL_STREAMS))
    check_content(first, emu.dataset)
    comment_requests = emu.request_counts()[COMMENTS_TEMPLATE]

    emu.reset_log()
    keys = upsert_keys(emu.dataset)
    summary = emu.mutate()
    second_dir = project.root / "output" / "jsonl-2"
    project.run(
        "target-jsonl", select_all=True, env={"TARGET_JSONL_DESTINATION_PATH": str(second_dir)}
    )
    second = _normalise_keys(read_jsonl(second_dir))
    # What a warehouse would hold: the first run's records, upserted with the second's.
    merged: dict[str, list[dict[str, Any]]] = {}
    for stream in ALL_STREAMS:
        rows = {_key(stream, r): r for r in first.rows.get(stream, [])}
        rows.update({_key(stream, r): r for r in second.rows.get(stream, [])})
        merged[stream] = list(rows.values())
    union = Warehouse({}, merged)
    check_counts(union, expected_after_mutation(emu.dataset, ALL_STREAMS, keys))
    check_changes(union, emu.dataset, summary)
    check_exactly_changed(first, union, emu.dataset, summary)
    check_content(union, emu.dataset)
    check_incremental_requests(emu, comment_requests)
    # Incremental streams re-sent only what changed (plus the lookback window).
    assert len(second.rows["pull_requests"]) < len(first.rows["pull_requests"]) / 4


def test_postgres_every_stream_then_incremental(make_emulator: Any, tmp_path: Path) -> None:
    emu = make_emulator()
    project = MeltanoProject(tmp_path, emu)
    with postgres_server() as pg:
        env = {
            "TARGET_POSTGRES_HOST": pg["host"],
            "TARGET_POSTGRES_PORT": str(pg["port"]),
            "TARGET_POSTGRES_USER": pg["user"],
            "TARGET_POSTGRES_PASSWORD": pg["password"],
            "TARGET_POSTGRES_DATABASE": pg["database"],
        }
        project.run("target-postgres", select_all=True, env=env)
        first = _normalise_keys(read_postgres(pg["dsn"], "bitbucket_demo"))
        check_counts(first, ground_truth(emu.dataset, ALL_STREAMS))
        check_types(first)
        check_content(first, emu.dataset)
        comment_requests = emu.request_counts()[COMMENTS_TEMPLATE]

        emu.reset_log()
        keys = upsert_keys(emu.dataset)
        summary = emu.mutate()
        project.run("target-postgres", select_all=True, env=env)
        second = _normalise_keys(read_postgres(pg["dsn"], "bitbucket_demo"))
        check_counts(second, expected_after_mutation(emu.dataset, ALL_STREAMS, keys))
        check_changes(second, emu.dataset, summary)
        check_exactly_changed(first, second, emu.dataset, summary)
        check_content(second, emu.dataset)
        check_incremental_requests(emu, comment_requests)
