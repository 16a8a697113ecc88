"""Deterministic Bitbucket Cloud dataset: the emulator's ground truth.

``Dataset(seed, scale)`` builds, eagerly and without any I/O, every JSON object the
emulator serves, in the shapes of Bitbucket Cloud REST API 2.0 (see
``docs/bitbucket-api-notes.md`` and ``tests/emulator/real_responses``).  The server looks
objects up by concrete API path (without the ``/2.0`` prefix):

* ``collection(path)`` -> the full, unfiltered list in Bitbucket's default order, or
  ``None`` when the path is not a collection this dataset serves;
* ``object(path)`` -> a single resource, or ``None``.

Rules that the other emulator modules rely on:

* **Objects are immutable snapshots.**  Nothing here ever modifies a dict after it was
  published; ``mutate()`` replaces changed objects by new dicts (copy-on-write).  Dicts are
  shared between collections (a PR in ``/pullrequests`` *is* the ``/pullrequests/{id}``
  object; commits inside PR commit lists are the repository's commit dicts).  Callers must
  therefore never modify what they get; copy before stripping or filtering fields.
* Pull requests are stored **full** in the ``/pullrequests`` collection; the server strips
  the fields in ``PR_LIST_OMITS`` from list items unless ``fields=`` adds them back.
* Keys are *percent-decoded* paths (``/repositories/acme/api/pipelines/{uuid}``,
  ``.../refs/branches/feature/x``).  ``collection()``/``object()`` accept both decoded and
  percent-encoded forms and ignore a query string.
* The empty repository answers ``[]`` for ``/commits`` and ``/refs/branches|tags`` (the
  server turns that into 409 from ``RepoInfo.empty``); those paths are left out of
  ``collection_paths()``.  A repository with Pipelines disabled has *no* pipelines,
  deployments or environments collections (``None`` -> 404).
* ``/commit/{hash}/statuses`` exists for every commit of a repository (``[]`` for most);
  abbreviated hashes (>= 7 hex digits) are resolved.
"""

from __future__ import annotations

import html as _html
import random
import re
import threading
import uuid as _uuidlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, unquote

__all__ = [
    "API",
    "DATA_END",
    "EMPTY_REPO_CONFLICT_SUFFIXES",
    "INITIAL_CLOCK",
    "PR_LIST_OMITS",
    "WEB",
    "Dataset",
    "MutationSummary",
    "RepoInfo",
    "parse_timestamp",
]

API = "https://api.bitbucket.org/2.0"
WEB = "https://bitbucket.org"
_AVATAR = "https://avatar-management--avatars.us-west-2.prod.public.atl-paas.net"

#: Fields that live Bitbucket omits from items of the ``/pullrequests`` collection.  The
#: dataset stores full objects; the server strips these unless ``fields`` adds them.
PR_LIST_OMITS: tuple[str, ...] = ("reviewers", "participants")

