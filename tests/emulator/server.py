"""HTTP side of the Bitbucket Cloud emulator: routing table, pagination, auth, errors, admin.

One `ThreadingHTTPServer` (HTTP/1.1 keep-alive, TCP_NODELAY, every response written with one
`sendall` and a Content-Length) serves three path spaces:

* `/2.0/...`            the REST API (auth required on every path);
* `/site/oauth2/...`    the OAuth 2.0 server (`oauth.py`);
* `/_emulator/...`      admin hooks for tests and the demo (no auth, not logged, not numbered).

The behaviours and their sources are in docs/bitbucket-api-notes.md; the routing table
(`ROUTES`) records, per path template, the pagelen cap, the pagination kind and what happens
to `q` and `sort`. Order of checks for an API request: fault rule -> configured latency ->
auth (401) -> rate limit (429) -> route (404 unknown / 410 removed) -> repository state
(404 deleted, 404 Pipelines disabled, 409 empty) -> 403 permission endpoints for access
tokens -> parameters (400) -> body.

Decisions where Bitbucket's behaviour is not documented (all [U] unless noted):

* `state=MERGED,DECLINED` (comma-joined) is one unknown state: 200 with no PRs (the notes
  say such taps "silently lose" PRs). States are matched case-insensitively. `q` mentioning
  `state` replaces the default OPEN filter; an explicit `state` param still applies.
* `page` beyond the last page: 200 with empty `values`; `page` not an integer >= 1
  (e.g. `2/`): 400 `Invalid page` [O]. Iterator cursors that fail validation: 400 too.
* 409 `Git Repository is empty` on `/commits` and `/refs/branches|tags` of the empty repo.
* 404 on `/pipelines*`, `/deployments*`, `/environments*` of a Pipelines-disabled repo.
* `X-RateLimit-*` headers only for the configured access token and only on
  `/repositories/...` (the scaled `api` group); `X-RateLimit-Limit` is `rate_limit` or
  10000 when unlimited; `X-RateLimit-NearLimit` is true when < 20 % of the window is left
  (never when unlimited). Buckets: API token per e-mail, access token per token, OAuth per
  consumer. Every authenticated API request counts; 401s do not.
* 403 for the access token on `permissions-config` endpoints and
  `/user/workspaces/{w}/permission`; `/user` and `/user/workspaces` answer it normally.
* 410 on the issue tracker with `{"type": "error", "error": {"message": "This feature has
  been removed", ...}}` (the live body was not recorded).
* Repeated single-valued params: the last one wins (Django QueryDict).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import email.utils
import hashlib
import hmac
import json
import re
import socket
import struct
import sys
import threading
import time
import traceback
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import query as Q
from .data import PR_LIST_OMITS
from .faults import FaultInjector, FaultRule, FieldDrift, RateLimiter
from .oauth import EXPIRED_MESSAGE, Credentials, OAuthResponse, OAuthServer, TokenCheck

__all__ = [
    "CHANGE_2770_BODY",
    "ROUTES",
    "ApiServer",
    "RequestLogEntry",
    "Route",
    "match_route",
]

API_PREFIX = "/2.0"
OAUTH_PREFIX = "/site/oauth2"
ADMIN_PREFIX = "/_emulator"
#: What the emulator's access token was created with (it cannot read permissions).
ACCESS_TOKEN_SCOPES = ["repository", "pullrequest", "pipeline", "project", "webhook"]

CHANGE_2770_BODY: dict[str, Any] = {
    "type": "error",
    "error": {
        "message": "CHANGE-2770 - Functionality has been deprecated",
        "detail": "Please read the changelog entry for more details.",
        "data": {
            "announcement_url": "https://developer.atlassian.com/cloud/bitbucket/changelog#CHANGE-2770"
        },
    },
}
RATE_LIMIT_BODY = b"Rate limit for this resource has been exceeded"
#: The query parameter the "empty_page" fault's `next` adds (the emulator ignores it).
EMPTY_PAGE_PARAM = "_emulator_empty"
#: The "html_200" fault's body: what a captive portal or a proxy answers with 200 OK.
MAINTENANCE_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Bitbucket</title></head>\n<body><h1>Down for "
    b"maintenance</h1><p>We'll be back shortly.</p></body></html>\n"
)
EMPTY_REPO_MESSAGE = "Git Repository is empty"
DEFAULT_PAGELEN = 10
SCALED_RATE_LIMIT = 10_000  # X-RateLimit-Limit shown to access tokens when no limit is set
PR_STATES = ("OPEN", "MERGED", "DECLINED", "SUPERSEDED")


# ============================================================================================
# routing table


@dataclass(frozen=True)
class Route:
    """One path template of the API.

    kind: "collection" (paginated, from dataset.collection), "object" (dataset.object),
          "gone" (410), "change2770" (410 with the CHANGE-2770 body), "diffstat_redirect"
          (302 to the diffstat collection).
    pagination: "list" (page/size/previous, `page=N`) or "iterator" (pagelen + opaque next).
    q: "honour" or "ignore" (accepted and silently ignored).
    sort: "honour", "ignore", "reject" (400), "honour_first_page" (honoured, but the `next`
          link drops `sort`: pipelines), "slug_only" (/user/workspaces).
    omit: item fields left out of the collection unless `fields=` adds them back.
    git: answers 409 "Git Repository is empty" on the empty repository.
    pipelines: answers 404 when Pipelines is disabled on the repository.
    permission: 403 for (workspace/repository/project) access tokens.
    """

    template: str
    kind: str = "collection"
    max_pagelen: int = 100
    pagination: str = "list"
    q: str = "honour"
    sort: str = "honour"
    omit: tuple[str, ...] = ()
    pr_state: bool = False
    git: bool = False
    pipelines: bool = False
    permission: bool = False
    natural_sort: tuple[str, ...] = ()  # fields sorted in natural order (refs: name)
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)
    display: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = ""
        pos = 0
        for m in re.finditer(r"\{(\w+)(\*?)\}", self.template):
            pattern += re.escape(self.template[pos : m.start()])
            pattern += f"(?P<{m.group(1)}>.+)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)"
            pos = m.end()
        pattern += re.escape(self.template[pos:])
        object.__setattr__(self, "regex", re.compile(f"^{pattern}$"))
        object.__setattr__(self, "display", self.template.replace("*}", "}"))


_R = "/repositories/{workspace}/{repo_slug}"
_PR = _R + "/pullrequests/{pull_request_id}"
_W = "/workspaces/{workspace}"

# Order matters: literal segments must come before a parameter that would also match them.
ROUTES: tuple[Route, ...] = (
    # --- removed endpoints --------------------------------------------------------------
    Route("/workspaces", kind="change2770"),
    Route("/repositories", kind="change2770"),
    Route("/user/permissions/workspaces", kind="change2770"),
    Route("/user/permissions/repositories", kind="change2770"),
    Route(_R + "/issues", kind="gone"),
    Route(_R + "/issues/{rest*}", kind="gone"),
    Route(_R + "/components", kind="gone"),
    Route(_R + "/components/{rest*}", kind="gone"),
    Route(_R + "/milestones", kind="gone"),
    Route(_R + "/milestones/{rest*}", kind="gone"),
    Route(_R + "/versions", kind="gone"),
    Route(_R + "/versions/{rest*}", kind="gone"),
    # --- user ---------------------------------------------------------------------------
    Route("/user", kind="object"),
    Route("/user/workspaces", q="ignore", sort="slug_only"),
    Route("/user/workspaces/{workspace}/permission", kind="object", permission=True),
    # --- workspaces ---------------------------------------------------------------------
    Route(_W, kind="object"),
    Route(_W + "/members"),
    Route(_W + "/members/{member}", kind="object"),
    Route(_W + "/hooks"),
    Route(_W + "/hooks/{uid}", kind="object"),
    Route(_W + "/projects"),
    Route(_W + "/projects/{project_key}", kind="object"),
    Route(_W + "/projects/{project_key}/default-reviewers"),
    Route(_W + "/projects/{project_key}/permissions-config/users", permission=True),
    Route(
        _W + "/projects/{project_key}/permissions-config/users/{selected_user_id}",
        kind="object",
        permission=True,
    ),
    Route(_W + "/projects/{project_key}/permissions-config/groups", permission=True),
    Route(
        _W + "/projects/{project_key}/permissions-config/groups/{group_slug}",
        kind="object",
        permission=True,
    ),
    Route("/users/{selected_user}", kind="object"),
    # --- repositories -------------------------------------------------------------------
    Route("/repositories/{workspace}"),
    Route(_R, kind="object"),
    Route(_R + "/hooks"),
    Route(_R + "/downloads"),
    Route(_R + "/deploy-keys"),
    Route(_R + "/deploy-keys/{key_id}", kind="object"),
    Route(_R + "/hooks/{uid}", kind="object"),
    Route(_R + "/branch-restrictions"),
    Route(_R + "/branch-restrictions/{id}", kind="object"),
    Route(_R + "/default-reviewers"),
    Route(_R + "/default-reviewers/{target_username}", kind="object"),
    Route(_R + "/permissions-config/users", permission=True),
    Route(_R + "/permissions-config/users/{selected_user_id}", kind="object", permission=True),
    Route(_R + "/permissions-config/groups", permission=True),
    Route(_R + "/permissions-config/groups/{group_slug}", kind="object", permission=True),
    # --- git data -----------------------------------------------------------------------
    Route(_R + "/commits", pagination="iterator", q="ignore", sort="ignore", git=True),
    Route(_R + "/commit/{commit}", kind="object"),
    Route(_R + "/commit/{commit}/statuses"),
    Route(_R + "/commit/{commit}/statuses/build/{key}", kind="object"),
    Route(_R + "/refs/branches", git=True, natural_sort=("name",)),
    Route(_R + "/refs/branches/{name*}", kind="object"),
    Route(_R + "/refs/tags", git=True, natural_sort=("name",)),
    Route(_R + "/refs/tags/{name*}", kind="object"),
    Route(_R + "/diffstat/{spec*}", q="ignore", sort="ignore"),
    # --- pull requests ------------------------------------------------------------------
    Route(_R + "/pullrequests", max_pagelen=50, omit=tuple(PR_LIST_OMITS), pr_state=True),
    Route(_R + "/pullrequests/activity", max_pagelen=50, q="ignore", sort="ignore"),
    Route(_PR, kind="object"),
    Route(_PR + "/activity", max_pagelen=50, q="ignore", sort="ignore"),
    Route(_PR + "/comments"),
    Route(_PR + "/comments/{comment_id}", kind="object"),
    Route(_PR + "/commits", pagination="iterator", q="ignore", sort="ignore"),
    Route(_PR + "/tasks"),
    Route(_PR + "/tasks/{task_id}", kind="object"),
    Route(_PR + "/diffstat", kind="diffstat_redirect"),
    # --- pipelines, deployments ---------------------------------------------------------
    Route(_R + "/pipelines", q="ignore", sort="honour_first_page", pipelines=True),
    Route(_R + "/pipelines/{pipeline_uuid}", kind="object", pipelines=True),
    Route(_R + "/pipelines/{pipeline_uuid}/steps", q="ignore", sort="ignore", pipelines=True),
    Route(_R + "/pipelines/{pipeline_uuid}/steps/{step_uuid}", kind="object", pipelines=True),
    Route(_R + "/deployments", q="ignore", sort="reject", pipelines=True),
    Route(_R + "/deployments/{deployment_uuid}", kind="object", pipelines=True),
    Route(_R + "/environments", q="ignore", sort="ignore", pipelines=True),
    Route(_R + "/environments/{environment_uuid}", kind="object", pipelines=True),
)


def match_route(path: str) -> tuple[Route | None, dict[str, str]]:
    """Match a decoded API path (without `/2.0`) against ROUTES."""
    for route in ROUTES:
        m = route.regex.match(path)
        if m:
            return route, m.groupdict()
    return None, {}


# ============================================================================================
# helpers


def error_body(message: str, detail: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"message": message}
    if detail is not None:
        err["detail"] = detail
    return {"type": "error", "error": err}


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        hdrs = {"Content-Type": "application/json; charset=utf-8"}
        hdrs.update(headers or {})
        return cls(status, json.dumps(payload).encode(), hdrs)

    @classmethod
    def error(cls, status: int, message: str, detail: Any = None) -> Response:
        return cls.json(status, error_body(message, detail))


@dataclass
class RequestLogEntry:
    n: int  # 1-based request number (API + OAuth); the number fault rules' `at` refers to
    method: str
    path: str  # raw request path, e.g. "/2.0/repositories/acme/api/pullrequests"
    query: str  # raw query string
    template: str  # normalised route template ("/repositories/{workspace}/...") or the path
    status: int  # HTTP status sent; 0 when the connection was reset without a response
    auth: str  # api_token | access_token | oauth | client | none | invalid
    timestamp: float  # time.time() at arrival
    duration_ms: float = 0.0
    fault: str | None = None  # fault kind injected, if any
    client: str = ""  # "host:port" of the client socket (one per TCP connection)
    user_agent: str = ""  # the User-Agent header sent (the release tests check the version)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _html_error_page(status: int) -> bytes:
    phrase = _phrase(status)
    return (
        f"<!DOCTYPE html>\n<html><head><title>{status} {phrase}</title></head>\n"
        f"<body><h1>{phrase}</h1><p>The server encountered a temporary error and could not "
        f"complete your request. Please try again in 30 seconds.</p></body></html>\n"
    ).encode()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _Cursor:
    """Opaque, validated iterator cursors.

    A cursor is base64url(MAC(6) + masked(offset(4) + anchor(4))): the offset of the next
    item, a digest of that item's identity (so that a cursor still points at the same
    commit after new commits were pushed on top) and a MAC over the path. The mask makes
    consecutive cursors look unrelated, like Bitbucket's (`?page=dbtR`).
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, path: str, payload: bytes) -> bytes:
        msg = path.encode() + b"|" + payload
        return hmac.new(self._secret, msg, hashlib.sha256).digest()[:6]

    def _mask(self, mac: bytes) -> bytes:
        return hashlib.sha256(self._secret + b"mask" + mac).digest()[:8]

    @staticmethod
    def _anchor(item: Any) -> bytes:
        ident = ""
        if isinstance(item, dict):
            for key in ("hash", "uuid", "id", "name"):
                if key in item:
                    ident = str(item[key])
                    break
        return hashlib.sha256(ident.encode()).digest()[:4]

    def encode(self, path: str, offset: int, item: Any) -> str:
        payload = struct.pack(">I", offset) + self._anchor(item)
        mac = self._mac(path, payload)
        masked = bytes(a ^ b for a, b in zip(payload, self._mask(mac), strict=True))
        return base64.urlsafe_b64encode(mac + masked).decode().rstrip("=")

    def decode(self, path: str, token: str, items: list[Any]) -> int | None:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) != 14:
            return None
        mac, masked = raw[:6], raw[6:]
        payload = bytes(a ^ b for a, b in zip(masked, self._mask(mac), strict=True))
        if not hmac.compare_digest(mac, self._mac(path, payload)):
            return None
        offset = struct.unpack(">I", payload[:4])[0]
        anchor = payload[4:]
        if offset < len(items) and self._anchor(items[offset]) == anchor:
            return offset
        # The collection changed (e.g. new commits on top): find the anchored item again.
        for i, item in enumerate(items):
            if self._anchor(item) == anchor:
                return i
        return min(offset, len(items))


