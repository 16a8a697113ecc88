"""The ground truth: from the emulator's Dataset (the objects it serves), what the tap must
emit, per stream, and which (stream, partition) pairs it must skip with a WARNING.

`expected_rows(dataset, ...)` returns, per stream, one dict per object the tap must emit:
the identity fields of that object plus the join keys the record must carry.
`expected_skips(...)` lists the (stream, partition, status) pairs the emulator answers
with an expected error, derived from its routing table.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tap_bitbucket.client import BitbucketStream
from tap_bitbucket.streams import STREAM_TYPES
from tests.emulator.server import match_route
from tests.harness.checks import SOURCE, get_path
from tests.harness.running import TapResult

STREAM_CLASSES = {cls.name: cls for cls in STREAM_TYPES}
ALL_STREAMS = frozenset(STREAM_CLASSES)
DEFAULT_STREAMS = frozenset(n for n, c in STREAM_CLASSES.items() if c.selected_by_default)

# Primary-key fields the tap derives itself (Bitbucket has no id for them): the ground
# truth identifies those objects by other fields, and their uniqueness is checked apart.
DERIVED_KEYS = {
    "pull_request_activity": {"activity_id"},
    "pull_request_diffstats": {"file_key"},
}


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


#: The join keys' naming convention: `<entity>_<field>` is that field of the parent
#: record of the entity's stream (repo_uuid: the repository's uuid, pull_request_id: the
#: pull request's id, project_key: the project's key).
ENTITIES = {
    "workspace": "workspaces",
    "project": "projects",
    "repo": "repositories",
    "pull_request": "pull_requests",
    "pipeline": "pipelines",
    "commit": "commits",
}
#: Primary-key fields the tap lifts out of a nested object (its transforms), and where the
#: served object has them: the first dotted path present.
LIFTED_KEYS = {"user_uuid": ("user.uuid", "uuid"), "group_slug": ("group.slug",)}

Row = tuple[dict[str, Any], dict[str, Any]]  # (the record's join keys, the served object)


def _join_keys(
    cls: type[BitbucketStream], parent: str, context: dict[str, Any], obj: dict[str, Any]
) -> dict[str, Any]:
    """The context keys of a `cls` record under the parent record (context, obj)."""
    keys = {}
    for key in cls.context_keys:
        if key in context:
            keys[key] = context[key]
            continue
        entity, field = next(
            (e, key.removeprefix(f"{e}_")) for e in ENTITIES if key.startswith(f"{e}_")
        )
        assert ENTITIES[entity] == parent, f"{cls.__name__}: {key} is not a key of {parent}"
        keys[key] = obj[field]
    return keys


def _identity(cls: type[BitbucketStream], obj: dict[str, Any]) -> dict[str, Any]:
    """The primary-key fields of the record the tap makes of `obj` (join keys apart)."""
    out = {}
    for key in cls.primary_keys:
        if key in cls.context_keys:
            continue
        paths = LIFTED_KEYS.get(key, (key,))
        out[key] = next((v for p in paths if (v := get_path(obj, p)) is not None), None)
    return out


def expected_rows(
    dataset: Any, scope: Scope = Scope(), streams: Iterable[str] = ALL_STREAMS
) -> dict[str, list[dict[str, Any]]]:
    """stream -> one dict per object the tap must emit (identity fields + join keys).

    Everything comes from the emulator's collections, walked down the stream registry:
    each stream's objects are the collection the emulator serves at the stream's `path`
    for each record of its parent; the record's join keys are its `context_keys`, its
    identity the primary keys. An object served under a path the tap reads must be
    emitted once, and nothing else. Paths that answer an error (empty repository,
    Pipelines disabled, deleted repository) contribute nothing. The two streams whose
    primary key the tap computes (DERIVED_KEYS) are identified by other fields.
    """
    wanted = set(streams)
    records: dict[str, list[Row]] = {}
    for cls in STREAM_TYPES:  # parents come before their children
        name = cls.name
        parent = cls.parent_stream_type
        if parent is None:
            records[name] = [({}, ws) for ws in scoped_workspaces(dataset, scope)]
            continue
        found: list[Row] = []
        for context, obj in records[parent.name]:
            keys = _join_keys(cls, parent.name, context, obj)
            found += [(keys, item) for item in _served(dataset, cls, keys)]
        if name == "repositories":
            found = [(k, repo) for k, repo in found if scope.repo_in_scope(repo["full_name"])]
        records[name] = found
    rows: dict[str, list[dict[str, Any]]] = {}
    for name in wanted:
        cls = STREAM_CLASSES[name]
        if name in DERIVED_KEYS:
            rows[name] = _derived_key_rows(dataset, name, records["pull_requests"])
        else:
            rows[name] = [
                {**keys, **_identity(cls, obj), SOURCE: obj} for keys, obj in records[name]
            ]
    return rows


def _served(dataset: Any, cls: type[BitbucketStream], keys: dict[str, Any]) -> list[dict[str, Any]]:
    if cls.name in DERIVED_KEYS:
        return []  # walked per pull request below
    return _values(dataset, str(cls.path).format(**keys))


def _derived_key_rows(dataset: Any, stream: str, pull_requests: list[Row]) -> list[dict[str, Any]]:
    """Activity and diffstats, per pull request: the tap reads activity with one walk of
    the repository, and diffstats through a redirect; the ground truth reads each PR's
    own list, so the PR an entry belongs to is checked too."""
    out = []
    for keys, pr in pull_requests:
        pkeys = {**keys, "pull_request_id": pr["id"]}
        base = f"/repositories/{keys['workspace_slug']}/{keys['repo_slug']}/pullrequests/{pr['id']}"
        if stream == "pull_request_activity":
            # No id from Bitbucket: one row per entry, compared as a count per PR.
            out += [dict(pkeys) for _ in _values(dataset, f"{base}/activity")]
            continue
        target = dataset.diffstat_target(base)
        for entry in _values(dataset, target) if target else []:
            out.append(
                {
                    **pkeys,
                    "old.path": (entry.get("old") or {}).get("path"),
                    "new.path": (entry.get("new") or {}).get("path"),
                }
            )
    return out


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


#: The words of the one WARNING of a stream the credential lacks the scope for.
CREDENTIAL_WIDE = "everywhere this run"

_SKIP_LINE = re.compile(
    r"Skipping stream '(?P<stream>[^']+)' for (?P<where>(?:repository|project|workspace) \S+):"
    r" HTTP (?P<status>\d{3}), (?P<reason>.+)$"
)


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