#: Path suffixes (below ``/repositories/{w}/{r}``) that answer 409 on an empty repository.
EMPTY_REPO_CONFLICT_SUFFIXES: tuple[str, ...] = (
    "/commits",
    "/refs",
    "/refs/branches",
    "/refs/tags",
)

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def _to_us(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(microseconds=1)


_START_US = _to_us(datetime(2025, 1, 1, tzinfo=UTC))
_INITIAL_CLOCK_US = _to_us(datetime(2026, 6, 1, tzinfo=UTC))
_DATA_END_US = _INITIAL_CLOCK_US - DAY
#: The dataset's "now" before any mutation; every generated timestamp is earlier.
INITIAL_CLOCK = _EPOCH + timedelta(microseconds=_INITIAL_CLOCK_US)
#: Upper bound of generated (pre-mutation) timestamps.
DATA_END = _EPOCH + timedelta(microseconds=_DATA_END_US)


# --------------------------------------------------------------------------- time format


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _ts(us: int) -> str:
    """``2026-03-04T14:08:59.123456+00:00`` (the common Bitbucket form)."""
    return _dt(us).isoformat(timespec="microseconds")


def _ts_s(us: int) -> str:
    """``2026-03-04T14:08:59+00:00`` (git dates: no fraction)."""
    return _dt(us).isoformat(timespec="seconds")


def _ts_z(us: int, nanos: int | None = None) -> str:
    """Pipelines form: ``...59.123Z`` or, with ``nanos``, ``...59.123456789Z``."""
    base = _dt(us).strftime("%Y-%m-%dT%H:%M:%S")
    frac = us % SECOND
    if nanos is None:
        return f"{base}.{frac // 1000:03d}Z"
    return f"{base}.{frac:06d}{nanos:03d}Z"


_TS_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?)(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_timestamp(value: str) -> datetime:
    """Parse any Bitbucket timestamp form (``Z``, 0-9 digit fractions, offsets) to aware UTC.

    Fractions longer than 6 digits are truncated; values without an offset are UTC.
    """
    m = _TS_RE.match(value.strip())
    if not m:
        raise ValueError(f"not a timestamp: {value!r}")
    main, frac, tz = m.groups()
    if "T" not in main and " " not in main:
        main += "T00:00:00"
    elif main.count(":") == 1:
        main += ":00"
    text = main.replace(" ", "T")
    if frac:
        text += "." + (frac[:6]).ljust(6, "0")
    if tz in (None, "Z"):
        tz = "+00:00"
    elif ":" not in tz:
        tz = tz[:3] + ":" + tz[3:]
    return datetime.fromisoformat(text + tz).astimezone(UTC)


# --------------------------------------------------------------------------- small helpers


def _uuid(rng: random.Random) -> str:
    return "{" + str(_uuidlib.UUID(int=rng.getrandbits(128), version=4)) + "}"


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def _enc(value: str) -> str:
    return quote(value, safe="")


def _link(href: str) -> dict[str, str]:
    return {"href": href}


def _render(raw: str | None) -> str:
    if not raw:
        return ""
    paras = [p for p in raw.split("\n\n") if p.strip()]
    return "".join("<p>" + _html.escape(p).replace("\n", "<br>") + "</p>" for p in paras)


def _content(raw: str | None) -> dict[str, Any]:
    return {
        "raw": raw if raw is not None else "",
        "markup": "markdown",
        "html": _render(raw),
        "type": "rendered",
    }


def _norm(path: str) -> str:
    path = path.split("?", 1)[0].split("#", 1)[0]
    if "%" in path:
        path = unquote(path)
    if path.startswith("/2.0/"):
        path = path[4:]
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


# --------------------------------------------------------------------------- text pools

_USERS = [
    ("Alex Kim", "alexkim"),
    ("Zoë Müller", "zoe.mueller"),
    ("José Álvarez", "jalvarez"),
    ("李雷", "lilei"),
    ("Priya Natarajan", "priya"),
    ("Øyvind Hansen", "oyvind"),
    ("Fatima Zahra El Idrissi", "fatima"),
    ("Chen Wei 🚀", "chenwei"),
    ("Grace O'Neil", "goneil"),
    ("Mateus Ferreira", "mferreira"),
    ("Aiko Tanaka", "aiko"),
    ("Emeka Obi", "emeka"),
    ("Sven Ödegård", "sven"),
    ("Olga Ivanova", "olga"),
    ("Noor Haddad", "noor"),
    ("Tomás Novák", "tnovak"),
]

_WORKSPACES = [("acme", "Acme Corporation"), ("globex", "Globex Ünited 🌍")]

# (slug, kind, project key) — kind: big | normal | nopipelines | empty | fork
_SPECIAL_REPOS = [
    [
        ("api", "big", "API"),
        ("web-app", "normal", "WEB"),
        ("infra", "nopipelines", "OPS"),
        ("sandbox", "empty", "OPS"),
    ],
    [
        ("storefront", "normal", "STORE"),
        ("analytics", "normal", "DATA"),
        ("api-fork", "fork", "STORE"),
        ("mobile-app", "normal", "STORE"),
    ],
]
_EXTRA_REPOS = [
    "billing",
    "search",
    "auth-service",
    "gateway",
    "etl",
    "notifications",
    "reports",
    "ledger",
    "catalog",
    "checkout",
    "scheduler",
    "crawler",
    "docs-site",
    "sdk-python",
    "sdk-go",
    "terraform-modules",
    "design-system",
    "ml-models",
    "data-lake",
    "cli",
]
_PROJECTS = [
    [
        ("API", "Platform API", "Public and internal APIs."),
        ("WEB", "Web & Mobile", "Front-ends 🚀"),
        ("OPS", "Opérations", ""),
    ],
    [
        ("STORE", "Storefront", "Everything the shopper sees — ça marche."),
        ("DATA", "Data & Analytics 📊", "数据平台"),
    ],
]
_GROUPS = [
    ("developers", "Developers"),
    ("administrators", "Administrators"),
    ("qa-team", "QA Team ✅"),
]

_LANGS = ["python", "go", "typescript", "java", "rust", "kotlin", "c"]
_VERBS = [
    "Add",
    "Fix",
    "Refactor",
    "Update",
    "Remove",
    "Improve",
    "Document",
    "Optimise",
    "Rename",
    "Simplify",
    "Harden",
    "Bump",
]
_THINGS = [
    "login flow",
    "search index",
    "café menu parser",
    "ümlaut handling",
    "rate limiter",
    "CSV export",
    "中文 locale",
    "retry logic",
    "cache layer",
    "payment webhook",
    "OAuth refresh",
    "dark mode 🌙",
    "pagination",
    "audit log",
    "build script",
    "naïve date parsing",
    "Gerät registry",
    "feature flags",
]
_SUFFIXES = ["", "", "", "", " 🚀", " [skip ci]", " ✅", " — follow-up", " (again)"]
_BODIES = [
    "The previous implementation dropped the last page.",
    "Résumé: handles the edge case when the list is empty.",
    "这个修改修复了分页问题。",
    "Co-authored-by: Zoë Müller <zoe.mueller@example.com>",
    "See the discussion in the design doc 📄.",
    "Tested on staging; numbers look good (p95 \u221212 %).",
]
_COMMENTS = [
    "LGTM 👍",
    "Could we add a test for this?",
    "Nit: typo in «naïve».",
    "这个改动看起来不错。",
    "Why not use `functools.cache` here?",
    "Done ✅",
    "I'd rather keep the old behaviour for now.",
    "Merci ! C'est corrigé.",
    "Please rebase on the main branch.",
    "Does this handle ümlauts?",
    "Nice catch 🎉",
    "This breaks the CSV export when the field contains a comma.",
    "Can we split this into two PRs?",
    "Addressed in the latest push.",
    "```python\nreturn None\n```\nwould be simpler.",
]
_TASKS = [
    "Add changelog entry",
    "Update the docs",
    "Write a migration 🛠",
    "Rename the variable",
    "Check the Überprüfung step",
    "Remove debug logging",
]
_DECLINE_REASONS = [
    "Superseded by a different approach.",
    "Ne plus nécessaire.",
    "Won't fix 🙅",
    "Duplicate of another PR.",
]
_TOPICS = [
    "login",
    "search",
    "export",
    "billing",
    "i18n",
    "cache",
    "metrics",
    "oauth",
    "retry",
    "docs",
    "ui-refresh",
    "perf",
    "audit",
    "webhooks",
    "rate-limit",
    "pagination",
]
_FILES = {
    "python": [
        "src/app/__init__.py",
        "src/app/main.py",
        "src/app/models.py",
        "src/app/api/views.py",
        "tests/test_views.py",
        "pyproject.toml",
        "README.md",
        "docs/café.md",
    ],
    "go": [
        "cmd/server/main.go",
        "internal/store/store.go",
        "internal/http/handler.go",
        "go.mod",
        "internal/http/handler_test.go",
        "README.md",
        "docs/über.md",
    ],
    "typescript": [
        "src/index.ts",
        "src/components/App.tsx",
        "src/api/client.ts",
        "package.json",
        "src/i18n/中文.json",
        "README.md",
        "test/app.test.ts",
    ],
    "java": [
        "src/main/java/com/acme/App.java",
        "src/main/java/com/acme/Service.java",
        "pom.xml",
        "src/test/java/com/acme/AppTest.java",
        "README.md",
    ],
    "rust": ["src/main.rs", "src/lib.rs", "Cargo.toml", "tests/integration.rs", "README.md"],
    "kotlin": [
        "app/src/main/kotlin/Main.kt",
        "app/build.gradle.kts",
        "README.md",
        "app/src/test/MainTest.kt",
    ],
    "c": ["src/main.c", "src/util.c", "include/util.h", "Makefile", "README.md"],
}
_STATUS_KEYS = [
    ("build", "Build"),
    ("lint", "Lint"),
    ("jenkins-ci", "Jenkins"),
    ("sonar", "SonarCloud"),
]
_STEP_NAMES = ["Build", "Test", "Lint", "Deploy to staging"]
_IMAGES = ["python:3.12", "node:22", "golang:1.24", "atlassian/default-image:4", "gcc:14"]
_HOOK_EVENTS = [
    "repo:push",
    "pullrequest:created",
    "pullrequest:updated",
    "pullrequest:fulfilled",
    "pullrequest:rejected",
    "pullrequest:comment_created",
    "repo:commit_status_updated",
]


# --------------------------------------------------------------------------- public records


@dataclass
class RepoInfo:
    workspace: str
    slug: str
    full_name: str
    uuid: str
    empty: bool = False
    pipelines_enabled: bool = True
    is_fork: bool = False
    deleted: bool = False
    parent_full_name: str | None = None
    mainbranch: str | None = None


@dataclass
class MutationSummary:
    """What one ``mutate()`` changed.

    ``changed`` maps a kind to concrete API paths (decoded, without ``/2.0``):
    ``repositories``, ``projects``, ``pullrequests`` (new or updated PR objects),
    ``pullrequest_comments`` (new comment objects), ``pullrequest_activity`` (PR object
    paths whose activity log gained entries), ``commits`` (new commit objects),
    ``branches`` (new or moved branches), ``branches_deleted``, ``pipelines`` (new or
    completed), ``pipeline_steps`` and ``collections`` (every pre-existing or new
    collection path whose list changed).  Every object path not listed is byte-identical
    to before; every timestamp the mutation wrote is in ``(previous_clock, clock)``.
    """

    changed: dict[str, list[str]]
    clock: datetime
    previous_clock: datetime
    number: int = 0


# --------------------------------------------------------------------------- internal records


class _C:
    """A raw commit."""

    __slots__ = ("author", "branch", "date_us", "hash", "idx", "message", "parents", "tick", "us")

    def __init__(
        self,
        idx: int,
        h: str,
        parents: list[int],
        branch: str,
        author: dict | None,
        message: str,
        tick: int | None,
    ) -> None:
        self.idx = idx
        self.hash = h
        self.parents = parents
        self.branch = branch
        self.author = author  # account dict or None (unmapped git author)
        self.message = message
        self.tick = tick
        self.us = 0
        self.date_us = 0


class _PR:
    __slots__ = (
        "activity",
        "author",
        "close_source_branch",
        "closed_by",
        "closed_tick",
        "closed_us",
        "comment_us",
        "comments",
        "commits",
        "created_tick",
        "created_us",
        "description",
        "diffstat_key",
        "draft",
        "dst_branch",
        "dst_idx",
        "id",
        "merge_idx",
        "queued",
        "reason",
        "ref",
        "reviewers",
        "src_branch",
        "src_idx",
        "src_repo",
        "state",
        "tasks",
        "title",
        "updated_us",
        "votes",
    )

    def __init__(self, pid: int) -> None:
        self.id = pid
        self.title = ""
        self.description: str | None = ""
        self.author: dict | None = None
        self.src_branch = ""
        self.dst_branch = ""
        self.src_repo: _Repo | None = None
        self.src_idx = 0
        self.dst_idx = 0
        self.merge_idx: int | None = None
        self.state = "OPEN"
        self.created_tick = 0
        self.closed_tick: int | None = None
        self.created_us = 0
        self.closed_us: int | None = None
        self.updated_us = 0
        self.closed_by: dict | None = None
        self.reason = ""
        self.close_source_branch = False
        self.draft = False
        self.queued = False
        self.reviewers: list[dict] = []
        self.comments: list[dict] = []
        self.comment_us: dict[int, int] = {}
        self.votes: list[tuple[int, str, dict]] = []  # (us, "approval"|"changes_requested", user)
        self.tasks: list[dict] = []
        self.activity: list[tuple[int, int, dict]] = []  # (us, seq, entry)
        self.commits: list[dict] = []
        self.diffstat_key = ""
        self.ref: dict = {}


class _Episode:
    __slots__ = (
        "author",
        "branch",
        "dst",
        "need",
        "plan",
        "pr",
        "pushed",
        "release",
        "synced",
        "title",
    )

    def __init__(
        self,
        branch: str,
        dst: str,
        plan: list[str],
        need: int,
        author: dict | None,
        release: bool = False,
    ) -> None:
        self.branch = branch
        self.dst = dst
        self.plan = plan
        self.need = need
        self.pushed = 0
        self.pr: _PR | None = None
        self.author = author
        self.release = release
        self.synced = False
        self.title = ""


class _Pipeline:
    __slots__ = (
        "build",
        "commit_idx",
        "completed_us",
        "created_us",
        "creator",
        "nanos",
        "ref_name",
        "result",
        "state",
        "steps",
        "trigger",
        "uuid",
    )

    def __init__(self) -> None:
        self.uuid = ""
        self.build = 0
        self.commit_idx = 0
        self.ref_name = ""
        self.created_us = 0
        self.completed_us: int | None = None
        self.state = "COMPLETED"  # PENDING | IN_PROGRESS | COMPLETED
        self.result: str | None = "SUCCESSFUL"
        self.nanos: int | None = None
        self.trigger = "PUSH"
        self.creator: dict | None = None
        self.steps: list[dict] = []  # raw step records (plain dicts, internal)


class _Workspace:
    def __init__(self) -> None:
        self.slug = ""
        self.name = ""
        self.uuid = ""
        self.obj: dict = {}
        self.ref: dict = {}
        self.team: dict = {}
        self.members: list[dict] = []  # accounts (non-deleted), for contributors
        self.groups: dict[str, dict] = {}
        self.projects: dict[str, dict] = {}
        self.project_refs: dict[str, dict] = {}
        self.repos: list[_Repo] = []
        self.created_us = 0


class _Repo:
    def __init__(
        self, info: RepoInfo, ws: _Workspace, idx: int, kind: str, project_key: str, seed: int
    ) -> None:
        self.info = info
        self.ws = ws
        self.idx = idx
        self.kind = kind
        self.project_key = project_key
        self.rng = random.Random(f"bb-emu:{seed}:repo:{info.full_name}")
        self.full = info.full_name
        self.path = f"/repositories/{info.full_name}"
        self.api = API + self.path
        self.web = f"{WEB}/{info.full_name}"
        self.ref: dict = {}
        self.obj: dict = {}
        self.created_us = 0
        self.pushed_us = 0
        self.t_start = 0
        self.t_end = 0
        self.mainbranch = "main"
        self.develop: str | None = None
        self.language = "python"
        self.contributors: list[dict] = []
        self.commits: list[_C] = []
        self.anc: list[int] = []
        self.cdicts: list[dict] = []
        self.by_hash: dict[str, int] = {}
        self.heads: dict[str, int] = {}
        self.main_history: list[tuple[int, int]] = []  # (tick, idx) of main-branch heads
        self.tick = 0
        self.prs: dict[int, _PR] = {}
        self.pipelines: list[_Pipeline] = []
        self.comment_seq = 0
        self.task_seq = 0
        self.fork_base_idx: int | None = None
        self.upstream_branch: str | None = None
        self.branch_names: set[str] = set()
        self.author_cache: dict[str, dict] = {}
        self.act_seq = 0


# --------------------------------------------------------------------------- the dataset


class Dataset:
    """Deterministic Bitbucket Cloud data (see module docstring)."""

    def __init__(self, seed: int = 1, scale: int = 1) -> None:
        if scale < 1:
            raise ValueError("scale must be >= 1")
        self.seed = int(seed)
        self.scale = int(scale)
        self.lock = threading.RLock()
        self._clock_us = _INITIAL_CLOCK_US
        self._mutations = 0
        self._cols: dict[str, list[dict]] = {}
        self._objs: dict[str, dict] = {}
        self._repo_by_name: dict[str, _Repo] = {}
        self._repo_list: list[_Repo] = []
        self._ws: list[_Workspace] = []
        self._deleted: set[str] = set()
        self._rng = random.Random(f"bb-emu:{self.seed}:global")
        self.workspaces: list[str] = []
        self.repos: list[RepoInfo] = []
        self.users: list[dict] = []
        self.deleted_account: dict = {}
        self.user: dict = {}
        self.email = ""
        self._build()

    # ------------------------------------------------------------------ public API

    @property
    def clock(self) -> datetime:
        """The dataset's "now": later than every timestamp in the data."""
        return _dt(self._clock_us)

    @property
    def mutation_count(self) -> int:
        return self._mutations

    def collection(self, path: str) -> list[dict] | None:
        p = _norm(path)
        with self.lock:
            r = self._repo_of(p)
            if r is not None and r.info.deleted:
                return None
            lst = self._cols.get(p)
            if lst is not None:
                return list(lst)
            if r is None:
                return None
            rest = p[len(r.path) :]
            if r.info.empty and rest in EMPTY_REPO_CONFLICT_SUFFIXES:
                return []
            parts = rest.split("/")
            # ['', 'commit', '{hash}', 'statuses']
            if len(parts) == 4 and parts[1] == "commit" and parts[3] == "statuses":
                full = self._resolve_hash(r, parts[2])
                if full is None:
                    return None
                return list(self._cols.get(f"{r.path}/commit/{full}/statuses", []))
            return None

    def object(self, path: str) -> dict | None:
        p = _norm(path)
        with self.lock:
            r = self._repo_of(p)
            if r is not None and r.info.deleted:
                return None
            obj = self._objs.get(p)
            if obj is not None or r is None:
                return obj
            parts = p[len(r.path) :].split("/")
            # ['', 'commit', '{hash}'] or ['', 'commit', '{hash}', 'statuses', 'build', '{key}']
            if len(parts) >= 3 and parts[1] == "commit":
                full = self._resolve_hash(r, parts[2])
                if full is not None and full != parts[2]:
                    return self._objs.get("/".join([r.path, "commit", full, *parts[3:]]))
            return None

    def collection_paths(self) -> list[str]:
        """Every collection path ``collection()`` answers with a list (200 on the server)."""
        with self.lock:
            out = [p for p in self._cols if not self._is_deleted(p)]
            for r in self._repo_list:
                if r.info.deleted or r.info.empty:
                    continue
                for c in r.commits:
                    sp = f"{r.path}/commit/{c.hash}/statuses"
                    if sp not in self._cols:
                        out.append(sp)
            return sorted(out)

    def object_paths(self) -> list[str]:
        with self.lock:
            return sorted(p for p in self._objs if not self._is_deleted(p))

    def diffstat_target(self, pr_path: str) -> str | None:
        """Where ``GET {pr_path}/diffstat`` redirects (302) to.

        ``pr_path`` is the PR path (``/repositories/w/r/pullrequests/3``, with or without a
        trailing ``/diffstat``).  Returns the path *without* ``/2.0``, percent-encoded and
        with its query string, exactly as in the PR's ``links.diffstat.href``, e.g.
        ``/repositories/w/r/diffstat/w/r:0123456789ab%0Dba9876543210?from_pullrequest_id=3&topic=true``.
        ``collection()`` accepts that string as is.  ``None`` if the PR does not exist.
        """
        p = _norm(pr_path)
        if p.endswith("/diffstat"):
            p = p[: -len("/diffstat")]
        pr = self.object(p)
        if pr is None or pr.get("type") != "pullrequest":
            return None
        return pr["links"]["diffstat"]["href"][len(API) :]

    def repo(self, full_name: str) -> RepoInfo | None:
        r = self._repo_by_name.get(full_name)
        return r.info if r else None

    def repo_for_path(self, path: str) -> RepoInfo | None:
        """The repository a ``/repositories/{w}/{r}/...`` path belongs to (deleted ones too)."""
        r = self._repo_of(_norm(path))
        return r.info if r else None

    def add_item(self, path: str, item: dict, *, touch_repo: bool) -> datetime:
        """A test's change: append ``item`` to the collection at ``path`` (a new tag, a
        deploy key, a member...) one minute later on the clock. With ``touch_repo``, the
        repository's ``updated_on`` moves to that time, as Bitbucket moves it on git
        activity and only then (notes §8.11). Returns the new clock."""
        p = _norm(path)
        with self.lock:
            if p not in self._cols:
                raise KeyError(f"no collection at {path}")
            self._clock_us += MINUTE
            self._cols[p] = [*self._cols[p], item]
            r = self._repo_of(p)
            if touch_repo:
                if r is None:
                    raise KeyError(f"{path} is not a repository's collection")
                r.pushed_us = self._clock_us
                self._mut_touch_repo(r, lambda *_: None)
            return _dt(self._clock_us)

    def delete_repository(self, full_name: str) -> None:
        with self.lock:
            r = self._repo_by_name.get(full_name)
            if r is None:
                raise KeyError(full_name)
            if r.info.deleted:
                return
            r.info.deleted = True
            self._deleted.add(full_name)
            self._rebuild_repo_list(r.ws)

    # ------------------------------------------------------------------ lookup internals

    def _repo_of(self, p: str) -> _Repo | None:
        if not p.startswith("/repositories/"):
            return None
        parts = p.split("/", 4)
        if len(parts) < 4:
            return None
        return self._repo_by_name.get(parts[2] + "/" + parts[3])

    def _is_deleted(self, p: str) -> bool:
        if not self._deleted or not p.startswith("/repositories/"):
            return False
        parts = p.split("/", 4)
        return len(parts) >= 4 and (parts[2] + "/" + parts[3]) in self._deleted

    @staticmethod
    def _resolve_hash(r: _Repo, h: str) -> str | None:
        if h in r.by_hash:
            return h
        if len(h) < 7 or len(h) >= 40 or not all(ch in "0123456789abcdef" for ch in h):
            return None
        found = [c.hash for c in r.commits if c.hash.startswith(h)]
        return found[0] if len(found) == 1 else None

    # ------------------------------------------------------------------ builders: accounts

    def _build(self) -> None:
        rng = self._rng
        self.users = []
        for i, (name, nick) in enumerate(_USERS):
            u = _uuid(rng)
            prefix = "557058" if i % 3 else "712020"
            aid = f"{prefix}:{_uuidlib.UUID(int=rng.getrandbits(128), version=4)}"
            initials = "".join(w[0] for w in name.split()[:2]).upper()
            self.users.append(self._account(u, aid, name, nick, initials, rng))
        self.deleted_account = {
            "display_name": "Former user",
            "links": {"avatar": _link(f"{_AVATAR}/default-avatar.png")},
            "type": "user",
            "uuid": _uuid(rng),
            "account_id": None,
            "nickname": None,
        }
        me = self.users[0]
        self.email = "alex.kim@example.com"
        enc = _enc(me["uuid"])
        self.user = {
            "display_name": me["display_name"],
            "links": {
                "self": _link(f"{API}/users/{enc}"),
                "avatar": me["links"]["avatar"],
                "repositories": _link(f"{API}/repositories/{enc}"),
                "snippets": _link(f"{API}/snippets/{enc}"),
                "html": _link(f"{WEB}/{enc}/"),
                "hooks": _link(f"{API}/workspaces/{enc}/hooks"),
            },
            "created_on": _ts(_START_US - 400 * DAY + 12_345_678),
            "type": "user",
            "uuid": me["uuid"],
            "has_2fa_enabled": None,
            "is_staff": False,
            "account_id": me["account_id"],
            "nickname": me["nickname"],
            "account_status": "active",
            "location": None,
        }
        self._objs["/user"] = self.user
        for u in self.users:
            self._objs[f"/users/{u['uuid']}"] = u

        per_ws = 4 * self.scale
        for wi, (slug, name) in enumerate(_WORKSPACES):
            ws = self._build_workspace(wi, slug, name)
            self._ws.append(ws)
            self.workspaces.append(slug)
            specials = _SPECIAL_REPOS[wi]
            for j in range(per_ws):
                if j < len(specials):
                    rslug, kind, pkey = specials[j]
                else:
                    k = j - len(specials)
                    base = _EXTRA_REPOS[k % len(_EXTRA_REPOS)]
                    rslug = (
                        base if k < len(_EXTRA_REPOS) else f"{base}-{k // len(_EXTRA_REPOS) + 1}"
                    )
                    kind = "normal"
                    keys = list(ws.projects)
                    pkey = keys[k % len(keys)]
                self._new_repo(ws, rslug, kind, pkey)

        # Phase 1: histories (DAG + PR lifecycles) for every repository, parents first.
        for r in self._repo_list:
            self._phase1(r)
        # Cross-repository PR: fork -> parent.
        for r in self._repo_list:
            if r.kind == "fork" and r.upstream_branch:
                self._add_upstream_pr(r)
        # Phase 2: every API object (commit dicts first: PRs from the fork list fork commits).
        for r in self._repo_list:
            self._build_commit_dicts(r)
        for r in self._repo_list:
            self._phase2(r)
        for ws in self._ws:
            self._rebuild_repo_list(ws)
        self._cols["/user/workspaces"] = [
            self._workspace_access(i, ws)
            for i, ws in sorted(enumerate(self._ws), key=lambda t: t[1].slug)
        ]

    @staticmethod
    def _account(u: str, aid: str, name: str, nick: str, initials: str, rng: random.Random) -> dict:
        enc = _enc(u)
        return {
            "display_name": name,
            "links": {
                "self": _link(f"{API}/users/{enc}"),
                "avatar": _link(
                    f"{_AVATAR}/{aid.partition(':')[0]}/{_hex(rng, 8)}"
                    f"/initials/{quote(initials)}-{rng.randint(0, 5)}.png"
                ),
                "html": _link(f"{WEB}/{enc}/"),
            },
            "type": "user",
            "uuid": u,
            "account_id": aid,
            "nickname": nick,
        }

    # ------------------------------------------------------------------ builders: workspaces

    def _build_workspace(self, wi: int, slug: str, name: str) -> _Workspace:
        rng = random.Random(f"bb-emu:{self.seed}:ws:{slug}")
        ws = _Workspace()
        ws.slug, ws.name, ws.uuid = slug, name, _uuid(rng)
        ws.created_us = _START_US - (300 - 40 * wi) * DAY + rng.randrange(DAY)
        api_ws = f"{API}/workspaces/{slug}"
        avatar = _link(f"{WEB}/workspaces/{slug}/avatar/?ts={1_700_000_000 + rng.randrange(10**7)}")
        ws.obj = {
            "type": "workspace",
            "uuid": ws.uuid,
            "name": name,
            "slug": slug,
            "is_private": True,
            "is_privacy_enforced": wi == 1,
            "forking_mode": "allow_forks" if wi == 0 else "internal_only",
            "created_on": _ts(ws.created_us),
            "updated_on": _ts(ws.created_us + 90 * DAY + rng.randrange(DAY)),
            "links": {
                "avatar": avatar,
                "html": _link(f"{WEB}/{slug}/"),
                "members": _link(f"{api_ws}/members"),
                "owners": _link(f"{api_ws}/members?q=permission%3D%22owner%22"),
                "projects": _link(f"{api_ws}/projects"),
                "repositories": _link(f"{API}/repositories/{slug}"),
                "snippets": _link(f"{API}/snippets/{slug}"),
                "self": _link(api_ws),
            },
        }
        ws.ref = {
            "type": "workspace",
            "uuid": ws.uuid,
            "name": name,
            "slug": slug,
            "links": {"avatar": avatar, "html": _link(f"{WEB}/{slug}/"), "self": _link(api_ws)},
        }
        ws.team = {
            "display_name": name,
            "links": {"avatar": avatar, "html": _link(f"{WEB}/{slug}/"), "self": _link(api_ws)},
            "type": "team",
            "uuid": ws.uuid,
            "username": slug,
        }
        self._objs[f"/workspaces/{slug}"] = ws.obj

        # Members: the authenticated user, 3-4 others, one deleted account.
        others = [u for u in self.users[1:]]
        rng.shuffle(others)
        picked = [self.users[0], *others[: 3 + wi]]
        ws.members = list(picked)
        members = []
        for k, u in enumerate([*picked, self.deleted_account]):
            deleted = u is self.deleted_account
            if k == 0:
                perm = "owner" if wi == 0 else "member"
            elif deleted:
                perm = "member"
            else:
                perm = rng.choice(["member", "member", "collaborator", "owner"])
            added = ws.created_us + rng.randrange(60 * DAY)
            managed = deleted or k == 2
            members.append(
                {
                    "type": "workspace_membership",
                    "user": u,
                    "workspace": ws.ref,
                    "permission": perm,
                    "added_on": None if managed else _ts(added),
                    "last_accessed": None
                    if managed
                    else _ts(_DATA_END_US - rng.randrange(1, 60) * DAY - rng.randrange(DAY)),
                    "links": {"self": _link(f"{api_ws}/members/{_enc(u['uuid'])}")},
                }
            )
            self._objs[f"/workspaces/{slug}/members/{u['uuid']}"] = members[-1]
        self._cols[f"/workspaces/{slug}/members"] = members
        me_perm = {
            "type": "workspace_membership",
            "permission": "owner" if wi == 0 else "member",
            "user": self.users[0],
            "workspace": ws.ref,
            "links": {"self": _link(f"{API}/user/workspaces/{slug}/permission")},
        }
        self._objs[f"/user/workspaces/{slug}/permission"] = me_perm

        for gslug, gname in _GROUPS:
            ws.groups[gslug] = {
                "type": "group",
                "name": gname,
                "slug": gslug,
                "full_slug": f"{slug}:{gslug}",
                "owner": ws.team,
                "workspace": ws.ref,
                "links": {
                    "self": _link(f"{API}/groups/{slug}/{gslug}"),
                    "html": _link(f"{WEB}/{slug}/workspace/settings/groups/{gslug}"),
                },
            }

        hooks = []
        for k in range(1 + wi):
            hu = _uuid(rng)
            hook = {
                "type": "webhook_subscription",
                "uuid": hu,
                "url": f"https://hooks.{slug}.example.com/bitbucket/{k}",
                "description": ["Slack notifications 🔔", "Audit trail → SIEM"][k % 2],
                "subject_type": "workspace",
                "subject": ws.ref,
                "active": k == 0,
                "events": sorted(rng.sample(_HOOK_EVENTS, 3)),
                "created_at": _ts(ws.created_us + (k + 1) * 7 * DAY + rng.randrange(DAY)),
                "secret_set": k == 0,
                "links": {"self": _link(f"{api_ws}/hooks/{_enc(hu)}")},
            }
            hooks.append(hook)
            self._objs[f"/workspaces/{slug}/hooks/{hu}"] = hook
        self._cols[f"/workspaces/{slug}/hooks"] = hooks

        projects = []
        for k, (key, pname, desc) in enumerate(_PROJECTS[wi]):
            pu = _uuid(rng)
            created = ws.created_us + (k + 1) * 3 * DAY + rng.randrange(DAY)
            plinks = {
                "html": _link(f"{WEB}/{slug}/workspace/projects/{key}"),
                "avatar": _link(
                    f"{WEB}/{slug}/workspace/projects/{key}/avatar/32?ts={1_700_000_000 + k}"
                ),
                "self": _link(f"{api_ws}/projects/{key}"),
            }
            proj = {
                "type": "project",
                "uuid": pu,
                "key": key,
                "name": pname,
                "description": desc,
                "is_private": k != 1,
                "has_publicly_visible_repos": k == 1,
                "owner": ws.team,
                "created_on": _ts(created),
                "updated_on": _ts(created + rng.randrange(30, 200) * DAY + rng.randrange(DAY)),
                "links": plinks,
            }
            projects.append(proj)
            ws.projects[key] = proj
            ws.project_refs[key] = {
                "type": "project",
                "key": key,
                "uuid": pu,
                "name": pname,
                "links": plinks,
            }
            pbase = f"/workspaces/{slug}/projects/{key}"
            self._objs[pbase] = proj
            pref = ws.project_refs[key]
            uperms = []
            for u, perm in zip(
                picked[: 2 + k % 2], ["admin", "write", "create-repo"], strict=False
            ):
                item = {
                    "type": "project_user_permission",
                    "permission": perm,
                    "user": u,
                    "project": pref,
                    "links": {
                        "self": _link(
                            f"{API}{pbase}/permissions-config/users/{_enc(u['account_id'])}"
                        )
                    },
                }
                uperms.append(item)
                self._objs[f"{pbase}/permissions-config/users/{u['account_id']}"] = item
            self._cols[f"{pbase}/permissions-config/users"] = uperms
            gperms = []
            for gslug, perm in [("developers", "write"), ("qa-team", "read")][: 1 + k % 2]:
                item = {
                    "type": "project_group_permission",
                    "permission": perm,
                    "group": ws.groups[gslug],
                    "project": pref,
                    "links": {"self": _link(f"{API}{pbase}/permissions-config/groups/{gslug}")},
                }
                gperms.append(item)
                self._objs[f"{pbase}/permissions-config/groups/{gslug}"] = item
            self._cols[f"{pbase}/permissions-config/groups"] = gperms
            self._cols[f"{pbase}/default-reviewers"] = [
                {"type": "default_reviewer_and_type", "reviewer_type": "project", "user": u}
                for u in picked[1 : 2 + k % 2]
            ]
        self._cols[f"/workspaces/{slug}/projects"] = projects
        return ws

    def _workspace_access(self, i: int, ws: _Workspace) -> dict:
        return {
            "type": "workspace_access",
            "administrator": i == 0,
            "workspace": {
                "type": "workspace_base",
                "uuid": ws.uuid,
                "slug": ws.slug,
                "links": {"avatar": ws.ref["links"]["avatar"], "self": ws.ref["links"]["self"]},
            },
            "links": {"self": _link(f"{API}/user/workspaces/{ws.slug}/permission")},
        }

    def _rebuild_repo_list(self, ws: _Workspace) -> None:
        self._cols[f"/repositories/{ws.slug}"] = [r.obj for r in ws.repos if not r.info.deleted]

    # ------------------------------------------------------------------ builders: repositories

    def _new_repo(self, ws: _Workspace, slug: str, kind: str, pkey: str) -> None:
        full = f"{ws.slug}/{slug}"
        tmp = random.Random(f"bb-emu:{self.seed}:repouuid:{full}")
        info = RepoInfo(
            workspace=ws.slug,
            slug=slug,
            full_name=full,
            uuid=_uuid(tmp),
            empty=kind == "empty",
            pipelines_enabled=kind != "nopipelines",
            is_fork=kind == "fork",
        )
        r = _Repo(info, ws, len(self._repo_list), kind, pkey, self.seed)
        r.ref = {
            "type": "repository",
            "full_name": full,
            "name": slug,
            "uuid": info.uuid,
            "links": {
                "self": _link(r.api),
                "html": _link(r.web),
                "avatar": _link(f"https://bytebucket.org/ravatar/{_enc(info.uuid)}?ts=default"),
            },
        }
        self._repo_list.append(r)
        self._repo_by_name[full] = r
        ws.repos.append(r)
        self.repos.append(info)

    # ----- phase 1: DAG and PR lifecycles (symbolic ticks, then wall-clock times)

    def _phase1(self, r: _Repo) -> None:
        rng = r.rng
        r.language = rng.choice(_LANGS)
        r.created_us = _START_US + r.ws.repos.index(r) * 2 * DAY // self.scale + rng.randrange(DAY)
        contributors = list(r.ws.members)
        outsider = self.users[(r.idx * 5 + 3) % len(self.users)]
        if outsider not in contributors:
            contributors.append(outsider)
        r.contributors = contributors
        r.t_start = r.created_us + HOUR
        r.t_end = _DATA_END_US - 3 * DAY
        if r.kind == "empty":
            r.mainbranch = "main"
            r.info.mainbranch = None
            r.pushed_us = r.created_us
            return
        if r.kind == "fork":
            parent = self._repo_by_name[self._fork_parent_name()]
            self._init_fork(r, parent)
            n_prs, min_commits = rng.randint(4, 7), len(r.commits) + 8
        else:
            r.mainbranch = "master" if (r.kind == "big" or rng.random() < 0.25) else "main"
            r.develop = "develop" if (r.kind == "big" or rng.random() < 0.4) else None
            n_prs = 58 if r.kind == "big" else rng.randint(15, 34)
            min_commits = 125 if r.kind == "big" else rng.randint(55, 90)
        r.info.mainbranch = r.mainbranch
        self._simulate(r, n_prs, min_commits)
        self._assign_times(r)
        if r.kind == "big" and len(r.commits) > 6:
            # Deterministic NUL byte in a commit message (before the fork copies the history).
            c = r.commits[5]
            c.message = c.message.split("\n", 1)[0] + "\n\nBinary junk: \u0000 end"

    def _fork_parent_name(self) -> str:
        return f"{_WORKSPACES[0][0]}/{_SPECIAL_REPOS[0][0][0]}"

    def _commit(
        self,
        r: _Repo,
        branch: str,
        parents: list[int],
        author: dict | None,
        message: str,
        tick: int | None,
    ) -> int:
        idx = len(r.commits)
        h = _hex(r.rng, 40)
        c = _C(idx, h, parents, branch, author, message, tick)
        a = 1 << idx
        for p in parents:
            a |= r.anc[p]
        r.commits.append(c)
        r.anc.append(a)
        r.by_hash[h] = idx
        r.heads[branch] = idx
        if branch == r.mainbranch:
            r.main_history.append((tick if tick is not None else -1, idx))
        return idx

    def _tick(self, r: _Repo) -> int:
        r.tick += 1
        return r.tick

    def _message(self, rng: random.Random) -> str:
        msg = f"{rng.choice(_VERBS)} {rng.choice(_THINGS)}{rng.choice(_SUFFIXES)}"
        if rng.random() < 0.3:
            msg += "\n\n" + rng.choice(_BODIES)
        return msg

    def _pick_author(self, r: _Repo) -> dict | None:
        x = r.rng.random()
        if x < 0.05:
            return None
        return r.rng.choice(r.contributors)

    def _branch_name(self, r: _Repo) -> str:
        rng = r.rng
        while True:
            prefix = rng.choice(["feature", "feature", "feature", "bugfix", "hotfix"])
            name = f"{prefix}/{rng.choice(_TOPICS)}-{rng.randint(1, 999)}"
            if r.kind == "big" and "feature/ümlaut-support" not in r.branch_names:
                name = "feature/ümlaut-support"
            if name not in r.branch_names and name not in r.heads:
                r.branch_names.add(name)
                return name

    @staticmethod
    def _plans(rng: random.Random, n_prs: int) -> list[list[str]]:
        plans: list[list[str]] = [
            ["MERGED"],
            ["DECLINED"],
            ["SUPERSEDED", "MERGED"],
            ["OPEN"],
            ["OPEN"],
        ]
        total = sum(len(p) for p in plans)
        while total < n_prs:
            x = rng.random()
            if x < 0.58:
                p = ["MERGED"]
            elif x < 0.70:
                p = ["DECLINED"]
            elif x < 0.76:
                p = ["SUPERSEDED", "MERGED"]
            elif x < 0.79:
                p = ["SUPERSEDED", "OPEN"]
            elif x < 0.82:
                p = ["DECLINED", "MERGED"]
            else:
                p = ["OPEN"]
            plans.append(p)
            total += len(p)
        rng.shuffle(plans)
        return plans

    def _simulate(self, r: _Repo, n_prs: int, min_commits: int) -> None:
        rng = r.rng
        main = r.mainbranch
        if not r.commits:
            self._commit(r, main, [], rng.choice(r.contributors), "Initial commit", self._tick(r))
        if r.develop:
            r.heads[r.develop] = r.heads[main]
        if r.kind == "fork":
            # A branch meant for a PR into the parent repository.
            b = "feature/upstream-fix"
            r.branch_names.add(b)
            r.upstream_branch = b
            author = r.contributors[1 % len(r.contributors)]
            parent = r.heads[main]
            for k in range(2):
                parent = self._commit(
                    r, b, [parent], author, f"Upstream fix, part {k + 1} 🩹", self._tick(r)
                )
        plans = self._plans(rng, n_prs)
        active: list[_Episode] = []
        release_left = n_prs // 10 if r.develop else 0
        longlived = [main] + ([r.develop] if r.develop else [])
        guard = 0
        while plans or active or len(r.commits) < min_commits:
            guard += 1
            if guard > 20_000:
                break
            if not plans and not active:
                self._push(r, rng.choice(longlived))
                continue
            x = rng.random()
            if plans and len(active) < 4 and ((len(active) < 2 and x < 0.45) or x < 0.08):
                plan = plans.pop()
                dst = r.develop if (r.develop and rng.random() < 0.5) else main
                ep = _Episode(
                    self._branch_name(r), dst, plan, rng.randint(1, 2), self._pick_author(r)
                )
                self._commit(
                    r, ep.branch, [r.heads[dst]], ep.author, self._message(rng), self._tick(r)
                )
                ep.pushed = 1
                active.append(ep)
            elif x < 0.22:
                self._push(r, main if not r.develop or rng.random() < 0.4 else r.develop)
            elif (
                release_left
                and x < 0.26
                and r.develop
                and not any(e.release for e in active)
                and not (r.anc[r.heads[main]] >> r.heads[r.develop]) & 1
            ):
                release_left -= 1
                ep = _Episode(
                    r.develop, main, ["MERGED"], 0, rng.choice(r.contributors), release=True
                )
                active.append(ep)
            elif active:
                self._advance(r, rng.choice(active), active)

    def _push(self, r: _Repo, branch: str) -> None:
        author = self._pick_author(r) if r.rng.random() < 0.9 else None
        self._commit(r, branch, [r.heads[branch]], author, self._message(r.rng), self._tick(r))

    def _open_pr(self, r: _Repo, ep: _Episode) -> _PR:
        rng = r.rng
        pr = _PR(len(r.prs) + 1)
        if ep.release:
            pr.title = f"Release {len(r.prs) + 1}: merge {ep.branch} into {ep.dst}"
        elif ep.title:
            pr.title = ep.title + " (v2)" if not ep.title.endswith("(v2)") else ep.title
        else:
            pr.title = f"{rng.choice(_VERBS)} {rng.choice(_THINGS)}{rng.choice(_SUFFIXES)}"
        ep.title = pr.title
        x = rng.random()
        if x < 0.03:
            pr.description = None
        elif x < 0.13:
            pr.description = ""
        else:
            pr.description = "## Summary\n\n" + rng.choice(_BODIES) + "\n\n- [x] tests\n- [ ] docs"
        pr.author = ep.author
        pr.src_repo = r
        pr.src_branch = ep.branch
        pr.dst_branch = ep.dst
        pr.src_idx = r.heads[ep.branch]
        pr.dst_idx = r.heads[ep.dst]
        pr.created_tick = self._tick(r)
        # (the unicode branch of the big repository always survives, for path-encoding tests)
        pr.close_source_branch = (
            (not ep.release) and rng.random() < 0.7 and "ümlaut" not in ep.branch
        )
        pr.reviewers = rng.sample(
            [u for u in r.contributors if u is not ep.author],
            k=min(rng.randint(0, 3), len(r.contributors) - 1),
        )
        r.prs[pr.id] = pr
        ep.pr = pr
        return pr

    def _close_pr(self, r: _Repo, ep: _Episode, state: str) -> None:
        rng = r.rng
        pr = ep.pr
        assert pr is not None
        pr.state = state
        if state == "MERGED":
            closer = rng.choice(pr.reviewers or r.contributors)
            dst_before = r.heads[ep.dst]
            src = r.heads[ep.branch]
            tick = self._tick(r)
            m = self._commit(
                r,
                ep.dst,
                [dst_before, src],
                closer,
                f"Merged in {ep.branch} (pull request #{pr.id})\n\n{pr.title}",
                tick,
            )
            pr.merge_idx, pr.dst_idx, pr.src_idx = m, dst_before, src
            pr.closed_tick = tick
            pr.closed_by = closer
            if pr.close_source_branch and not ep.release:
                del r.heads[ep.branch]
        else:
            pr.closed_tick = self._tick(r)
            if state == "DECLINED":
                pr.closed_by = rng.choice(pr.reviewers or r.contributors)
                pr.reason = rng.choice(_DECLINE_REASONS)
            else:
                pr.closed_by = pr.author or rng.choice(r.contributors)
            pr.close_source_branch = False
            pr.src_idx = r.heads[ep.branch]
        ep.pr = None

    def _advance(self, r: _Repo, ep: _Episode, active: list[_Episode]) -> None:
        rng = r.rng
        if ep.pr is None:
            if ep.pushed < ep.need:
                self._commit(
                    r, ep.branch, [r.heads[ep.branch]], ep.author, self._message(rng), self._tick(r)
                )
                ep.pushed += 1
            else:
                self._open_pr(r, ep)
            return
        state = ep.plan[0]
        y = rng.random()
        pr = ep.pr
        if state == "OPEN":
            if y < 0.25 and ep.pushed < 5:
                self._commit(
                    r, ep.branch, [r.heads[ep.branch]], ep.author, self._message(rng), self._tick(r)
                )
                ep.pushed += 1
                pr.src_idx = r.heads[ep.branch]
            else:
                pr.draft = rng.random() < 0.25
                pr.queued = (not pr.draft) and rng.random() < 0.08
                ep.plan.pop(0)
                active.remove(ep)
            return
        if state == "SUPERSEDED":
            self._close_pr(r, ep, "SUPERSEDED")
            self._commit(
                r, ep.branch, [r.heads[ep.branch]], ep.author, self._message(rng), self._tick(r)
            )
            ep.pushed += 1
            ep.plan.pop(0)
            self._open_pr(r, ep)
            return
        if not ep.release and y < 0.22 and ep.pushed < 5:
            self._commit(
                r, ep.branch, [r.heads[ep.branch]], ep.author, self._message(rng), self._tick(r)
            )
            ep.pushed += 1
            pr.src_idx = r.heads[ep.branch]
        elif (
            not ep.release
            and not ep.synced
            and y < 0.30
            and not (r.anc[r.heads[ep.branch]] >> r.heads[ep.dst]) & 1
        ):
            ep.synced = True
            self._commit(
                r,
                ep.branch,
                [r.heads[ep.branch], r.heads[ep.dst]],
                ep.author,
                f"Merge branch '{ep.dst}' into {ep.branch}",
                self._tick(r),
            )
            pr.src_idx = r.heads[ep.branch]
            pr.dst_idx = r.heads[ep.dst]
        else:
            self._close_pr(r, ep, state)
            ep.plan.pop(0)
            if ep.plan:
                ep.need = ep.pushed + 1
            else:
                active.remove(ep)

    def _init_fork(self, r: _Repo, parent: _Repo) -> None:
        span = parent.t_end - parent.t_start
        fork_us = parent.t_start + span * 6 // 10
        base_idx = 0
        for _tick, idx in parent.main_history:
            if parent.commits[idx].us <= fork_us:
                base_idx = idx
        inherited = [i for i in range(len(parent.commits)) if (parent.anc[base_idx] >> i) & 1]
        remap: dict[int, int] = {}
        r.mainbranch = parent.mainbranch
        for i in inherited:
            pc = parent.commits[i]
            idx = len(r.commits)
            remap[i] = idx
            c = _C(
                idx, pc.hash, [remap[p] for p in pc.parents], pc.branch, pc.author, pc.message, None
            )
            c.us, c.date_us = pc.us, pc.date_us
            a = 1 << idx
            for p in c.parents:
                a |= r.anc[p]
            r.commits.append(c)
            r.anc.append(a)
            r.by_hash[c.hash] = idx
        r.heads[r.mainbranch] = remap[base_idx]
        r.fork_base_idx = remap[base_idx]
        r.info.parent_full_name = parent.full
        r.created_us = fork_us + 10 * MINUTE
        r.t_start = r.created_us + HOUR

    def _assign_times(self, r: _Repo) -> None:
        rng = r.rng
        total = r.tick + 1
        unit = max(2 * SECOND, (r.t_end - r.t_start) // total)

        def at(tick: int) -> int:
            return r.t_start + tick * unit + rng.randrange(unit // 2)

        for c in r.commits:
            if c.tick is None:
                continue
            c.us = at(c.tick)
            c.date_us = c.us - c.us % SECOND
            if len(c.parents) == 1 and (rng.random() < 0.05 or (r.kind == "big" and c.idx == 10)):
                # Authored earlier than pushed (rebases): dates are not monotonic.
                back = max(rng.randint(2, 120) * HOUR, c.us - r.commits[c.parents[0]].us + HOUR)
                c.date_us = max(r.created_us, c.date_us - back)
                c.date_us -= c.date_us % SECOND
        for pr in r.prs.values():
            pr.created_us = at(pr.created_tick)
            if pr.merge_idx is not None:
                pr.closed_us = r.commits[pr.merge_idx].us
            elif pr.closed_tick is not None:
                pr.closed_us = at(pr.closed_tick)
        r.pushed_us = max(c.us for c in r.commits)

    def _add_upstream_pr(self, fork: _Repo) -> None:
        parent = self._repo_by_name[fork.info.parent_full_name or ""]
        rng = fork.rng
        b = fork.upstream_branch or ""
        pr = _PR(len(parent.prs) + 1)
        pr.title = "Upstream fix from the fork 🍴"
        pr.description = "Contributed from " + fork.full + ".\n\nKeeps the fork in sync."
        pr.author = fork.contributors[1 % len(fork.contributors)]
        pr.src_repo = fork
        pr.src_branch = b
        pr.dst_branch = parent.mainbranch
        pr.src_idx = fork.heads[b]
        pr.dst_idx = parent.heads[parent.mainbranch]
        last_created = max(p.created_us for p in parent.prs.values())
        pr.created_us = (
            max(last_created, fork.commits[pr.src_idx].us) + 45 * MINUTE + rng.randrange(HOUR)
        )
        pr.created_us = min(pr.created_us, _DATA_END_US - 12 * HOUR)
        pr.reviewers = [u for u in parent.contributors[:2] if u is not pr.author]
        parent.prs[pr.id] = pr

    # ----- phase 2: API objects

    def _phase2(self, r: _Repo) -> None:
        rng = r.rng
        ws = r.ws
        p = r.path
        if not r.info.empty:
            self._cols[f"{p}/commits"] = [r.cdicts[i] for i in range(len(r.cdicts) - 1, -1, -1)]
            self._build_branches(r)
            self._build_tags(r)
        self._build_prs(r)
        if not r.info.empty:
            self._build_statuses(r)
        if r.info.pipelines_enabled:
            self._build_pipelines(r)
        self._build_repo_settings(r)

        # The repository object itself.
        lang = r.language
        obj = {
            "type": "repository",
            "full_name": r.full,
            "links": {
                "self": _link(r.api),
                "html": _link(r.web),
                "avatar": r.ref["links"]["avatar"],
                "pullrequests": _link(f"{r.api}/pullrequests"),
                "commits": _link(f"{r.api}/commits"),
                "forks": _link(f"{r.api}/forks"),
                "watchers": _link(f"{r.api}/watchers"),
                "branches": _link(f"{r.api}/refs/branches"),
                "tags": _link(f"{r.api}/refs/tags"),
                "downloads": _link(f"{r.api}/downloads"),
                "source": _link(f"{r.api}/src"),
                "clone": [
                    {
                        "name": "https",
                        "href": f"https://{self.users[0]['nickname']}@bitbucket.org/{r.full}.git",
                    },
                    {"name": "ssh", "href": f"git@bitbucket.org:{r.full}.git"},
                ],
                "hooks": _link(f"{r.api}/hooks"),
            },
            "name": r.info.slug,
            "slug": r.info.slug,
            "description": "" if r.info.empty else f"{r.info.slug} — {rng.choice(_BODIES)}",
            "scm": "git",
            "website": None
            if rng.random() < 0.6
            else f"https://{r.info.slug}.{ws.slug}.example.com",
            "owner": ws.team,
            "workspace": ws.ref,
            "is_private": True,
            "project": ws.project_refs[r.project_key],
            "fork_policy": "allow_forks"
            if r.kind in ("big", "fork")
            else rng.choice(["no_public_forks", "no_forks"]),
            "created_on": _ts(r.created_us),
            "updated_on": _ts(r.pushed_us),
            "size": 0 if r.info.empty else rng.randint(80_000, 60_000_000),
            "language": "" if r.info.empty else lang,
            "uuid": r.info.uuid,
            "mainbranch": None if r.info.empty else {"name": r.mainbranch, "type": "branch"},
            "has_issues": False,
            "has_wiki": False,
        }
        if r.kind == "fork":
            parent = self._repo_by_name[r.info.parent_full_name or ""]
            obj["parent"] = parent.ref
        r.obj = obj
        self._objs[p] = obj

    def _author_obj(self, r: _Repo, user: dict | None, nick_fallback: str = "build-bot") -> dict:
        key = user["uuid"] if user else nick_fallback
        a = r.author_cache.get(key)
        if a is None:
            if user is None:
                a = {"type": "author", "raw": f"{nick_fallback} <{nick_fallback}@example.invalid>"}
            else:
                a = {
                    "type": "author",
                    "raw": f"{user['display_name']} <{user['nickname']}@example.com>",
                    "user": user,
                }
            r.author_cache[key] = a
        return a

    def _commit_dict(self, r: _Repo, c: _C) -> dict:
        h = c.hash
        capi = f"{r.api}/commit/{h}"
        return {
            "type": "commit",
            "hash": h,
            "date": _ts_s(c.date_us),
            "author": self._author_obj(r, c.author),
            "message": c.message,
            "summary": _content(c.message),
            "links": {
                "self": _link(capi),
                "html": _link(f"{r.web}/commits/{h}"),
                "diff": _link(f"{r.api}/diff/{h}"),
                "approve": _link(f"{capi}/approve"),
                "comments": _link(f"{capi}/comments"),
                "statuses": _link(f"{capi}/statuses"),
                "patch": _link(f"{r.api}/patch/{h}"),
            },
            "parents": [self._parent_ref(r, r.commits[q].hash) for q in c.parents],
            "repository": r.ref,
        }

    @staticmethod
    def _parent_ref(r: _Repo, h: str) -> dict:
        return {
            "hash": h,
            "type": "commit",
            "links": {"self": _link(f"{r.api}/commit/{h}"), "html": _link(f"{r.web}/commits/{h}")},
        }

    @staticmethod
    def _ref12(r: _Repo, h: str) -> dict:
        a = h[:12]
        return {
            "hash": a,
            "type": "commit",
            "links": {"self": _link(f"{r.api}/commit/{a}"), "html": _link(f"{r.web}/commits/{a}")},
        }

    def _build_commit_dicts(self, r: _Repo) -> None:
        r.cdicts = []
        for c in r.commits:
            d = self._commit_dict(r, c)
            r.cdicts.append(d)
            self._objs[f"{r.path}/commit/{c.hash}"] = d

    def _branch_dict(self, r: _Repo, name: str, idx: int) -> dict:
        enc = quote(name, safe="/")
        return {
            "name": name,
            "target": r.cdicts[idx],
            "links": {
                "self": _link(f"{r.api}/refs/branches/{enc}"),
                "commits": _link(f"{r.api}/commits/{enc}"),
                "html": _link(f"{r.web}/branch/{enc}"),
            },
            "type": "branch",
            "merge_strategies": [
                "merge_commit",
                "squash",
                "fast_forward",
                "squash_fast_forward",
                "rebase_fast_forward",
                "rebase_merge",
            ],
            "default_merge_strategy": "merge_commit" if r.rng.random() < 0.8 else "squash",
        }

    def _build_branches(self, r: _Repo) -> None:
        out = []
        for name in sorted(r.heads):
            b = self._branch_dict(r, name, r.heads[name])
            out.append(b)
            self._objs[f"{r.path}/refs/branches/{name}"] = b
        self._cols[f"{r.path}/refs/branches"] = out

    def _build_tags(self, r: _Repo) -> None:
        rng = r.rng
        main_commits = [c for c in r.commits if c.branch == r.mainbranch and c.tick is not None]
        step = max(6, len(main_commits) // 8)
        tags = []
        for k, c in enumerate(main_commits[step::step]):
            name = f"v{1 if r.kind != 'fork' else 9}.{k}.{rng.randint(0, 3)}"
            enc = quote(name, safe="")
            annotated = rng.random() < 0.6
            t = {
                "name": name,
                "target": r.cdicts[c.idx],
                "message": f"Release {name} 🎉\n" if annotated else None,
                "date": _ts_s(c.us + rng.randint(1, 50) * MINUTE) if annotated else None,
                "tagger": self._author_obj(r, c.author) if annotated else None,
                "links": {
                    "self": _link(f"{r.api}/refs/tags/{enc}"),
                    "commits": _link(f"{r.api}/commits/{enc}"),
                    "html": _link(f"{r.web}/commits/tag/{enc}"),
                },
                "type": "tag",
            }
            tags.append(t)
        tags.sort(key=lambda t: t["name"])
        for t in tags:
            self._objs[f"{r.path}/refs/tags/{t['name']}"] = t
        self._cols[f"{r.path}/refs/tags"] = tags

    # ----- pull requests

    @staticmethod
    def _spec(r: _Repo, pr: _PR) -> str:
        """The percent-encoded ``{spec}`` of the PR's diff/diffstat links."""
        src = pr.src_repo or r
        return f"{src.full}:{src.commits[pr.src_idx].hash[:12]}%0D{r.commits[pr.dst_idx].hash[:12]}"

    def _pr_links(self, r: _Repo, pr: _PR) -> dict:
        a = f"{r.api}/pullrequests/{pr.id}"
        spec = self._spec(r, pr)
        q = f"?from_pullrequest_id={pr.id}&topic=true"
        return {
            "self": _link(a),
            "html": _link(f"{r.web}/pull-requests/{pr.id}"),
            "commits": _link(f"{a}/commits"),
            "approve": _link(f"{a}/approve"),
            "request-changes": _link(f"{a}/request-changes"),
            "diff": _link(f"{r.api}/diff/{spec}{q}"),
            "diffstat": _link(f"{r.api}/diffstat/{spec}{q}"),
            "comments": _link(f"{a}/comments"),
            "activity": _link(f"{a}/activity"),
            "merge": _link(f"{a}/merge"),
            "decline": _link(f"{a}/decline"),
            "statuses": _link(f"{a}/statuses"),
        }

    def _endpoint(self, repo: _Repo, branch: str, idx: int) -> dict:
        return {
            "branch": {"name": branch},
            "commit": self._ref12(repo, repo.commits[idx].hash),
            "repository": repo.ref,
        }

    def _participants(self, pr: _PR) -> list[dict]:
        entries: dict[str, dict] = {}

        def get(u: dict, role: str) -> dict:
            e = entries.get(u["uuid"])
            if e is None:
                e = {"user": u, "role": role, "approved": False, "state": None, "on": None}
                entries[u["uuid"]] = e
            return e

        for u in pr.reviewers:
            get(u, "REVIEWER")
        for us, kind, u in sorted(pr.votes, key=lambda v: v[0]):
            e = get(u, "PARTICIPANT")
            e["approved"] = kind == "approval"
            e["state"] = "approved" if kind == "approval" else "changes_requested"
            e["on"] = us if e["on"] is None else max(e["on"], us)
        for c in pr.comments:
            u = c["user"]
            if u is None or u.get("account_id") is None:
                continue
            e = get(u, "PARTICIPANT")
            us = pr.comment_us.get(c["id"], 0)
            e["on"] = us if e["on"] is None else max(e["on"], us)
        return [
            {
                "type": "participant",
                "user": e["user"],
                "role": e["role"],
                "approved": e["approved"],
                "state": e["state"],
                "participated_on": _ts(e["on"]) if e["on"] is not None else None,
            }
            for e in entries.values()
        ]

    def _pr_dict(self, r: _Repo, pr: _PR) -> dict:
        src = pr.src_repo or r
        return {
            "type": "pullrequest",
            "id": pr.id,
            "title": pr.title,
            "description": pr.description,
            "summary": _content(pr.description),
            "state": pr.state,
            "draft": pr.draft,
            "queued": pr.queued,
            "author": pr.author,
            "source": self._endpoint(src, pr.src_branch, pr.src_idx),
            "destination": self._endpoint(r, pr.dst_branch, pr.dst_idx),
            "merge_commit": self._ref12(r, r.commits[pr.merge_idx].hash)
            if pr.merge_idx is not None
            else None,
            "comment_count": sum(1 for c in pr.comments if not c["deleted"]),
            "task_count": sum(1 for t in pr.tasks if t["state"] == "UNRESOLVED"),
            "close_source_branch": pr.close_source_branch,
            "closed_by": pr.closed_by,
            "reason": pr.reason,
            "created_on": _ts(pr.created_us),
            "updated_on": _ts(pr.updated_us),
            "links": self._pr_links(r, pr),
            "reviewers": list(pr.reviewers),
            "participants": self._participants(pr),
        }

    def _comment_dict(
        self,
        r: _Repo,
        pr: _PR,
        cid: int,
        created: int,
        updated: int,
        user: dict | None,
        raw: str,
        deleted: bool,
        inline: dict | None,
        parent: dict | None,
        resolution: tuple[int, dict] | None,
    ) -> dict:
        a = f"{r.api}/pullrequests/{pr.id}/comments/{cid}"
        d: dict[str, Any] = {
            "id": cid,
            "type": "pullrequest_comment",
            "created_on": _ts(created),
            "updated_on": _ts(updated),
            "content": _content("" if deleted else raw),
            "user": user,
            "deleted": deleted,
            "pending": False,
            "links": {
                "self": _link(a),
                "html": _link(f"{r.web}/pull-requests/{pr.id}/_/diff#comment-{cid}"),
            },
            "pullrequest": pr.ref,
        }
        if inline is not None:
            d["inline"] = inline
            spec = self._spec(r, pr)
            d["links"]["code"] = _link(f"{r.api}/diff/{spec}?path={quote(inline['path'])}")
        if parent is not None:
            d["parent"] = {
                "id": parent["id"],
                "type": "pullrequest_comment",
                "links": parent["links"],
            }
        if resolution is not None:
            d["resolution"] = {
                "type": "comment_resolution",
                "user": resolution[1],
                "created_on": _ts(resolution[0]),
            }
        return d

    def _task_dict(
        self,
        r: _Repo,
        pr: _PR,
        tid: int,
        created: int,
        creator: dict,
        raw: str,
        resolved: tuple[int, dict] | None,
        comment: dict | None,
    ) -> dict:
        a = f"{r.api}/pullrequests/{pr.id}/tasks/{tid}"
        d: dict[str, Any] = {
            "id": tid,
            "created_on": _ts(created),
            "updated_on": _ts(resolved[0] if resolved else created + 81),
            "state": "RESOLVED" if resolved else "UNRESOLVED",
            "content": {"raw": raw, "markup": "markdown", "html": _render(raw)},
            "creator": creator,
            "pending": False,
            "resolved_on": _ts(resolved[0]) if resolved else None,
            "resolved_by": resolved[1] if resolved else None,
            "links": {
                "self": _link(a),
                "html": _link(f"{r.web}/pull-requests/{pr.id}/_/diff#task-{tid}"),
            },
        }
        if comment is not None:
            d["comment"] = {
                "id": comment["id"],
                "type": "pullrequest_comment",
                "links": comment["links"],
            }
        return d

    def _act_update(
        self, r: _Repo, pr: _PR, state: str, us: int, author: dict | None, reason: str
    ) -> dict:
        src = pr.src_repo or r
        upd: dict[str, Any] = {
            "state": state,
            "draft": pr.draft if state == "OPEN" else False,
            "title": pr.title,
            "description": pr.description,
            "reason": reason,
            "author": author,
            "date": _ts(us),
            "destination": self._endpoint(r, pr.dst_branch, pr.dst_idx),
            "source": self._endpoint(src, pr.src_branch, pr.src_idx),
        }
        if state != "OPEN":
            new = {"MERGED": "fulfilled", "DECLINED": "rejected", "SUPERSEDED": "superseded"}[state]
            upd["changes"] = {"status": {"old": "open", "new": new}}
        return {"update": upd, "pull_request": pr.ref}

    def _add_activity(self, r: _Repo, pr: _PR, us: int, entry: dict) -> None:
        r.act_seq += 1
        pr.activity.append((us, r.act_seq, entry))

    def _activity_list(self, pr: _PR) -> list[dict]:
        return [e for _, _, e in sorted(pr.activity, key=lambda t: (t[0], t[1]), reverse=True)]

    def _repo_activity(self, r: _Repo) -> list[dict]:
        allx = [t for pr in r.prs.values() for t in pr.activity]
        allx.sort(key=lambda t: (t[0], t[1]), reverse=True)
        return [e for _, _, e in allx]

    def _pr_commits(self, r: _Repo, pr: _PR) -> list[dict]:
        src = pr.src_repo or r
        if src is r:
            mask = r.anc[pr.src_idx] & ~r.anc[pr.dst_idx]
        else:
            base = src.fork_base_idx if src.fork_base_idx is not None else 0
            mask = src.anc[pr.src_idx] & ~src.anc[base]
        out = []
        i = mask.bit_length() - 1
        while i >= 0:
            if (mask >> i) & 1:
                out.append(src.cdicts[i])
            i -= 1
        return out

    def _diffstat(self, r: _Repo, pr: _PR, rng: random.Random) -> list[dict]:
        src = pr.src_repo or r
        sh = src.commits[pr.src_idx].hash
        dh = r.commits[pr.dst_idx].hash
        files = rng.sample(_FILES[r.language], k=min(len(_FILES[r.language]), rng.randint(1, 5)))
        out = []
        for f in files:
            x = rng.random()
            status = (
                "modified"
                if x < 0.6
                else "added"
                if x < 0.8
                else "removed"
                if x < 0.9
                else "renamed"
            )
            old_path = f if status != "renamed" else "legacy/" + f

            def cf(path: str, h: str, repo: _Repo) -> dict:
                return {
                    "path": path,
                    "type": "commit_file",
                    "escaped_path": path,
                    "links": {"self": _link(f"{repo.api}/src/{h}/{quote(path)}")},
                }

            out.append(
                {
                    "type": "diffstat",
                    "status": status,
                    "lines_added": 0 if status == "removed" else rng.randint(1, 120),
                    "lines_removed": 0 if status == "added" else rng.randint(0, 80),
                    "old": None if status == "added" else cf(old_path, dh, r),
                    "new": None if status == "removed" else cf(f, sh, src),
                }
            )
        return out

    def _gen_pr_events(
        self, r: _Repo, pr: _PR, rng: random.Random, raw_comments: list, raw_tasks: list
    ) -> None:
        """Random comments, votes and tasks inside the PR's lifetime (times only; ids later)."""
        start = pr.created_us
        end = (
            pr.closed_us
            if pr.closed_us is not None
            else min(pr.created_us + 25 * DAY, _DATA_END_US - HOUR)
        )
        if end - start < 10 * MINUTE:
            return
        pool = [u for u in [*pr.reviewers, pr.author] if u is not None] or r.contributors
        n = rng.choice([0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 6])
        times = sorted(rng.randint(start + MINUTE, end - MINUTE) for _ in range(n))
        files = _FILES[r.language]
        mine: list[dict] = []
        for t in times:
            c: dict[str, Any] = {
                "pr": pr,
                "us": t,
                "user": rng.choice(pool if rng.random() < 0.8 else r.contributors),
                "raw": rng.choice(_COMMENTS),
                "deleted": rng.random() < 0.07,
                "inline": None,
                "parent": None,
                "resolution": None,
            }
            if mine and rng.random() < 0.3:
                c["parent"] = rng.choice(mine)
                c["inline"] = c["parent"]["inline"]
            elif rng.random() < 0.35:
                to = rng.randint(1, 400)
                c["inline"] = {
                    "from": None if rng.random() < 0.5 else max(1, to - rng.randint(0, 5)),
                    "to": to,
                    "path": rng.choice(files),
                }
            edited = rng.random() < 0.15
            c["updated"] = (
                min(end, t + rng.randint(MINUTE, 2 * DAY)) if edited else t + rng.randint(100, 5000)
            )
            if (
                c["inline"] is not None
                and c["parent"] is None
                and not c["deleted"]
                and rng.random() < 0.25
            ):
                c["resolution"] = (
                    min(end, c["updated"] + rng.randint(MINUTE, HOUR)),
                    rng.choice(pool),
                )
            mine.append(c)
            raw_comments.append(c)
        for u in pr.reviewers:
            x = rng.random()
            if x < 0.5:
                pr.votes.append((rng.randint(start + MINUTE, end - MINUTE), "approval", u))
            elif x < 0.65:
                pr.votes.append((rng.randint(start + MINUTE, end - MINUTE), "changes_requested", u))
        if rng.random() < 0.35:
            for _ in range(rng.randint(1, 2)):
                t = rng.randint(start + MINUTE, end - MINUTE)
                resolved = None
                if rng.random() < 0.5:
                    resolved = (rng.randint(t + SECOND, end), rng.choice(pool))
                raw_tasks.append(
                    {
                        "pr": pr,
                        "us": t,
                        "creator": rng.choice(pool),
                        "raw": rng.choice(_TASKS),
                        "resolved": resolved,
                        "comment": next((c for c in mine if c["us"] < t), None)
                        if rng.random() < 0.5
                        else None,
                    }
                )

    def _build_prs(self, r: _Repo) -> None:
        rng = random.Random(f"bb-emu:{self.seed}:prs:{r.full}")
        raw_comments: list[dict] = []
        raw_tasks: list[dict] = []
        if r.kind == "big":
            # Deterministic special values.
            if 7 in r.prs:
                r.prs[
                    7
                ].description = "Contains a NUL byte here: \u0000 (from a pasted binary log)."
            if 2 in r.prs and "🚀" not in r.prs[2].title:
                r.prs[2].title = r.prs[2].title.rstrip() + " 🚀"
            if 4 in r.prs:
                r.prs[4].author = None  # deleted account
        for pr in r.prs.values():
            pr.ref = {
                "type": "pullrequest",
                "id": pr.id,
                "title": pr.title,
                "links": {
                    "self": _link(f"{r.api}/pullrequests/{pr.id}"),
                    "html": _link(f"{r.web}/pull-requests/{pr.id}"),
                },
            }
            self._gen_pr_events(r, pr, rng, raw_comments, raw_tasks)
        if r.kind == "big":
            for c in raw_comments:
                if not c["deleted"]:
                    c["raw"] = "Pasted output:\n\n\u0000\u0000 ✔ done"
                    break
        # Comment and task ids follow creation time across the repository.
        base_c = 200_000_000 + r.idx * 100_000
        raw_comments.sort(key=lambda c: c["us"])
        for c in raw_comments:
            r.comment_seq += 1
            pr = c["pr"]
            parent_d = c["parent"]["dict"] if c["parent"] is not None else None
            d = self._comment_dict(
                r,
                pr,
                base_c + r.comment_seq,
                c["us"],
                c["updated"],
                c["user"],
                c["raw"],
                c["deleted"],
                c["inline"],
                parent_d,
                c["resolution"],
            )
            c["dict"] = d
            pr.comments.append(d)
            pr.comment_us[d["id"]] = c["us"]
        base_t = 9_000_000 + r.idx * 100_000
        raw_tasks.sort(key=lambda t: t["us"])
        for t in raw_tasks:
            r.task_seq += 1
            pr = t["pr"]
            d = self._task_dict(
                r,
                pr,
                base_t + r.task_seq,
                t["us"],
                t["creator"],
                t["raw"],
                t["resolved"],
                t["comment"]["dict"] if t["comment"] is not None else None,
            )
            pr.tasks.append(d)
        comment_times = {id(c["dict"]): c for c in raw_comments}
        for pr in r.prs.values():
            # activity
            self._add_activity(
                r, pr, pr.created_us, self._act_update(r, pr, "OPEN", pr.created_us, pr.author, "")
            )
            latest = [pr.created_us]
            for d in pr.comments:
                c = comment_times[id(d)]
                self._add_activity(r, pr, c["us"], {"comment": d, "pull_request": pr.ref})
                latest.append(c["updated"])
                if c["resolution"] is not None:
                    latest.append(c["resolution"][0])
            for us, kind, u in pr.votes:
                self._add_activity(
                    r,
                    pr,
                    us,
                    {
                        kind: {"date": _ts(us), "user": u, "pullrequest": pr.ref},
                        "pull_request": pr.ref,
                    },
                )
                latest.append(us)
            for t in pr.tasks:
                latest.append(_to_us(parse_timestamp(t["updated_on"])))
            if pr.closed_us is not None:
                self._add_activity(
                    r,
                    pr,
                    pr.closed_us,
                    self._act_update(r, pr, pr.state, pr.closed_us, pr.closed_by, pr.reason),
                )
                latest.append(pr.closed_us)
            pr.updated_us = max(latest)
            pr.commits = self._pr_commits(r, pr)
            self._register_pr(r, pr, rng)
        self._refresh_pr_collections(r)

    def _register_pr(self, r: _Repo, pr: _PR, rng: random.Random) -> None:
        p = f"{r.path}/pullrequests/{pr.id}"
        self._objs[p] = self._pr_dict(r, pr)
        self._cols[f"{p}/comments"] = list(pr.comments)
        for d in pr.comments:
            self._objs[f"{p}/comments/{d['id']}"] = d
        self._cols[f"{p}/tasks"] = list(pr.tasks)
        for t in pr.tasks:
            self._objs[f"{p}/tasks/{t['id']}"] = t
        self._cols[f"{p}/activity"] = self._activity_list(pr)
        self._cols[f"{p}/commits"] = list(pr.commits)
        key = self._diffstat_key(r, pr)
        if key not in self._cols:
            self._cols[key] = self._diffstat(r, pr, rng)
        pr.diffstat_key = key

    @staticmethod
    def _diffstat_key(r: _Repo, pr: _PR) -> str:
        """Decoded collection path of a PR's diffstat (``%0D`` in the href is a CR here)."""
        src = pr.src_repo or r
        sh = src.commits[pr.src_idx].hash[:12]
        return f"{r.path}/diffstat/{src.full}:{sh}\r{r.commits[pr.dst_idx].hash[:12]}"

    def _refresh_pr_collections(self, r: _Repo) -> None:
        self._cols[f"{r.path}/pullrequests"] = [
            self._objs[f"{r.path}/pullrequests/{i}"] for i in sorted(r.prs, reverse=True)
        ]
        self._cols[f"{r.path}/pullrequests/activity"] = self._repo_activity(r)

    # ----- statuses, pipelines, deployments

    def _status_dict(
        self,
        r: _Repo,
        c: _C,
        key: str,
        name: str,
        state: str,
        created: int,
        updated: int,
        rng: random.Random,
    ) -> dict:
        h12 = c.hash[:12]
        return {
            "type": "build",
            "key": key,
            "refname": c.branch,
            "url": f"https://ci.{r.ws.slug}.example.com/{r.info.slug}/{key}/{rng.randint(1, 9999)}",
            "state": state,
            "name": f"{name} #{rng.randint(1, 900)}",
            "description": {
                "SUCCESSFUL": "All checks passed ✅",
                "FAILED": "2 tests failed",
                "INPROGRESS": "Running…",
                "STOPPED": "Stopped by user",
            }[state],
            "created_on": _ts(created),
            "updated_on": _ts(updated),
            "commit": self._ref12(r, c.hash),
            "repository": r.ref,
            "links": {
                "self": _link(f"{r.api}/commit/{h12}/statuses/build/{_enc(key)}"),
                "commit": _link(f"{r.api}/commit/{h12}"),
            },
        }

    def _build_statuses(self, r: _Repo) -> None:
        rng = random.Random(f"bb-emu:{self.seed}:statuses:{r.full}")
        for c in r.commits:
            if c.tick is None or rng.random() > 0.35:
                continue
            out = []
            for key, name in rng.sample(_STATUS_KEYS, rng.randint(1, 2)):
                state = rng.choices(
                    ["SUCCESSFUL", "FAILED", "INPROGRESS", "STOPPED"], [70, 15, 8, 7]
                )[0]
                created = c.us + rng.randint(1, 20) * MINUTE + rng.randrange(SECOND)
                updated = created + (0 if state == "INPROGRESS" else rng.randint(1, 25) * MINUTE)
                s = self._status_dict(r, c, key, name, state, created, updated, rng)
                out.append(s)
                self._objs[f"{r.path}/commit/{c.hash}/statuses/build/{key}"] = s
            self._cols[f"{r.path}/commit/{c.hash}/statuses"] = out

    def _pipeline_ts(self, pl: _Pipeline, us: int | None, salt: int) -> str | None:
        if us is None:
            return None
        if pl.nanos is None:
            return _ts_z(us)
        return _ts_z(us, (pl.nanos + salt * 37) % 1000)

    def _step_state(self, s: dict) -> dict:
        st = s["state"]
        if st == "COMPLETED":
            res = s["result"]
            out: dict[str, Any] = {
                "name": "COMPLETED",
                "type": "pipeline_step_state_completed",
                "result": {"name": res, "type": f"pipeline_step_state_completed_{res.lower()}"},
            }
            if res == "ERROR":
                out["result"]["error"] = {
                    "type": "pipeline_step_error",
                    "key": "agent.build.container.failed",
                    "message": "Container 'build' exceeded memory limit.",
                }
            return out
        return {"name": st, "type": f"pipeline_step_state_{st.lower()}"}

    def _pipeline_state(self, r: _Repo, pl: _Pipeline) -> dict:
        if pl.state == "PENDING":
            return {"name": "PENDING", "type": "pipeline_state_pending"}
        if pl.state == "IN_PROGRESS":
            return {
                "name": "IN_PROGRESS",
                "type": "pipeline_state_in_progress",
                "stage": {"name": "RUNNING", "type": "pipeline_state_in_progress_running"},
            }
        res = pl.result or "SUCCESSFUL"
        result: dict[str, Any] = {"name": res, "type": f"pipeline_state_completed_{res.lower()}"}
        if res == "ERROR":
            result["error"] = {
                "type": "pipeline_error",
                "key": "plan-service.parse.invalid-yaml",
                "message": "There is an error in your bitbucket-pipelines.yml ⚠",
            }
        if res == "STOPPED":
            result["terminator"] = pl.creator
        return {"name": "COMPLETED", "type": "pipeline_state_completed", "result": result}

    def _pipeline_dicts(self, r: _Repo, pl: _Pipeline) -> tuple[dict, list[dict]]:
        c = r.commits[pl.commit_idx]
        used = sum(
            (s["completed_us"] - s["started_us"]) // SECOND
            for s in pl.steps
            if s["started_us"] is not None and s["completed_us"] is not None
        )
        duration = (
            ((pl.completed_us - pl.created_us) // SECOND) if pl.completed_us is not None else None
        )
        obj = {
            "type": "pipeline",
            "uuid": pl.uuid,
            "build_number": pl.build,
            "run_number": 1,
            "creator": pl.creator,
            "repository": r.ref,
            "target": {
                "type": "pipeline_ref_target",
                "ref_type": "branch",
                "ref_name": pl.ref_name,
                "selector": {"type": "branches", "pattern": pl.ref_name}
                if pl.ref_name != r.mainbranch
                else {"type": "default"},
                "commit": {
                    "type": "commit",
                    "hash": c.hash,
                    "links": {
                        "self": _link(f"{r.api}/commit/{c.hash}"),
                        "html": _link(f"{r.web}/commits/{c.hash}"),
                    },
                },
            },
            "trigger": {"name": pl.trigger, "type": f"pipeline_trigger_{pl.trigger.lower()}"},
            "state": self._pipeline_state(r, pl),
            "created_on": self._pipeline_ts(pl, pl.created_us, 0),
            "completed_on": self._pipeline_ts(pl, pl.completed_us, 1),
            "duration_in_seconds": duration,
            "build_seconds_used": used,
            "first_successful": False,
            "expired": False,
            "has_variables": False,
        }
        steps = []
        for k, s in enumerate(pl.steps):
            sd: dict[str, Any] = {
                "type": "pipeline_step",
                "uuid": s["uuid"],
                "name": s["name"],
                "pipeline": {"type": "pipeline", "uuid": pl.uuid},
                "run_number": 1,
                "trigger": {"type": "pipeline_step_trigger_automatic"},
                "state": self._step_state(s),
                "image": s["image"],
                "maxTime": 120,
                "started_on": self._pipeline_ts(pl, s["started_us"], 2 + 2 * k),
                "completed_on": self._pipeline_ts(pl, s["completed_us"], 3 + 2 * k),
                "duration_in_seconds": ((s["completed_us"] - s["started_us"]) // SECOND)
                if s["completed_us"] is not None and s["started_us"] is not None
                else None,
                "build_seconds_used": ((s["completed_us"] - s["started_us"]) // SECOND)
                if s["completed_us"] is not None and s["started_us"] is not None
                else 0,
                "setup_commands": [
                    {"commandType": "user", "name": "umask 000", "command": "umask 000"},
                    {
                        "commandType": "user",
                        "name": "git reset",
                        "command": f"git reset --hard {c.hash}",
                    },
                ],
                "script_commands": [
                    {"commandType": "user", "name": cmd, "command": cmd} for cmd in s["script"]
                ],
                "teardown_commands": [
                    {
                        "commandType": "system",
                        "action": "PROCESS_TEST_REPORTS",
                        "name": "Process Test Reports",
                        "command": 'echo "Processing test reports"',
                    }
                ],
            }
            steps.append(sd)
        return obj, steps

    def _new_steps(
        self, r: _Repo, rng: random.Random, n: int, force_creds: bool = False
    ) -> list[dict]:
        steps = []
        for k in range(n):
            image: dict[str, Any] = {"name": rng.choice(_IMAGES)}
            if force_creds or rng.random() < 0.15:
                tag = f"{rng.randint(1, 9)}.{rng.randint(0, 9)}"
                image = {
                    "name": f"{r.ws.slug}.jfrog.io/ci/builder:{tag}",
                    "username": "ci-bot",
                    "password": f"s3cr3t-{_hex(rng, 24)}",
                    "email": f"ci-bot@{r.ws.slug}.example.com",
                }
                force_creds = False
            steps.append(
                {
                    "uuid": _uuid(rng),
                    "name": _STEP_NAMES[k % len(_STEP_NAMES)],
                    "image": image,
                    "script": ["make", "make test"]
                    if k % 2 == 0
                    else ["npm ci", "npm test -- --ci"],
                    "state": "PENDING",
                    "result": None,
                    "started_us": None,
                    "completed_us": None,
                }
            )
        return steps

    def _run_steps(self, pl: _Pipeline, rng: random.Random, start: int, outcome: str) -> int:
        """Complete the steps of a pipeline from ``start``; returns completion time."""
        t = start
        failed_at = rng.randrange(len(pl.steps)) if outcome != "SUCCESSFUL" else None
        for k, s in enumerate(pl.steps):
            if failed_at is not None and k > failed_at:
                s["state"], s["result"] = "COMPLETED", "NOT_RUN"
                s["started_us"] = s["completed_us"] = None
                continue
            if s["started_us"] is None:
                s["started_us"] = t + rng.randint(2, 30) * SECOND
            t = max(t, s["started_us"]) + rng.randint(20, 400) * SECOND + rng.randrange(SECOND)
            s["completed_us"] = t
            s["state"] = "COMPLETED"
            s["result"] = outcome if failed_at == k else "SUCCESSFUL"
        return t + rng.randint(1, 10) * SECOND

    def _build_pipelines(self, r: _Repo) -> None:
        p = r.path
        if r.info.empty:
            self._cols[f"{p}/pipelines"] = []
            self._cols[f"{p}/deployments"] = []
            self._cols[f"{p}/environments"] = []
            return
        rng = random.Random(f"bb-emu:{self.seed}:pipelines:{r.full}")
        n = 22 if r.kind == "big" else rng.randint(5, 20)
        own = [c for c in r.commits if c.tick is not None]
        chosen = sorted(rng.sample(own, k=min(n, len(own))), key=lambda c: c.us)
        creds_left = 1
        for c in chosen:
            pl = _Pipeline()
            pl.uuid = _uuid(rng)
            pl.build = len(r.pipelines) + 1
            pl.commit_idx = c.idx
            pl.ref_name = c.branch
            pl.created_us = c.us + rng.randint(1, 8) * MINUTE + rng.randrange(SECOND)
            pl.nanos = rng.randrange(1000) if (pl.build == 1 or rng.random() < 0.3) else None
            pl.trigger = "PUSH" if rng.random() < 0.85 else "MANUAL"
            pl.creator = c.author or rng.choice(r.contributors)
            pl.steps = self._new_steps(
                r, rng, rng.randint(1, 4), force_creds=creds_left > 0 and rng.random() < 0.3
            )
            if any("password" in s["image"] for s in pl.steps):
                creds_left = 0
            outcome = rng.choices(["SUCCESSFUL", "FAILED", "ERROR", "STOPPED"], [65, 20, 7, 8])[0]
            pl.state, pl.result = "COMPLETED", outcome
            pl.completed_us = self._run_steps(pl, rng, pl.created_us, outcome)
            r.pipelines.append(pl)
        if creds_left and r.pipelines:
            # Registry credentials on at least one step per repository.
            r.pipelines[0].steps[0]["image"] = self._new_steps(r, rng, 1, force_creds=True)[0][
                "image"
            ]
        # Recent ones: one running, maybe one pending (mutate() completes running ones).
        head = r.heads[r.mainbranch]
        for k, state in enumerate(
            ["IN_PROGRESS", "PENDING"] if rng.random() < 0.5 else ["IN_PROGRESS"]
        ):
            pl = _Pipeline()
            pl.uuid = _uuid(rng)
            pl.build = len(r.pipelines) + 1
            pl.commit_idx = head
            pl.ref_name = r.mainbranch
            pl.created_us = _DATA_END_US - (90 - 30 * k) * MINUTE + rng.randrange(MINUTE)
            pl.nanos = rng.randrange(1000) if k == 0 else None
            pl.trigger = "MANUAL" if k else "PUSH"
            pl.creator = rng.choice(r.contributors)
            pl.steps = self._new_steps(r, rng, rng.randint(2, 3))
            pl.state, pl.result, pl.completed_us = state, None, None
            if state == "IN_PROGRESS":
                s0 = pl.steps[0]
                s0["started_us"] = pl.created_us + 20 * SECOND
                if len(pl.steps) > 2:
                    s0["completed_us"] = s0["started_us"] + 95 * SECOND
                    s0["state"], s0["result"] = "COMPLETED", "SUCCESSFUL"
                    pl.steps[1]["started_us"] = s0["completed_us"] + 3 * SECOND
                    pl.steps[1]["state"] = "IN_PROGRESS"
                    for s in pl.steps[2:]:
                        s["state"] = "READY"
                else:
                    s0["state"] = "IN_PROGRESS"
            r.pipelines.append(pl)
        for pl in r.pipelines:
            self._register_pipeline(r, pl)
        self._cols[f"{p}/pipelines"] = [
            self._objs[f"{p}/pipelines/{pl.uuid}"] for pl in r.pipelines
        ]
        self._build_deployments(r, rng)

    def _register_pipeline(self, r: _Repo, pl: _Pipeline) -> None:
        obj, steps = self._pipeline_dicts(r, pl)
        base = f"{r.path}/pipelines/{pl.uuid}"
        self._objs[base] = obj
        self._cols[f"{base}/steps"] = steps
        for s in steps:
            self._objs[f"{base}/steps/{s['uuid']}"] = s

    def _build_deployments(self, r: _Repo, rng: random.Random) -> None:
        p = r.path
        envs = []
        for rank, (name, etype) in enumerate(
            [("Test", "Test"), ("Staging", "Staging"), ("Production", "Production")]
        ):
            eu = _uuid(rng)
            env = {
                "type": "deployment_environment",
                "uuid": eu,
                "name": name,
                "slug": name.lower(),
                "rank": rank,
                "environment_type": {
                    "type": "deployment_environment_type",
                    "name": etype,
                    "rank": rank,
                },
                "category": {"name": etype},
                "lock": {"type": "deployment_environment_lock_open", "name": "OPEN"},
                "restrictions": {
                    "type": "deployment_restrictions_configuration",
                    "admin_only": rank == 2,
                },
                "hidden": False,
                "environment_lock_enabled": True,
                "deployment_gate_enabled": rank == 2,
                "links": {"self": _link(f"{r.api}/environments/{_enc(eu)}")},
            }
            envs.append(env)
            self._objs[f"{p}/environments/{eu}"] = env
        self._cols[f"{p}/environments"] = envs
        ok = [pl for pl in r.pipelines if pl.state == "COMPLETED" and pl.result == "SUCCESSFUL"]
        deployments = []
        number = 0
        for pl in ok[-rng.randint(1, 4) :]:
            c = r.commits[pl.commit_idx]
            release = {
                "type": "deployment_release",
                "uuid": _uuid(rng),
                "name": f"#{pl.build}",
                "url": f"{r.web}/pipelines/results/{pl.build}",
                "commit": {
                    "type": "commit",
                    "hash": c.hash,
                    "links": {
                        "self": _link(f"{r.api}/commit/{c.hash}"),
                        "html": _link(f"{r.web}/commits/{c.hash}"),
                    },
                },
                "created_on": _ts(pl.created_us),
            }
            t = pl.completed_us or pl.created_us
            for k, env in enumerate(envs):
                number += 1
                du = _uuid(rng)
                step_uuid = pl.steps[-1]["uuid"]
                surl = f"{r.web}/pipelines/results/{pl.build}/steps/{_enc(step_uuid)}"
                x = rng.random()
                if k == 2 and x < 0.35:
                    state: dict[str, Any] = {
                        "type": "deployment_state_undeployed",
                        "name": "UNDEPLOYED",
                        "trigger_url": surl,
                    }
                else:
                    start = t + (k + 1) * rng.randint(2, 30) * MINUTE
                    t = start + rng.randint(1, 9) * MINUTE
                    status = "SUCCESSFUL" if rng.random() < 0.85 else "FAILED"
                    state = {
                        "type": "deployment_state_completed",
                        "name": "COMPLETED",
                        "url": surl,
                        "deployer": pl.creator,
                        "status": {
                            "type": f"deployment_state_completed_status_{status.lower()}",
                            "name": status,
                        },
                        "start_date": _ts(start),
                        "completion_date": _ts(t),
                    }
                dep = {
                    "type": "deployment",
                    "uuid": du,
                    "number": number,
                    "key": _uuid(rng),
                    "version": 1,
                    "state": state,
                    "environment": {"type": "deployment_environment", "uuid": env["uuid"]},
                    "release": release,
                    "step": {"type": "pipeline_step", "uuid": step_uuid},
                }
                deployments.append(dep)
                self._objs[f"{p}/deployments/{du}"] = dep
        if deployments and rng.random() < 0.5:
            # The newest deployment still running.
            last = deployments[-1]
            if last["state"]["name"] == "COMPLETED":
                st = last["state"]
                last["state"] = {
                    "type": "deployment_state_in_progress",
                    "name": "IN_PROGRESS",
                    "url": st["url"],
                    "deployer": st["deployer"],
                    "start_date": st["start_date"],
                }
        self._cols[f"{p}/deployments"] = deployments

    # ----- settings-like collections

    def _build_repo_settings(self, r: _Repo) -> None:
        rng = random.Random(f"bb-emu:{self.seed}:settings:{r.full}")
        p = r.path
        ws = r.ws
        users = r.contributors
        uperms = []
        for u, perm in zip(
            rng.sample(users, k=min(len(users), rng.randint(2, 4))),
            ["admin", "write", "read", "write"],
            strict=False,
        ):
            item = {
                "type": "repository_user_permission",
                "permission": perm,
                "user": u,
                "repository": r.ref,
                "links": {
                    "self": _link(f"{r.api}/permissions-config/users/{_enc(u['account_id'])}")
                },
            }
            uperms.append(item)
            self._objs[f"{p}/permissions-config/users/{u['account_id']}"] = item
        self._cols[f"{p}/permissions-config/users"] = uperms
        gperms = []
        for gslug, perm in [
            ("developers", "write"),
            ("administrators", "admin"),
            ("qa-team", "read"),
        ][: rng.randint(1, 3)]:
            item = {
                "type": "repository_group_permission",
                "permission": perm,
                "group": ws.groups[gslug],
                "repository": r.ref,
                "links": {"self": _link(f"{r.api}/permissions-config/groups/{gslug}")},
            }
            gperms.append(item)
            self._objs[f"{p}/permissions-config/groups/{gslug}"] = item
        self._cols[f"{p}/permissions-config/groups"] = gperms

        restrictions = []
        base_id = 17_000_000 + r.idx * 100
        kinds = [
            ("push", "glob", r.mainbranch, None),
            ("force", "glob", "*", None),
            ("delete", "glob", r.mainbranch, None),
            ("require_approvals_to_merge", "glob", r.mainbranch, 2),
            ("require_passing_builds_to_merge", "branching_model", "", 1),
            ("restrict_merges", "branching_model", "", None),
        ]
        for k, (kind, match, pattern, value) in enumerate(kinds[: rng.randint(3, 6)]):
            rid = base_id + k
            item: dict[str, Any] = {
                "type": "branchrestriction",
                "id": rid,
                "kind": kind,
                "branch_match_kind": match,
                "pattern": pattern,
                "value": value,
                "users": rng.sample(users, k=1) if kind in ("push", "restrict_merges") else [],
                "groups": [ws.groups["administrators"]] if kind == "push" else [],
                "links": {"self": _link(f"{r.api}/branch-restrictions/{rid}")},
            }
            if match == "branching_model":
                item["branch_type"] = rng.choice(["production", "development"])
            restrictions.append(item)
            self._objs[f"{p}/branch-restrictions/{rid}"] = item
        restrictions.sort(key=lambda it: -it["id"])
        self._cols[f"{p}/branch-restrictions"] = restrictions

        reviewers = rng.sample(users, k=min(len(users), rng.randint(1, 2)))
        self._cols[f"{p}/default-reviewers"] = reviewers
        for u in reviewers:
            self._objs[f"{p}/default-reviewers/{u['uuid']}"] = u

        hooks = []
        for k in range(rng.randint(0, 2)):
            hu = _uuid(rng)
            hook = {
                "type": "webhook_subscription",
                "uuid": hu,
                "url": f"https://ci.{ws.slug}.example.com/hooks/{r.info.slug}/{k}",
                "description": ["Jenkins \u2013 build trigger", "Chat notifications 💬"][k % 2],
                "subject_type": "repository",
                "subject": r.ref,
                "active": rng.random() < 0.8,
                "events": sorted(rng.sample(_HOOK_EVENTS, rng.randint(1, 4))),
                "created_at": _ts(r.created_us + rng.randint(1, 40) * DAY + rng.randrange(DAY)),
                "secret_set": rng.random() < 0.5,
                "links": {"self": _link(f"{r.api}/hooks/{_enc(hu)}")},
            }
            hooks.append(hook)
            self._objs[f"{p}/hooks/{hu}"] = hook
        self._cols[f"{p}/hooks"] = hooks

        downloads = []
        if not r.info.empty:
            for k in range(rng.randint(0, 3)):
                name = (
                    f"{r.info.slug}-1.{k}.{rng.randint(0, 9)}.tar.gz"
                    if k != 1
                    else "release notes (français).pdf"
                )
                downloads.append(
                    {
                        "type": "download",
                        "name": name,
                        "size": rng.randint(1_000, 50_000_000),
                        "downloads": rng.randint(0, 500),
                        "created_on": _ts(r.created_us + (k + 1) * 20 * DAY + rng.randrange(DAY)),
                        "user": rng.choice(users),
                        "links": {"self": _link(f"{r.api}/downloads/{quote(name)}")},
                    }
                )
            downloads.sort(key=lambda d: d["created_on"], reverse=True)
        self._cols[f"{p}/downloads"] = downloads

        keys = []
        for k in range(rng.randint(0, 2)):
            kid = 4_000_000 + r.idx * 10 + k
            created = r.created_us + (k + 2) * DAY + rng.randrange(DAY)
            item = {
                "type": "deploy_key",
                "id": kid,
                "key": f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{_hex(rng, 40)}",
                "label": ["ci-deploy", "backup 🗄"][k % 2],
                "comment": f"deploy@{ws.slug}-ci-{k}",
                "created_on": _ts(created),
                "added_on": _ts(created),
                "last_used": _ts(created + rng.randint(1, 100) * DAY)
                if rng.random() < 0.6
                else None,
                "owner": rng.choice(users),
                "repository": r.ref,
                "links": {"self": _link(f"{r.api}/deploy-keys/{kid}")},
            }
            keys.append(item)
            self._objs[f"{p}/deploy-keys/{kid}"] = item
        self._cols[f"{p}/deploy-keys"] = keys

    # ------------------------------------------------------------------ mutation

    def mutate(self) -> MutationSummary:
        """Apply one deterministic batch of changes (see ``MutationSummary``)."""
        with self.lock:
            self._mutations += 1
            m = self._mutations
            rng = random.Random(f"bb-emu:{self.seed}:{self.scale}:mutation:{m}")
            prev = self._clock_us
            new_clock = prev + 5 * MINUTE
            cursor = [prev + SECOND]

            def now() -> int:
                cursor[0] += rng.randint(SECOND, 3 * SECOND) + rng.randrange(SECOND)
                return cursor[0]

            changed: dict[str, list[str]] = {
                k: []
                for k in (
                    "repositories",
                    "projects",
                    "pullrequests",
                    "pullrequest_comments",
                    "pullrequest_activity",
                    "commits",
                    "branches",
                    "branches_deleted",
                    "pipelines",
                    "pipeline_steps",
                    "collections",
                )
            }

            def mark(kind: str, path: str) -> None:
                if path not in changed[kind]:
                    changed[kind].append(path)

            live = [r for r in self._repo_list if not r.info.deleted and not r.info.empty and r.prs]
            touched_prs: dict[str, set[int]] = {}
            if live:
                chosen = rng.sample(live, k=min(3, len(live)))
                merged_once: set[str] = set()
                for r in chosen:
                    ids = sorted(r.prs)
                    open_ids = [i for i in ids if r.prs[i].state == "OPEN"]
                    pool = open_ids if len(open_ids) >= 2 else ids
                    for pid in rng.sample(pool, k=min(rng.randint(2, 3), len(pool))):
                        pr = r.prs[pid]
                        x = rng.random()
                        same_repo = pr.src_repo is r
                        if (
                            pr.state == "OPEN"
                            and same_repo
                            and r.full not in merged_once
                            and x < 0.3
                            and pr.src_branch in r.heads
                        ):
                            merged_once.add(r.full)
                            self._mut_merge(r, pr, now, rng, mark)
                        elif x < 0.55 and pr.reviewers:
                            u = rng.choice(pr.reviewers)
                            us = now()
                            kind = "approval" if rng.random() < 0.75 else "changes_requested"
                            pr.votes.append((us, kind, u))
                            self._add_activity(
                                r,
                                pr,
                                us,
                                {
                                    kind: {"date": _ts(us), "user": u, "pullrequest": pr.ref},
                                    "pull_request": pr.ref,
                                },
                            )
                            pr.updated_us = us
                        else:
                            for _ in range(rng.randint(1, 2)):
                                self._mut_comment(r, pr, now, rng, mark)
                        touched_prs.setdefault(r.full, set()).add(pid)
                # A new PR on a new branch.
                r = chosen[0]
                pr = self._mut_new_pr(r, m, now, rng, mark)
                touched_prs.setdefault(r.full, set()).add(pr.id)
                # New commits on top of a long-lived branch.
                r = chosen[-1]
                branch = r.develop if (r.develop and rng.random() < 0.4) else r.mainbranch
                for _ in range(rng.randint(1, 3)):
                    self._mut_commit(
                        r,
                        branch,
                        [r.heads[branch]],
                        self._pick_author(r) or r.contributors[0],
                        self._message(rng),
                        now(),
                        mark,
                    )
                self._mut_refresh_branch(r, branch, mark)
                self._mut_touch_repo(r, mark)
                # Refresh PR objects, their collections and the repository-level lists.
                for full, pids in touched_prs.items():
                    rr = self._repo_by_name[full]
                    for pid in sorted(pids):
                        self._mut_publish_pr(rr, rr.prs[pid], mark)
                    self._refresh_pr_collections(rr)
                    mark("collections", f"{rr.path}/pullrequests")
                    mark("collections", f"{rr.path}/pullrequests/activity")

            # Pipelines: a new running one, and completion of an older running one.
            enabled = [
                r
                for r in self._repo_list
                if not r.info.deleted and not r.info.empty and r.info.pipelines_enabled
            ]
            if enabled:
                r = rng.choice(enabled)
                running = [
                    (rr, pl) for rr in enabled for pl in rr.pipelines if pl.state == "IN_PROGRESS"
                ]
                pl = _Pipeline()
                pl.uuid = _uuid(rng)
                pl.build = len(r.pipelines) + 1
                pl.commit_idx = r.heads[r.mainbranch]
                pl.ref_name = r.mainbranch
                pl.created_us = now()
                pl.nanos = rng.randrange(1000) if rng.random() < 0.5 else None
                pl.trigger = "PUSH"
                pl.creator = rng.choice(r.contributors)
                pl.steps = self._new_steps(r, rng, rng.randint(2, 3))
                pl.state = "IN_PROGRESS"
                pl.result = None
                pl.steps[0]["state"] = "IN_PROGRESS"
                pl.steps[0]["started_us"] = now()
                r.pipelines.append(pl)
                self._mut_publish_pipeline(r, pl, mark)
                if running:
                    rr, old = running[0]
                    old.state, old.result = "COMPLETED", "SUCCESSFUL"
                    for s in old.steps:
                        if s["state"] == "IN_PROGRESS" and s["started_us"] is None:
                            s["started_us"] = now()
                    t = now()
                    for s in old.steps:
                        if s["completed_us"] is None:
                            if s["started_us"] is None:
                                s["started_us"] = t
                            t = max(t, s["started_us"]) + rng.randint(1, 5) * SECOND
                            s["completed_us"] = t
                            s["state"], s["result"] = "COMPLETED", "SUCCESSFUL"
                    old.completed_us = t + SECOND
                    cursor[0] = max(cursor[0], old.completed_us)
                    self._mut_publish_pipeline(rr, old, mark)

            # A project update.
            projects = [(ws, key) for ws in self._ws for key in ws.projects]
            if projects:
                ws, key = projects[rng.randrange(len(projects))]
                old = ws.projects[key]
                base = (old["description"] or "").split(" — révision ")[0]
                proj = dict(old)
                proj["description"] = f"{base} — révision {m}"
                proj["updated_on"] = _ts(now())
                ws.projects[key] = proj
                path = f"/workspaces/{ws.slug}/projects/{key}"
                self._objs[path] = proj
                self._cols[f"/workspaces/{ws.slug}/projects"] = list(ws.projects.values())
                mark("projects", path)
                mark("collections", f"/workspaces/{ws.slug}/projects")

            if cursor[0] >= new_clock:  # pragma: no cover - guarded by the small batch size
                raise RuntimeError("mutation batch overflowed the clock step")
            self._clock_us = new_clock
            return MutationSummary(
                changed={k: v for k, v in changed.items()},
                clock=_dt(new_clock),
                previous_clock=_dt(prev),
                number=m,
            )

    # ----- mutation helpers

    def _mut_commit(
        self,
        r: _Repo,
        branch: str,
        parents: list[int],
        author: dict,
        message: str,
        us: int,
        mark: Any,
    ) -> int:
        idx = self._commit(r, branch, parents, author, message, None)
        c = r.commits[idx]
        c.us = us
        c.date_us = us - us % SECOND  # still > previous clock: now() starts 1 s after it
        d = self._commit_dict(r, c)
        r.cdicts.append(d)
        path = f"{r.path}/commit/{c.hash}"
        self._objs[path] = d
        self._cols[f"{r.path}/commits"] = [d, *self._cols[f"{r.path}/commits"]]
        r.pushed_us = max(r.pushed_us, us)
        mark("commits", path)
        mark("collections", f"{r.path}/commits")
        return idx

    def _mut_refresh_branch(self, r: _Repo, name: str, mark: Any) -> None:
        path = f"{r.path}/refs/branches/{name}"
        if name in r.heads:
            b = self._branch_dict(r, name, r.heads[name])
            b["default_merge_strategy"] = (self._objs.get(path) or b)["default_merge_strategy"]
            self._objs[path] = b
            mark("branches", path)
        else:
            self._objs.pop(path, None)
            mark("branches_deleted", path)
        self._cols[f"{r.path}/refs/branches"] = [
            self._objs[f"{r.path}/refs/branches/{n}"] for n in sorted(r.heads)
        ]
        mark("collections", f"{r.path}/refs/branches")

    def _mut_touch_repo(self, r: _Repo, mark: Any) -> None:
        obj = dict(r.obj)
        obj["updated_on"] = _ts(r.pushed_us)
        r.obj = obj
        self._objs[r.path] = obj
        self._rebuild_repo_list(r.ws)
        mark("repositories", r.path)
        mark("collections", f"/repositories/{r.ws.slug}")

    def _mut_comment(self, r: _Repo, pr: _PR, now: Any, rng: random.Random, mark: Any) -> None:
        us = now()
        r.comment_seq += 1
        cid = 200_000_000 + r.idx * 100_000 + r.comment_seq
        parent = None
        live = [c for c in pr.comments if not c["deleted"]]
        if live and rng.random() < 0.4:
            parent = rng.choice(live)
        inline = parent.get("inline") if parent else None
        if parent is None and rng.random() < 0.3:
            inline = {
                "from": None,
                "to": rng.randint(1, 300),
                "path": rng.choice(_FILES[r.language]),
            }
        user = rng.choice(
            [u for u in [*pr.reviewers, pr.author] if u is not None] or r.contributors
        )
        d = self._comment_dict(
            r,
            pr,
            cid,
            us,
            us + rng.randint(100, 5000),
            user,
            rng.choice(_COMMENTS),
            False,
            inline,
            parent,
            None,
        )
        pr.comments.append(d)
        pr.comment_us[cid] = us
        self._add_activity(r, pr, us, {"comment": d, "pull_request": pr.ref})
        pr.updated_us = max(pr.updated_us, _to_us(parse_timestamp(d["updated_on"])))
        path = f"{r.path}/pullrequests/{pr.id}/comments/{cid}"
        self._objs[path] = d
        mark("pullrequest_comments", path)

    def _mut_merge(self, r: _Repo, pr: _PR, now: Any, rng: random.Random, mark: Any) -> None:
        closer = rng.choice(pr.reviewers or r.contributors)
        dst_before = r.heads[pr.dst_branch]
        src = r.heads[pr.src_branch]
        us = now()
        m = self._mut_commit(
            r,
            pr.dst_branch,
            [dst_before, src],
            closer,
            f"Merged in {pr.src_branch} (pull request #{pr.id})\n\n{pr.title}",
            us,
            mark,
        )
        pr.state = "MERGED"
        pr.merge_idx, pr.dst_idx, pr.src_idx = m, dst_before, src
        pr.closed_us = us
        pr.closed_by = closer
        pr.draft = False
        pr.queued = False
        pr.updated_us = us
        self._add_activity(r, pr, us, self._act_update(r, pr, "MERGED", us, closer, ""))
        self._mut_refresh_branch(r, pr.dst_branch, mark)
        if pr.close_source_branch:
            del r.heads[pr.src_branch]
            self._mut_refresh_branch(r, pr.src_branch, mark)
        self._mut_touch_repo(r, mark)

    def _mut_new_pr(self, r: _Repo, m: int, now: Any, rng: random.Random, mark: Any) -> _PR:
        name = f"feature/live-change-{m}"
        r.branch_names.add(name)
        author = rng.choice(r.contributors)
        parent = r.heads[r.mainbranch]
        for _ in range(rng.randint(1, 2)):
            parent = self._mut_commit(r, name, [parent], author, self._message(rng), now(), mark)
        self._mut_refresh_branch(r, name, mark)
        self._mut_touch_repo(r, mark)
        pr = _PR(max(r.prs) + 1)
        pr.title = f"{rng.choice(_VERBS)} {rng.choice(_THINGS)} (live {m})"
        pr.description = "Opened during the sync 🔄\n\nSee the commits."
        pr.author = author
        pr.src_repo = r
        pr.src_branch = name
        pr.dst_branch = r.mainbranch
        pr.src_idx = r.heads[name]
        pr.dst_idx = r.heads[r.mainbranch]
        pr.created_us = now()
        pr.updated_us = pr.created_us
        pr.close_source_branch = True
        pr.reviewers = [u for u in r.contributors[:2] if u is not author]
        pr.ref = {
            "type": "pullrequest",
            "id": pr.id,
            "title": pr.title,
            "links": {
                "self": _link(f"{r.api}/pullrequests/{pr.id}"),
                "html": _link(f"{r.web}/pull-requests/{pr.id}"),
            },
        }
        r.prs[pr.id] = pr
        self._add_activity(
            r, pr, pr.created_us, self._act_update(r, pr, "OPEN", pr.created_us, author, "")
        )
        pr.commits = self._pr_commits(r, pr)
        return pr

    def _mut_publish_pr(self, r: _Repo, pr: _PR, mark: Any) -> None:
        p = f"{r.path}/pullrequests/{pr.id}"
        existed = p in self._objs
        rng = random.Random(f"bb-emu:{self.seed}:diffstat:{r.full}:{pr.id}")
        self._objs[p] = self._pr_dict(r, pr)
        mark("pullrequests", p)
        mark("pullrequest_activity", p)
        old_comments = self._cols.get(f"{p}/comments")
        if old_comments is None or len(old_comments) != len(pr.comments):
            self._cols[f"{p}/comments"] = list(pr.comments)
            mark("collections", f"{p}/comments")
        self._cols[f"{p}/activity"] = self._activity_list(pr)
        mark("collections", f"{p}/activity")
        if not existed:
            self._cols[f"{p}/tasks"] = []
            self._cols[f"{p}/commits"] = list(pr.commits)
            for suffix in ("/tasks", "/commits"):
                mark("collections", p + suffix)
        # A merge moves the destination commit, hence the diffstat spec: serve the new one too.
        key = self._diffstat_key(r, pr)
        if key not in self._cols:
            self._cols[key] = self._diffstat(r, pr, rng)
            mark("collections", key)
        pr.diffstat_key = key

    def _mut_publish_pipeline(self, r: _Repo, pl: _Pipeline, mark: Any) -> None:
        base = f"{r.path}/pipelines/{pl.uuid}"
        before = {s["uuid"]: s for s in self._cols.get(f"{base}/steps", [])}
        obj, steps = self._pipeline_dicts(r, pl)
        self._objs[base] = obj
        out = []
        for s in steps:
            old = before.get(s["uuid"])
            if old is not None and old == s:
                out.append(old)  # unchanged step: keep the very same object
                continue
            out.append(s)
            self._objs[f"{base}/steps/{s['uuid']}"] = s
            mark("pipeline_steps", f"{base}/steps/{s['uuid']}")
        self._cols[f"{base}/steps"] = out
        self._cols[f"{r.path}/pipelines"] = [
            self._objs[f"{r.path}/pipelines/{x.uuid}"] for x in r.pipelines
        ]
        mark("pipelines", base)
        mark("collections", f"{r.path}/pipelines")
        mark("collections", f"{base}/steps")