# ============================================================================================
# the server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # without it each keep-alive request waits ~40 ms
    server_version = "nginx"
    sys_version = ""
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def _dispatch(self) -> None:
        self.server.app.handle(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: ApiServer) -> None:
        self.app = app
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that vanish (timeouts, resets, closed keep-alive sockets) are normal here.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def close_all_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class ApiServer:
    """The emulator's request handling. `Emulator` (in `__init__`) owns one of these."""

    def __init__(self, config: Any, dataset: Any, credentials: Credentials) -> None:
        self.config = config
        self.dataset = dataset
        self.credentials = credentials
        self.oauth = OAuthServer(
            credentials, config.token_lifetime_s, refresh_grace_s=config.refresh_grace_s
        )
        self.faults = FaultInjector(list(config.faults or []), seed=config.fault_seed)
        self.rate_limiter = RateLimiter(config.rate_limit, config.rate_limit_window_s)
        # Opt-in payload drift (the drift detector's tests); empty unless configured.
        self.field_drift: list[FieldDrift] = list(getattr(config, "field_drift", None) or [])
        self._revoked: set[str] = set()
        self._log: list[RequestLogEntry] = []
        self.internal_errors: list[str] = []  # tracebacks of emulator bugs (answered 500)
        self._log_lock = threading.Lock()
        self._counter = 0
        self._stop = threading.Event()
        self._cursor = _Cursor(f"emulator-cursor:{config.seed}".encode())
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._stop.clear()
        self._httpd = _HTTPServer((self.config.host, self.config.port), self)
        host, port = self._httpd.server_address[:2]
        self.port = int(port)
        if host in ("0.0.0.0", ""):  # bound to all interfaces: advertise loopback
            host = "127.0.0.1"
        self.base_url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"bitbucket-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()  # wakes sleeping latency/timeout handlers
        httpd = self._httpd
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_all_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    # ---------------------------------------------------------------- log
    def _next_number(self) -> int:
        with self._log_lock:
            self._counter += 1
            return self._counter

    def _record(self, entry: RequestLogEntry) -> None:
        with self._log_lock:
            self._log.append(entry)

    def request_log(self) -> list[RequestLogEntry]:
        with self._log_lock:
            return list(self._log)

    def request_counts(self) -> dict[str, int]:
        with self._log_lock:
            return dict(Counter(entry.template for entry in self._log))

    def reset_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    # ---------------------------------------------------------------- config
    def revoke_token(self, token: str) -> bool:
        known = self.oauth.revoke(token)
        with self._log_lock:
            self._revoked.add(token)
        creds = self.credentials
        return known or token in (creds.api_token, creds.access_token)

    def apply_config(self, changes: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config
        allowed = {
            "latency_ms",
            "rate_limit",
            "rate_limit_window_s",
            "rate_limit_retry_after",
            "token_lifetime_s",
            "refresh_grace_s",
            "callback_url",
            "fault_seed",
            "next_host_override",
            "next_loop",
            "next_loop_back",
        }
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        for key, value in changes.items():
            if key == "callback_url":
                self.oauth.set_callback_url(str(value))
                self.credentials = dataclasses.replace(self.credentials, callback_url=str(value))
            setattr(cfg, key, value)
        if "rate_limit" in changes or "rate_limit_window_s" in changes:
            self.rate_limiter.configure(cfg.rate_limit, cfg.rate_limit_window_s)
        if "token_lifetime_s" in changes:
            self.oauth.set_token_lifetime(cfg.token_lifetime_s)
        if "refresh_grace_s" in changes:
            self.oauth.set_refresh_grace(cfg.refresh_grace_s)
        if "fault_seed" in changes:
            self.faults.reseed(cfg.fault_seed)
        return self.config_dict()

    def config_dict(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "seed": cfg.seed,
            "scale": cfg.scale,
            "latency_ms": cfg.latency_ms,
            "rate_limit": cfg.rate_limit,
            "rate_limit_window_s": cfg.rate_limit_window_s,
            "rate_limit_retry_after": cfg.rate_limit_retry_after,
            "token_lifetime_s": cfg.token_lifetime_s,
            "refresh_grace_s": cfg.refresh_grace_s,
            "callback_url": self.credentials.callback_url,
            "fault_seed": cfg.fault_seed,
            "next_host_override": cfg.next_host_override,
            "next_loop": cfg.next_loop,
            "next_loop_back": cfg.next_loop_back,
        }

    # ================================================================ dispatch
    def handle(self, h: _Handler) -> None:
        started = time.time()
        t0 = time.perf_counter()
        split = urllib.parse.urlsplit(h.path)
        raw_path, raw_query = split.path, split.query
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length > 0 else b""

        if raw_path == ADMIN_PREFIX or raw_path.startswith(ADMIN_PREFIX + "/"):
            self._send(h, self._admin(h.command, raw_path, body))
            return

        is_api = raw_path == API_PREFIX or raw_path.startswith(API_PREFIX + "/")
        is_oauth = raw_path.startswith(OAUTH_PREFIX + "/")
        if not (is_api or is_oauth):
            self._send(h, Response(404, b"Not Found", {"Content-Type": "text/plain"}))
            return

        n = self._next_number()
        entry = RequestLogEntry(
            n=n,
            method=h.command,
            path=raw_path,
            query=raw_query,
            template=raw_path,
            status=0,
            auth="none",
            timestamp=started,
            client="{}:{}".format(*h.client_address[:2]),
            user_agent=h.headers.get("User-Agent") or "",
        )
        recorded = False
        try:
            fault = self.faults.pick(n, raw_path)
            if fault is not None:
                entry.fault = fault.kind
                if fault.sleep_s:
                    self._stop.wait(fault.sleep_s)
            if is_oauth and fault is not None and fault.kind == "reset":
                # The connection drops before the OAuth server acted on the request (no code
                # spent, no token rotated): resetting after a grant would lose tokens that
                # no client could ever learn, which is a different fault ("truncate").
                entry.template = OAUTH_PREFIX + raw_path[len(OAUTH_PREFIX) :].rstrip("/")
                entry.duration_ms = round((time.perf_counter() - t0) * 1000.0, 3)
                self._record(entry)
                recorded = True
                self._reset(h)
                return
            try:
                if is_api:
                    resp = self._api(h, raw_path, raw_query, entry, fault)
                else:
                    resp = self._oauth(h, raw_path, raw_query, body, entry, fault)
            except Exception as exc:  # an emulator bug: make it loud, never a silent 5xx
                tb = traceback.format_exc()
                sys.stderr.write(f"bitbucket emulator: internal error on {h.path}\n{tb}")
                with self._log_lock:
                    self.internal_errors.append(f"{h.command} {h.path}: {exc!r}\n{tb}")
                resp = Response.error(500, "Emulator internal error", repr(exc))
            reset = fault is not None and fault.kind == "reset"
            entry.status = 0 if reset else resp.status
            # Log before answering, so a client that got its answer also finds it in the log.
            entry.duration_ms = round((time.perf_counter() - t0) * 1000.0, 3)
            self._record(entry)
            recorded = True
            if reset:
                self._reset(h)
                return
            self._send(h, resp, truncate=fault is not None and fault.kind == "truncate")
        finally:
            if not recorded:
                entry.duration_ms = round((time.perf_counter() - t0) * 1000.0, 3)
                self._record(entry)

    # ---------------------------------------------------------------- socket output
    def _send(self, h: _Handler, resp: Response, truncate: bool = False) -> None:
        body = b"" if h.command == "HEAD" else resp.body
        lines = [f"HTTP/1.1 {resp.status} {_phrase(resp.status)}"]
        headers = {
            "Server": "nginx",
            "Date": _http_date(),
            "Content-Length": str(len(resp.body)),
        }
        headers.update(resp.headers)
        if truncate:
            headers["Connection"] = "close"
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            if truncate:
                h.wfile.write(head + body[: len(body) // 2])
                h.close_connection = True
            else:
                h.wfile.write(head + body)
        except OSError:
            h.close_connection = True

    @staticmethod
    def _reset(h: _Handler) -> None:
        h.close_connection = True
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
        except OSError:
            pass

    # ---------------------------------------------------------------- faults as responses
    def _fault_response(self, fault: FaultRule) -> Response | None:
        kind = fault.kind
        if kind in ("500", "502", "503", "504", "error"):
            status = fault.status_code
            as_html = fault.body == "html" or (fault.body is None and kind in ("502", "503", "504"))
            if as_html:
                return Response(
                    status, _html_error_page(status), {"Content-Type": "text/html; charset=utf-8"}
                )
            return Response.error(status, "Something went wrong", "Injected fault")
        if kind == "429":
            headers = {"Content-Type": "text/plain"}
            if fault.retry_after is not None:
                headers["Retry-After"] = _num(fault.retry_after)
            return Response(fault.status_code, RATE_LIMIT_BODY, headers)
        if kind == "html_200":
            headers = {"Content-Type": "text/html; charset=utf-8"}
            return Response(200, MAINTENANCE_PAGE, headers)
        if kind == "error_200":
            return Response.error(200, "Something went wrong", "Injected fault")
        return None

    # ================================================================ OAuth
    def _oauth(
        self,
        h: _Handler,
        raw_path: str,
        raw_query: str,
        body: bytes,
        entry: RequestLogEntry,
        fault: FaultRule | None,
    ) -> Response:
        path = raw_path[len(OAUTH_PREFIX) :].rstrip("/")
        entry.template = OAUTH_PREFIX + path
        if fault is not None:
            resp = self._fault_response(fault)
            if resp is not None:
                return resp
            if fault.kind == "revoke" and h.command == "POST":
                # Revoke the refresh token this request presents: the grant then fails
                # with invalid_grant, as it does on Bitbucket for a revoked token.
                form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
                if form.get("refresh_token"):
                    self.revoke_token(form["refresh_token"])
        if path == "/authorize" and h.command == "GET":
            params = dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True))
            return _to_response(self.oauth.authorize(params))
        if path == "/access_token" and h.command == "POST":
            form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
            auth = h.headers.get("Authorization")
            entry.auth = "client" if auth or "client_id" in form else "none"
            resp = _to_response(self.oauth.token(auth, form))
            if resp.status == 401:
                entry.auth = "invalid"
            return resp
        if path in ("/authorize", "/access_token"):
            return Response(405, b"Method Not Allowed", {"Content-Type": "text/plain"})
        return Response(404, b"Not Found", {"Content-Type": "text/plain"})

    # ================================================================ API
    def _authenticate(self, header: str | None) -> tuple[str, str, Response | None]:
        """-> (auth kind, rate-limit bucket, error response or None)."""
        if not header:
            return "none", "", _unauthorized()
        scheme, _, value = header.partition(" ")
        value = value.strip()
        creds = self.credentials
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return "invalid", "", _unauthorized()
            user, _, secret = decoded.partition(":")
            ok = (
                user.casefold() == creds.email.casefold()
                and secret == creds.api_token
                and not self._is_revoked(secret)
            )
            if ok:
                return "api_token", f"user:{creds.email.casefold()}", None
            return "invalid", "", _unauthorized()
        if scheme.lower() == "bearer":
            if value == creds.access_token and not self._is_revoked(value):
                return "access_token", f"access_token:{value}", None
            check = self.oauth.check_access_token(value)
            if check == TokenCheck.OK:
                return "oauth", f"consumer:{creds.oauth_client_id}", None
            if check == TokenCheck.EXPIRED:
                return "invalid", "", Response.error(401, EXPIRED_MESSAGE)
            return "invalid", "", _unauthorized()
        return "invalid", "", _unauthorized()

    def _is_revoked(self, token: str) -> bool:
        with self._log_lock:
            return token in self._revoked

    def _revoke_request_credential(self, header: str | None) -> None:
        if not header:
            return
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "basic":
            try:
                value = base64.b64decode(value).decode("utf-8", "replace").partition(":")[2]
            except (binascii.Error, ValueError):
                return
        self.revoke_token(value)

    def _api(
        self,
        h: _Handler,
        raw_path: str,
        raw_query: str,
        entry: RequestLogEntry,
        fault: FaultRule | None,
    ) -> Response:
        api_path = urllib.parse.unquote(raw_path[len(API_PREFIX) :]) or "/"
        if len(api_path) > 1 and api_path.endswith("/"):
            api_path = api_path[:-1]
        route, params = match_route(api_path)
        if route is not None:
            entry.template = route.display
        else:
            entry.template = api_path

        if fault is not None:
            resp = self._fault_response(fault)
            if resp is not None:
                return resp
            if fault.kind == "revoke":
                self._revoke_request_credential(h.headers.get("Authorization"))
            if fault.kind == "empty_page" and route is not None and route.kind != "object":
                return self._empty_page(raw_path, raw_query)

        if self.config.latency_ms:
            self._stop.wait(self.config.latency_ms / 1000.0)

        auth_kind, bucket, auth_error = self._authenticate(h.headers.get("Authorization"))
        entry.auth = auth_kind
        if auth_error is not None:
            return auth_error

        rl_headers: dict[str, str] = {}
        allowed, used = self.rate_limiter.hit(bucket)
        if auth_kind == "access_token" and api_path.startswith("/repositories/"):
            limit = self.config.rate_limit
            shown = limit if limit is not None else SCALED_RATE_LIMIT
            near = limit is not None and (limit - used) < 0.2 * limit
            rl_headers = {
                "X-RateLimit-Limit": str(shown),
                "X-RateLimit-Resource": "api",
                "X-RateLimit-NearLimit": "true" if near else "false",
            }
        if not allowed:
            headers = {"Content-Type": "text/plain", **rl_headers}
            if self.config.rate_limit_retry_after is not None:
                headers["Retry-After"] = _num(self.config.rate_limit_retry_after)
            return Response(429, RATE_LIMIT_BODY, headers)

        oversized = fault is not None and fault.kind == "oversized_page"
        resp = self._route(h, route, params, api_path, raw_path, raw_query, auth_kind, oversized)
        resp.headers.update(rl_headers)
        return resp

    def _find_repo(self, workspace: str, slug: str) -> Any:
        return self.dataset.repo(f"{workspace}/{slug}")

    def _route(
        self,
        h: _Handler,
        route: Route | None,
        params: dict[str, str],
        api_path: str,
        raw_path: str,
        raw_query: str,
        auth_kind: str,
        oversized: bool = False,
    ) -> Response:
        if h.command not in ("GET", "HEAD"):
            return Response.error(405, f"Method {h.command} not allowed here")
        if route is None:
            return Response.error(404, f"Resource not found: {api_path}")
        if route.kind == "change2770":
            return Response.json(410, CHANGE_2770_BODY)

        if "repo_slug" in params and api_path.startswith("/repositories/"):
            repo = self._find_repo(params["workspace"], params["repo_slug"])
            name = f"{params['workspace']}/{params['repo_slug']}"
            if repo is None or repo.deleted:
                return Response.error(404, f"Repository {name} not found")
            if route.kind == "gone":
                return Response.error(
                    410,
                    "This feature has been removed",
                    "Bitbucket Issues and Wikis were removed on 2026-08-20.",
                )
            if route.pipelines and not repo.pipelines_enabled:
                return Response.error(404, "Not found", "Pipelines is not enabled for " + name)
            if route.git and repo.empty:
                return Response.error(409, EMPTY_REPO_MESSAGE)
        elif route.kind == "gone":
            return Response.error(410, "This feature has been removed")

        if route.permission and auth_kind == "access_token":
            # Bitbucket's scope refusal names what was required and what was granted
            # (backstage/backstage#22383, gildas/bitbucket-cli#56).
            return Response.error(
                403,
                "Your credentials lack one or more required privilege scopes.",
                {"required": ["repository:admin"], "granted": ACCESS_TOKEN_SCOPES},
            )

        query = urllib.parse.parse_qsl(raw_query, keep_blank_values=True)
        single = dict(query)  # last value wins, like Django's QueryDict

        fields_spec = None
        if "fields" in single:
            fields_spec = Q.parse_fields(single["fields"])

        if route.kind == "diffstat_redirect":
            pr_path = api_path[: -len("/diffstat")]
            with self.dataset.lock:
                target = self.dataset.diffstat_target(pr_path)
                if target is None:
                    return Response.error(404, "Pull request not found")
            # `target` is already percent-encoded and carries its query string
            location = self.base_url + API_PREFIX + target
            return Response(302, b"", {"Location": location, "Content-Type": "text/html"})

        if route.kind == "object":
            with self.dataset.lock:
                obj = self.dataset.object(api_path)
                if obj is None and api_path == "/user":
                    obj = self.dataset.user
                if obj is None:
                    return Response.error(404, f"Resource not found: {api_path}")
                if fields_spec is not None:
                    obj = Q.apply_fields(obj, fields_spec)
                return Response.json(200, self._drift(raw_path, obj))

        return self._collection(route, api_path, raw_path, query, single, fields_spec, oversized)

    def _empty_page(self, raw_path: str, raw_query: str) -> Response:
        """The "empty_page" fault: no values, and a `next` to the same request again."""
        query = urllib.parse.parse_qsl(raw_query, keep_blank_values=True)
        previous = dict(query).get(EMPTY_PAGE_PARAM, "0")
        count = int(previous) if previous.isdigit() else 0
        query = [(k, v) for k, v in query if k != EMPTY_PAGE_PARAM]
        query.append((EMPTY_PAGE_PARAM, str(count + 1)))
        link = f"{self.base_url}{raw_path}?{urllib.parse.urlencode(query)}"
        return Response.json(200, {"pagelen": DEFAULT_PAGELEN, "values": [], "next": link})

    def set_field_drift(self, drifts: list[FieldDrift]) -> None:
        self.field_drift = list(drifts)

    def _drift(self, raw_path: str, item: Any) -> Any:
        for drift in self.field_drift:
            if drift.matches(raw_path):
                item = drift.apply(item)
        return item

    # ---------------------------------------------------------------- collections
    def _collection(
        self,
        route: Route,
        api_path: str,
        raw_path: str,
        query: list[tuple[str, str]],
        single: dict[str, str],
        fields_spec: Q.FieldsSpec | None,
        oversized: bool = False,
    ) -> Response:
        # pagelen
        pagelen = DEFAULT_PAGELEN
        if "pagelen" in single:
            try:
                pagelen = int(single["pagelen"])
            except ValueError:
                return Response.error(400, "Invalid pagelen")
            if pagelen < 1 or pagelen > route.max_pagelen:
                return Response.error(400, "Invalid pagelen")

        # q
        compiled = None
        if single.get("q"):
            try:
                compiled = Q.compile_query(single["q"])
            except Q.QueryError as exc:
                return Response.error(400, str(exc))
            if route.q == "ignore":
                compiled = None

        # sort
        sort_key = None
        if "sort" in single:
            if route.sort == "reject":
                return Response.error(400, f"Invalid sort parameter: {single['sort']}")
            try:
                sort_key = Q.parse_sort(single["sort"])
            except Q.QueryError as exc:
                return Response.error(400, str(exc))
            if route.sort == "ignore":
                sort_key = None
            elif route.sort == "slug_only":
                if sort_key[0] != ("slug",):
                    return Response.error(400, f"Invalid sort field: {single['sort']}")
                sort_key = (("workspace", "slug"), sort_key[1])

        with self.dataset.lock:
            items = self.dataset.collection(api_path)
            if items is None:
                return Response.error(404, f"Resource not found: {api_path}")

            if route.pr_state:
                items = _filter_pr_state(items, query, compiled)
            if route.template == "/user/workspaces" and "administrator" in single:
                want = single["administrator"].lower() == "true"
                items = [i for i in items if bool(i.get("administrator")) == want]
            if compiled is not None:
                items = compiled.filter(items)
            if sort_key is not None:
                natural = ".".join(sort_key[0]) in route.natural_sort
                items = Q.sort_items(list(items), sort_key[0], sort_key[1], natural)

            link_query = [(k, v) for k, v in query if k != "page"]
            if route.sort == "honour_first_page":
                link_query = [(k, v) for k, v in link_query if k != "sort"]

            # Test hooks: `next_host_override` sends pagination links to another origin
            # (a misconfigured proxy, or a response trying to leak credentials);
            # `next_loop` makes every page after the first link to itself, `next_loop_back` to
            # page 1 (server bugs).
            link_base = self.config.next_host_override or self.base_url
            requested_page = single.get("page")

            def link(page_value: str) -> str:
                qs = urllib.parse.urlencode([*link_query, ("page", page_value)])
                return f"{link_base}{raw_path}?{qs}"

            envelope: dict[str, Any]
            if route.pagination == "iterator":
                start = 0
                if "page" in single:
                    decoded = self._cursor.decode(api_path, single["page"], items)
                    if decoded is None:
                        return Response.error(400, "Invalid page")
                    start = decoded
                end = len(items) if oversized else start + pagelen
                page_items = items[start:end]
                envelope = {"pagelen": pagelen, "values": page_items}
                if self.config.next_loop and requested_page is not None:
                    envelope["next"] = link(requested_page)
                elif end < len(items):
                    envelope["next"] = link(self._cursor.encode(api_path, end, items[end]))
            else:
                page = 1
                if "page" in single:
                    try:
                        page = int(single["page"])
                    except ValueError:
                        return Response.error(400, "Invalid page")
                    if page < 1:
                        return Response.error(400, "Invalid page")
                start = (page - 1) * pagelen
                end = len(items) if oversized else start + pagelen
                page_items = items[start:end]
                envelope = {
                    "pagelen": pagelen,
                    "size": len(items),
                    "values": page_items,
                    "page": page,
                }
                if self.config.next_loop and page > 1:
                    envelope["next"] = link(str(page))
                elif self.config.next_loop_back and page > 1:
                    envelope["next"] = link("1")
                elif end < len(items):
                    envelope["next"] = link(str(page + 1))
                if page > 1:
                    envelope["previous"] = link(str(page - 1))

            omit = route.omit
            if fields_spec is not None:

                def default() -> dict[str, Any]:
                    out = dict(envelope)
                    out["values"] = [_without(i, omit) for i in page_items]
                    return json.loads(json.dumps(out))

                envelope = Q.apply_fields(envelope, fields_spec, default)
            elif omit:
                envelope["values"] = [_without(i, omit) for i in page_items]
            if self.field_drift and isinstance(envelope.get("values"), list):
                envelope["values"] = [self._drift(raw_path, i) for i in envelope["values"]]
            return Response.json(200, envelope)

    # ================================================================ admin
    def _admin(self, method: str, raw_path: str, body: bytes) -> Response:
        path = raw_path[len(ADMIN_PREFIX) :].rstrip("/")
        try:
            payload = json.loads(body) if body.strip() else None
        except ValueError:
            return Response.json(400, {"error": "request body is not JSON"})
        try:
            return self._admin_dispatch(method, path, payload)
        except (ValueError, TypeError, KeyError) as exc:
            return Response.json(400, {"error": str(exc)})

    def _admin_dispatch(self, method: str, path: str, payload: Any) -> Response:
        if path == "/requests" and method == "GET":
            return Response.json(
                200,
                {
                    "requests": [e.to_dict() for e in self.request_log()],
                    "counts": self.request_counts(),
                },
            )
        if path == "/requests" and method == "DELETE":
            self.reset_log()
            return Response.json(200, {"ok": True})
        if path == "/mutate" and method == "POST":
            return Response.json(200, summary_to_dict(self.dataset.mutate()))
        if path == "/faults" and method == "GET":
            return Response.json(200, [r.to_dict() for r in self.faults.rules])
        if path == "/faults" and method == "POST":
            rules = payload if isinstance(payload, list) else [payload]
            added = [self.faults.add(FaultRule.from_dict(dict(r))) for r in rules]
            return Response.json(200, [r.to_dict() for r in added])
        if path == "/faults" and method == "DELETE":
            self.faults.clear()
            return Response.json(200, {"ok": True})
        if path == "/revoke" and method == "POST":
            return Response.json(200, {"revoked": self.revoke_token(str(payload["token"]))})
        if path == "/add-item" and method == "POST":
            clock = self.dataset.add_item(
                str(payload["path"]), dict(payload["item"]), touch_repo=bool(payload["touch_repo"])
            )
            return Response.json(200, {"clock": clock.isoformat()})
        if path == "/delete-repository" and method == "POST":
            full_name = str(payload["full_name"])
            if not any(r.full_name == full_name for r in self.dataset.repos):
                return Response.json(404, {"error": f"unknown repository {full_name}"})
            self.dataset.delete_repository(full_name)
            return Response.json(200, {"deleted": full_name})
        if path == "/config" and method == "GET":
            return Response.json(200, self.config_dict())
        if path == "/config" and method == "POST":
            return Response.json(200, self.apply_config(dict(payload or {})))
        if path == "/credentials" and method == "GET":
            return Response.json(200, self.credentials_dict())
        return Response.json(404, {"error": f"unknown admin path {method} {path}"})

    def credentials_dict(self) -> dict[str, Any]:
        return {
            "api_url": self.base_url + API_PREFIX,
            "oauth_url": self.base_url + OAUTH_PREFIX,
            "base_url": self.base_url,
            "credentials": self.credentials.to_dict(),
        }


# ============================================================================================
# small helpers


def _unauthorized() -> Response:
    return Response.json(
        401,
        error_body("Unauthorized", "Authentication required: use an API token or access token"),
        {"WWW-Authenticate": 'Basic realm="Bitbucket.org HTTP"'},
    )


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """RFC 7231 date, formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def _num(value: float) -> str:
    return str(int(value)) if float(value) == int(value) else str(value)


def _to_response(resp: OAuthResponse) -> Response:
    return Response(resp.status, resp.body, dict(resp.headers))


def _without(item: Any, omit: tuple[str, ...]) -> Any:
    if not omit or not isinstance(item, dict):
        return item
    return {k: v for k, v in item.items() if k not in omit}


def _filter_pr_state(
    items: list[Any], query: list[tuple[str, str]], compiled: Q.Query | None
) -> list[Any]:
    """OPEN only unless `state` is given (repeatable) or `q` filters on `state`.

    A comma-joined value (`state=MERGED,DECLINED`) is one unknown state: it matches nothing,
    so such a request silently returns an empty list (no multi-select, no error).
    """
    states = [v for k, v in query if k == "state"]
    if not states:
        if compiled is not None and "state" in compiled.fields():
            return items
        states = ["OPEN"]
    wanted = {s.strip().upper() for s in states}
    return [i for i in items if i.get("state") in wanted]


def summary_to_dict(summary: Any) -> Any:
    """A MutationSummary (dataclass) as JSON-ready data; datetimes become ISO strings."""
    if dataclasses.is_dataclass(summary) and not isinstance(summary, type):
        summary = dataclasses.asdict(summary)
    elif hasattr(summary, "to_dict"):
        summary = summary.to_dict()
    return _jsonable(summary)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
