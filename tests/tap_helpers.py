"""Run the real tap as a subprocess against the emulator, and derive what it must emit.

Two halves:

* running: `run_tap(config, state=None, catalog=None, env=None)` starts
  `python -m tap_bitbucket.tap` (nothing in-process, nothing mocked), parses every stdout
  line strictly as JSON and returns a :class:`TapResult`; `discovered_catalog()`,
  `select_all()` and `select_only()` build catalogs.
* ground truth: `expected_rows(dataset, ...)` walks the emulator's Dataset (the objects the
  emulator serves) and returns, per stream, one dict per object the tap must emit: the
  identity fields of that object plus the join keys the record must carry.
  `expected_skips(...)` lists the (stream, partition, status) pairs the emulator answers
  with an expected error, derived from its routing table.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
import typing as t
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from filelock import FileLock
from jsonschema import Draft7Validator, FormatChecker

from tap_bitbucket.streams import STREAM_TYPES
from tests.emulator import Emulator
from tests.emulator.server import match_route

ROOT = Path(__file__).resolve().parents[1]
TAP_COMMAND = [sys.executable, "-m", "tap_bitbucket.tap"]
ERROR_PREFIX = "tap-bitbucket: error: "
T = t.TypeVar("T")

STREAM_CLASSES = {cls.name: cls for cls in STREAM_TYPES}
ALL_STREAMS = frozenset(STREAM_CLASSES)
DEFAULT_STREAMS = frozenset(n for n, c in STREAM_CLASSES.items() if c.selected_by_default)

# Primary-key fields the tap derives itself (Bitbucket has no id for them): the ground
# truth identifies those objects by other fields, and their uniqueness is checked apart.
DERIVED_KEYS = {
    "pull_request_activity": {"activity_id"},
    "pull_request_diffstats": {"file_key"},
}


# ============================================================================ configs


def api_token_config(emu: Emulator, **extra: Any) -> dict[str, Any]:
    return {
        "api_url": emu.api_url,
        "username": emu.credentials.email,
        "api_token": emu.credentials.api_token,
        **extra,
    }


def access_token_config(emu: Emulator, workspaces: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "api_url": emu.api_url,
        "access_token": emu.credentials.access_token,
        "workspaces": workspaces,
        **extra,
    }


def secret_values(emu: Emulator) -> list[str]:
    """Every credential the emulator knows: none may ever show up in the tap's output."""
    creds = emu.credentials
    basic = base64.b64encode(f"{creds.email}:{creds.api_token}".encode()).decode()
    values = [creds.api_token, creds.access_token, creds.oauth_client_secret, basic]
    return [v for v in values if v]


# ============================================================================ running


@dataclass
class TapResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def records_by_stream(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for message in self.messages:
            if message["type"] == "RECORD":
                out.setdefault(message["stream"], []).append(message["record"])
        return out

    @property
    def schemas(self) -> dict[str, dict[str, Any]]:
        """stream -> its (last) SCHEMA message."""
        return {m["stream"]: m for m in self.messages if m["type"] == "SCHEMA"}

    @property
    def states(self) -> list[dict[str, Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def last_state(self) -> dict[str, Any] | None:
        states = self.states
        return states[-1] if states else None

    @property
    def stderr_lines(self) -> list[str]:
        return self.stderr.splitlines()

    def warning_lines(self) -> list[str]:
        return [line for line in self.stderr_lines if "WARNING" in line]

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr_lines if line.startswith(ERROR_PREFIX)]

    def skip_lines(self) -> list[str]:
        """WARNING lines of the tap's expected-error skips."""
        return [line for line in self.warning_lines() if "Skipping stream" in line]


def tap_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without TAP_BITBUCKET_* settings (they would leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_BITBUCKET_")}
    env.update(extra or {})
    return env


def parse_lines(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line must be one complete JSON Singer message."""
    messages = []
    for number, line in enumerate(stdout.splitlines(), 1):
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise AssertionError(f"stdout line {number} is not JSON: {line[:300]!r}") from exc
        assert isinstance(message, dict), f"stdout line {number} is not an object"
        assert message.get("type") in {"SCHEMA", "RECORD", "STATE", "ACTIVATE_VERSION", "BATCH"}, (
            f"stdout line {number} is not a Singer message: {line[:300]!r}"
        )
        messages.append(message)
    return messages


def run_tap(
    config: dict[str, Any],
    state: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    *,
    args: Iterable[str] = (),
    timeout: float = 300,
    parse: bool = True,
) -> TapResult:
    """Run one sync (or another CLI mode through `args`) as a subprocess."""
    with tempfile.TemporaryDirectory(prefix="tap-run-") as tmp:
        command = [*TAP_COMMAND, "--config", _write(Path(tmp, "config.json"), config)]
        if state is not None:
            command += ["--state", _write(Path(tmp, "state.json"), state)]
        if catalog is not None:
            command += ["--catalog", _write(Path(tmp, "catalog.json"), catalog)]
        command += list(args)
        started = time.monotonic()
        proc = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
            env=tap_env(env),
        )
    result = TapResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
    if parse:
        result.messages = parse_lines(proc.stdout)
    return result


def run_taps_concurrently(runs: list[dict[str, Any]]) -> list[TapResult]:
    """Several `run_tap(**kwargs)` at once (independent processes; results in order)."""
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        return list(pool.map(lambda kwargs: run_tap(**kwargs), runs))


def once_per_session(tmp_path_factory: Any, name: str, produce: Callable[[], T]) -> T:
    """`produce()` once per test session, even when pytest-xdist spreads the tests that use
    it over several workers (a module fixture would then run once per worker).

    Under xdist the first worker to get here runs it and pickles the value into the
    session's shared temporary folder; the others wait on a file lock and load it. Every
    worker's emulator serves the same deterministic data, so any worker's run will do.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return produce()
    shared = Path(tmp_path_factory.getbasetemp()).parent
    path = shared / f"tap-once-{name}.pickle"
    with FileLock(f"{path}.lock"):
        if path.is_file():
            return t.cast("T", pickle.loads(path.read_bytes()))
        value = produce()
        path.write_bytes(pickle.dumps(value))
        return value


def _write(path: Path, value: Any) -> str:
    path.write_text(json.dumps(value))
    return str(path)


@functools.cache
def _discovered() -> str:
    # The catalog does not depend on config (tap.discover_streams); any valid config works.
    result = run_tap(
        {"api_url": "http://127.0.0.1:9/2.0", "access_token": "discovery-only"},
        args=["--discover"],
        parse=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def discovered_catalog() -> dict[str, Any]:
    """The tap's catalog as `--discover` prints it (a fresh copy on every call)."""
    return json.loads(_discovered())


def select_only(catalog: dict[str, Any], streams: Iterable[str]) -> dict[str, Any]:
    wanted = set(streams)
    known = {entry["tap_stream_id"] for entry in catalog["streams"]}
    assert wanted <= known, wanted - known
    for entry in catalog["streams"]:
        for meta in entry["metadata"]:
            if not meta["breadcrumb"]:
                meta["metadata"]["selected"] = entry["tap_stream_id"] in wanted
    return catalog


def select_all(catalog: dict[str, Any]) -> dict[str, Any]:
    """Every stream, including the ones not selected by default."""
    return select_only(catalog, [entry["tap_stream_id"] for entry in catalog["streams"]])


# ============================================================================ checks


def walk(value: Any) -> Iterator[tuple[Any, Any]]:
    """(key, value) of every mapping entry at any depth (key None for list items)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield None, v
            yield from walk(v)


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    for _, v in walk(value):
        if isinstance(v, str):
            yield v


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$")
#: Any timestamp-looking string with more than microsecond precision.
NANO_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7,}")


def strict_date_time(value: object) -> bool:
    """RFC 3339 `date-time` with at most 6 fractional digits (what every target parses)."""
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return True


def record_validator(schema: dict[str, Any]) -> Draft7Validator:
    checker = FormatChecker(formats=())
    checker.checks("date-time")(strict_date_time)
    return Draft7Validator(schema, format_checker=checker)


def schema_errors(
    schema: dict[str, Any], records: list[dict[str, Any]], limit: int = 5
) -> list[str]:
    validator = record_validator(schema)
    errors = []
    for record in records:
        for error in validator.iter_errors(record):
            path = ".".join(str(p) for p in error.absolute_path)
            errors.append(f"{path}: {error.message[:200]}")
            if len(errors) >= limit:
                return errors
    return errors


def primary_key(record: dict[str, Any], keys: list[str]) -> tuple[Any, ...]:
    return tuple(record.get(k) for k in keys)


def duplicate_keys(records: list[dict[str, Any]], keys: list[str]) -> list[tuple[Any, ...]]:
    counts = Counter(primary_key(r, keys) for r in records)
    return [k for k, n in counts.items() if n > 1]


def get_path(record: dict[str, Any], dotted: str) -> Any:
    """`record["a"]["b"]` for "a.b" (a flat key "a.b", as ground-truth rows use, wins)."""
    if dotted in record:
        return record[dotted]
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def project(record: dict[str, Any], fields: Iterable[str]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((f, get_path(record, f)) for f in fields if f != SOURCE))


def compare_rows(
    records: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> tuple[list[Any], list[Any]]:
    """(missing, unexpected): multisets of expected rows vs records projected on their fields.

    Duplicated records show up as unexpected; so do records whose join keys are wrong.
    """
    if not expected:
        return [], [project(r, []) for r in records] if records else []
    fields = sorted(expected[0])
    want = Counter(project(e, fields) for e in expected)
    got = Counter(project(r, fields) for r in records)
    missing = list((want - got).elements())
    unexpected = list((got - want).elements())
    return missing, unexpected


def normalised_state(state: dict[str, Any]) -> dict[str, Any]:
    """The state with each stream's partitions in a stable order (for comparisons), and
    each ``refreshed_at`` (the clock of the run that wrote it) as a placeholder."""
    state = json.loads(json.dumps(state))
    for stream_state in (state.get("bookmarks") or {}).values():
        parts = stream_state.get("partitions")
        if isinstance(parts, list):
            parts.sort(key=lambda p: json.dumps(p.get("context"), sort_keys=True))
            for part in parts:
                if "refreshed_at" in part:
                    part["refreshed_at"] = "<run clock>"
    return state


# ============================================================================ ground truth

#: Key of an expected row that holds the object as the emulator serves it.
SOURCE = "_source"


@dataclass(frozen=True)
class Scope:
    """What a sync covers: workspaces (None = every one the user sees) and a repo filter."""

    workspaces: tuple[str, ...] | None = None
    repositories: Callable[[str], bool] | None = None  # full_name -> in scope

    def repo_in_scope(self, full_name: str) -> bool:
        return self.repositories is None or self.repositories(full_name)


def _values(dataset: Any, path: str) -> list[dict[str, Any]]:
    """A collection the emulator serves at `path` ([] where it answers an error)."""
    return list(dataset.collection(path) or [])


def scoped_workspaces(dataset: Any, scope: Scope) -> list[dict[str, Any]]:
    if scope.workspaces is not None:
        return [dataset.object(f"/workspaces/{slug}") for slug in scope.workspaces]
    # The workspaces a user sees, as the full objects (the list carries only uuid and slug).
    return [
        dataset.object(f"/workspaces/{access['workspace']['slug']}")
        for access in _values(dataset, "/user/workspaces")
    ]


def scoped_repositories(dataset: Any, scope: Scope) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workspace object, repository object) of every listed repository in scope."""
    out = []
    for ws in scoped_workspaces(dataset, scope):
        for repo in _values(dataset, f"/repositories/{ws['slug']}"):
            if scope.repo_in_scope(repo["full_name"]):
                out.append((ws, repo))
    return out


def expected_rows(
    dataset: Any, scope: Scope = Scope(), streams: Iterable[str] = ALL_STREAMS
) -> dict[str, list[dict[str, Any]]]:
    """stream -> one dict per object the tap must emit (identity fields + join keys).

    Everything comes from the emulator's collections: an object that the emulator serves
    under a path the tap reads must be emitted once, and nothing else. Paths that answer
    an error (empty repository, Pipelines disabled, deleted repository) contribute nothing.
    """
    wanted = set(streams)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in wanted}

    def add(stream: str, row: dict[str, Any], source: dict[str, Any] | None = None) -> None:
        if stream in rows:
            rows[stream].append({**row, SOURCE: source} if source is not None else row)

    for ws in scoped_workspaces(dataset, scope):
        slug, ws_uuid = ws["slug"], ws["uuid"]
        wkeys = {"workspace_slug": slug, "workspace_uuid": ws_uuid}
        add("workspaces", {"uuid": ws_uuid, "slug": slug}, ws)
        for member in _values(dataset, f"/workspaces/{slug}/members"):
            add("workspace_members", {**wkeys, "user_uuid": member["user"]["uuid"]}, member)
        for hook in _values(dataset, f"/workspaces/{slug}/hooks"):
            add("workspace_webhooks", {**wkeys, "uuid": hook["uuid"]}, hook)
        for proj in _values(dataset, f"/workspaces/{slug}/projects"):
            add("projects", {**wkeys, "uuid": proj["uuid"], "key": proj["key"]}, proj)
            pkeys = {
                "workspace_slug": slug,
                "project_key": proj["key"],
                "project_uuid": proj["uuid"],
            }
            base = f"/workspaces/{slug}/projects/{proj['key']}"
            for perm in _values(dataset, f"{base}/permissions-config/users"):
                add("project_user_permissions", {**pkeys, "user_uuid": perm["user"]["uuid"]}, perm)
            for perm in _values(dataset, f"{base}/permissions-config/groups"):
                add(
                    "project_group_permissions",
                    {**pkeys, "group_slug": perm["group"]["slug"]},
                    perm,
                )
            for rev in _values(dataset, f"{base}/default-reviewers"):
                add("project_default_reviewers", {**pkeys, "user_uuid": rev["user"]["uuid"]}, rev)

    for ws, repo in scoped_repositories(dataset, scope):
        add(
            "repositories",
            {
                "workspace_slug": ws["slug"],
                "workspace_uuid": ws["uuid"],
                "uuid": repo["uuid"],
                "full_name": repo["full_name"],
            },
            repo,
        )
        _repo_rows(dataset, ws["slug"], repo, add)
    return rows


def _repo_rows(dataset: Any, ws_slug: str, repo: dict[str, Any], add: Callable[..., None]) -> None:
    r = f"/repositories/{repo['full_name']}"
    rkeys = {"workspace_slug": ws_slug, "repo_slug": repo["slug"], "repo_uuid": repo["uuid"]}
    for perm in _values(dataset, f"{r}/permissions-config/users"):
        add("repository_user_permissions", {**rkeys, "user_uuid": perm["user"]["uuid"]}, perm)
    for perm in _values(dataset, f"{r}/permissions-config/groups"):
        add("repository_group_permissions", {**rkeys, "group_slug": perm["group"]["slug"]}, perm)
    for ref in _values(dataset, f"{r}/refs/branches"):
        add("branches", {**rkeys, "name": ref["name"]}, ref)
    for ref in _values(dataset, f"{r}/refs/tags"):
        add("tags", {**rkeys, "name": ref["name"]}, ref)
    for commit in _values(dataset, f"{r}/commits"):
        add("commits", {**rkeys, "hash": commit["hash"]}, commit)
        for status in _values(dataset, f"{r}/commit/{commit['hash']}/statuses"):
            add(
                "commit_statuses",
                {**rkeys, "commit_hash": commit["hash"], "key": status["key"]},
                status,
            )
    for pr in _values(dataset, f"{r}/pullrequests"):
        add("pull_requests", {**rkeys, "id": pr["id"]}, pr)
        _pull_request_rows(dataset, r, rkeys, pr, add)
    for pipeline in _values(dataset, f"{r}/pipelines"):
        add("pipelines", {**rkeys, "uuid": pipeline["uuid"]}, pipeline)
        for step in _values(dataset, f"{r}/pipelines/{pipeline['uuid']}/steps"):
            add(
                "pipeline_steps",
                {**rkeys, "pipeline_uuid": pipeline["uuid"], "uuid": step["uuid"]},
                step,
            )
    for item in _values(dataset, f"{r}/deployments"):
        add("deployments", {**rkeys, "uuid": item["uuid"]}, item)
    for item in _values(dataset, f"{r}/environments"):
        add("environments", {**rkeys, "uuid": item["uuid"]}, item)
    for item in _values(dataset, f"{r}/branch-restrictions"):
        add("branch_restrictions", {**rkeys, "id": item["id"]}, item)
    for item in _values(dataset, f"{r}/default-reviewers"):
        add("default_reviewers", {**rkeys, "user_uuid": item["uuid"]}, item)
    for item in _values(dataset, f"{r}/hooks"):
        add("repository_webhooks", {**rkeys, "uuid": item["uuid"]}, item)
    for item in _values(dataset, f"{r}/downloads"):
        add("downloads", {**rkeys, "name": item["name"]}, item)
    for item in _values(dataset, f"{r}/deploy-keys"):
        add("deploy_keys", {**rkeys, "id": item["id"]}, item)


def _pull_request_rows(
    dataset: Any,
    r: str,
    rkeys: dict[str, Any],
    pr: dict[str, Any],
    add: Callable[..., None],
) -> None:
    pkeys = {**rkeys, "pull_request_id": pr["id"]}
    base = f"{r}/pullrequests/{pr['id']}"
    for comment in _values(dataset, f"{base}/comments"):
        add("pull_request_comments", {**pkeys, "id": comment["id"]}, comment)
    for _entry in _values(dataset, f"{base}/activity"):
        # No id from Bitbucket: one row per entry, compared as a count per PR.
        add("pull_request_activity", dict(pkeys))
    for commit in _values(dataset, f"{base}/commits"):
        add("pull_request_commits", {**pkeys, "hash": commit["hash"]}, commit)
    for task in _values(dataset, f"{base}/tasks"):
        add("pull_request_tasks", {**pkeys, "id": task["id"]}, task)
    target = dataset.diffstat_target(base)
    for entry in _values(dataset, target) if target else []:
        add(
            "pull_request_diffstats",
            {
                **pkeys,
                "old.path": (entry.get("old") or {}).get("path"),
                "new.path": (entry.get("new") or {}).get("path"),
            },
        )


# ---------------------------------------------------------------------------- skips

_SAMPLE = {
    "pull_request_id": "1",
    "pipeline_uuid": "{00000000-0000-0000-0000-000000000000}",
    "commit_hash": "0" * 40,
}


def _route_for(stream: str, workspace: str, repo_slug: str = "r", project_key: str = "K") -> Any:
    cls = STREAM_CLASSES[stream]
    path = str(cls.path).format(
        workspace_slug=workspace, repo_slug=repo_slug, project_key=project_key, **_SAMPLE
    )
    route, _ = match_route(path)
    assert route is not None, f"the emulator has no route for {stream} ({path})"
    return route


def _ancestors(stream: str) -> list[str]:
    out = []
    parent = STREAM_CLASSES[stream].parent_stream_type
    while parent is not None:
        out.append(parent.name)
        parent = parent.parent_stream_type
    return out


def expected_skips(
    dataset: Any,
    scope: Scope = Scope(),
    streams: Iterable[str] = ALL_STREAMS,
    *,
    access_token: bool = False,
) -> set[tuple[str, str, int]]:
    """(stream, "repository w/r" | "project w/KEY", status) of every expected-error skip.

    From the emulator's routing table: `git` routes answer 409 on the empty repository,
    `pipelines` routes 404 where Pipelines is disabled, `permission` routes 403 to access
    tokens. A stream whose parent was skipped for the partition is never requested.
    """
    selected = set(streams)
    skips: set[tuple[str, str, int]] = set()

    def status_for(stream: str, info: Any, ws: str, slug: str) -> int | None:
        route = _route_for(stream, ws, slug)
        if info is not None and route.git and info.empty:
            return 409
        if info is not None and route.pipelines and not info.pipelines_enabled:
            return 404
        if route.permission and access_token:
            return 403
        return None

    for ws, repo in scoped_repositories(dataset, scope):
        info = dataset.repo(repo["full_name"])
        where = f"repository {repo['full_name']}"
        failing = {}
        for stream in sorted(selected):
            cls = STREAM_CLASSES[stream]
            if "{repo_slug}" not in str(cls.path):
                continue
            status = status_for(stream, info, ws["slug"], repo["slug"])
            if status is not None:
                failing[stream] = status
        for stream, status in failing.items():
            if not any(a in failing for a in _ancestors(stream)):
                skips.add((stream, where, status))

    for ws in scoped_workspaces(dataset, scope):
        for proj in _values(dataset, f"/workspaces/{ws['slug']}/projects"):
            for stream in sorted(selected):
                if "{project_key}" not in str(STREAM_CLASSES[stream].path):
                    continue
                status = status_for(stream, None, ws["slug"], "r")
                if status is not None:
                    skips.add((stream, f"project {ws['slug']}/{proj['key']}", status))
    return skips


_SKIP_LINE = re.compile(
    r"Skipping stream '(?P<stream>[^']+)' for (?P<where>(?:repository|project|workspace) \S+):"
    r" HTTP (?P<status>\d{3}), (?P<reason>.+)$"
)


#: The words of the one WARNING of a stream the credential lacks the scope for.
CREDENTIAL_WIDE = "everywhere this run"


def parse_skip(line: str) -> tuple[str, str, int, str] | None:
    match = _SKIP_LINE.search(line)
    if not match:
        return None
    return match["stream"], match["where"], int(match["status"]), match["reason"]


def check_skip_warnings(result: TapResult, expected: set[tuple[str, str, int]]) -> list[str]:
    """Problems with the skip WARNINGs: exactly one per expected (stream, partition)."""
    problems = []
    # A scope the credential lacks is one WARNING per stream, not per partition (issue
    # 13); the tests of those lines check them on their own.
    lines = [line for line in result.skip_lines() if CREDENTIAL_WIDE not in line]
    parsed = [parse_skip(line) for line in lines]
    for line, item in zip(lines, parsed, strict=True):
        if item is None:
            problems.append(f"unparsable skip line: {line}")
    seen = Counter((p[0], p[1], p[2]) for p in parsed if p)
    for key in sorted(expected):
        if seen[key] != 1:
            problems.append(f"{key}: {seen[key]} WARNING lines (want exactly 1)")
    for key in sorted(set(seen) - expected):
        problems.append(f"unexpected skip {key}")
    reasons = {
        403: ("scope", "admin", "permission"),
        404: ("Pipelines", "no longer exists"),
        409: ("empty",),
    }
    for item in parsed:
        if item and not any(word in item[3] for word in reasons.get(item[2], ("",))):
            problems.append(f"skip reason does not explain HTTP {item[2]}: {item}")
    return problems


def drop_skipped(
    rows: dict[str, list[dict[str, Any]]], skips: set[tuple[str, str, int]]
) -> dict[str, list[dict[str, Any]]]:
    """The expected rows without those of skipped (stream, partition) pairs."""
    skipped = {(stream, where) for stream, where, _ in skips}

    def partition(row: dict[str, Any]) -> str | None:
        if "repo_slug" in row:
            return f"repository {row['workspace_slug']}/{row['repo_slug']}"
        if "project_key" in row:
            return f"project {row['workspace_slug']}/{row['project_key']}"
        return None

    out = {}
    for stream, stream_rows in rows.items():
        lineage = {stream, *_ancestors(stream)}
        out[stream] = [
            row
            for row in stream_rows
            if not any((name, partition(row)) in skipped for name in lineage)
        ]
    return out


def completeness_problems(
    records: dict[str, list[dict[str, Any]]], expected: dict[str, list[dict[str, Any]]]
) -> list[str]:
    """Per stream: objects missing, records not in the data or emitted twice."""
    problems = []
    for stream in sorted(expected):
        missing, unexpected = compare_rows(records.get(stream, []), expected[stream])
        if missing or unexpected:
            problems.append(
                f"{stream}: {len(missing)} missing (e.g. {missing[:2]}), "
                f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})"
            )
    for stream in sorted(set(records) - set(expected)):
        problems.append(f"{stream}: {len(records[stream])} records from an unselected stream")
    return problems


#: Fields the tap changes on purpose: registry credentials in step images are redacted.
REWRITTEN_FIELDS = {"pipeline_steps": {"image"}}


def fidelity_problems(
    stream: str, records: list[dict[str, Any]], expected: list[dict[str, Any]], keys: list[str]
) -> list[str]:
    """Each emitted record holds every top-level field of the object the emulator served,
    with the same value (except text the tap must clean: NUL bytes, nanosecond times)."""
    by_key = {primary_key(r, keys): r for r in records}
    problems = []
    for row in expected:
        source = row.get(SOURCE)
        if source is None or not set(keys) <= set(row):
            continue
        record = by_key.get(tuple(row[k] for k in keys))
        if record is None:
            continue  # completeness is checked elsewhere
        for field_name, value in source.items():
            if field_name not in record:
                problems.append(f"{stream} {row[keys[-1]]}: field {field_name!r} missing")
                continue
            text = json.dumps(value)
            if (
                field_name in REWRITTEN_FIELDS.get(stream, set())
                or "\\u0000" in text
                or NANO_TIMESTAMP.search(text)
            ):
                continue
            if record[field_name] != value:
                problems.append(f"{stream} {row[keys[-1]]}: field {field_name!r} differs")
        if len(problems) > 10:
            break
    return problems
