"""The workspace and repository listings, each read once per run and shared.

The up-front scope check, the workspaces stream and the repositories stream all need
them; reading them here once costs one listing per workspace instead of two or three.

A listing is what the run depends on, so it is never tolerated (issue 12, bug 2): a 401
or 403 fails the run with one line that names the workspace and the scope to grant,
where a tolerated 403 of a repository's child endpoint only skips that endpoint.

A 403 on one workspace's repository listing is about that workspace, so the run first
finishes what does not depend on it (the other workspaces, with their STATE) and only
then fails, naming it (issue 16): ``refusal()`` is the error the tap raises at the end.
So does any other failure of one workspace's listing (an error status, retries spent,
an answer that is not a page, a row without its keys). A 401 is about the credential
and fails at once.
"""

from __future__ import annotations

import functools
import threading
import typing as t
from http import HTTPStatus
from urllib.parse import urlencode, urlsplit

import requests
from singer_sdk.exceptions import RetriableAPIError

from tap_bitbucket.errors import APIError, AuthError, ConfigError, GaveUp, TapBitbucketError
from tap_bitbucket.pages import BitbucketPaginator, error_message, not_a_page, response_json
from tap_bitbucket.shapes import as_object, check_keys

if t.TYPE_CHECKING:
    from tap_bitbucket.settings import Settings
    from tap_bitbucket.transport import Transport

#: Bitbucket's scope names (OAuth consumers / API tokens) for what each listing needs.
WORKSPACE_SCOPE = "'account' (API tokens: read:workspace:bitbucket)"
REPOSITORY_SCOPE = "'repository' (API tokens: read:repository:bitbucket)"


def workspace_slug(access: dict[str, t.Any]) -> str:
    """The slug of a GET /user/workspaces item (a workspace access, not a workspace)."""
    return str(as_object(access.get("workspace")).get("slug"))


#: What the run needs of each listing's rows (dotted: a field of an object field).
LISTING_KEYS: dict[str, tuple[str, ...]] = {
    "workspaces": ("workspace.slug", "workspace.uuid"),
    "repositories": ("uuid", "full_name"),
}


def _field(row: dict[str, t.Any], dotted: str) -> t.Any:
    value: t.Any = row
    for name in dotted.split("."):
        value = as_object(value).get(name)
    return value


class ListingRefused(AuthError):
    """A 403 on a listing: the credential lacks a scope or access to that workspace."""


class Directory:
    """GET /user/workspaces, /workspaces/{slug} and /repositories/{slug}, cached."""

    def __init__(self, settings: Settings, transport: Transport) -> None:
        self.settings = settings
        self.transport = transport
        self._lock = threading.Lock()
        self._accesses: list[dict[str, t.Any]] | None = None
        self._workspaces: dict[str, dict[str, t.Any]] = {}
        self._repositories: dict[str, list[dict[str, t.Any]]] = {}
        self._updated_on: dict[str, dict[str, t.Any]] = {}
        self._refused: dict[str, TapBitbucketError] = {}

    def accesses(self) -> list[dict[str, t.Any]]:
        """The workspaces the credential can see (GET /workspaces answers 410 since
        CHANGE-2770, notes §1.1; /user/workspaces replaces it)."""
        if self._accesses is None:
            url = self._url("/user/workspaces", pagelen=100)
            self._accesses = self._pages(url, "workspaces", "the workspaces you can see")
        return self._accesses

    def workspace_slugs(self) -> list[str]:
        """The configured workspaces, else every workspace the credential can see."""
        if self.settings.workspaces:
            return list(self.settings.workspaces)
        return [workspace_slug(a) for a in self.accesses()]

    def workspace(self, slug: str) -> dict[str, t.Any]:
        """GET /workspaces/{slug}: a 404 or 403 means a wrong slug, which is bad config."""
        if slug not in self._workspaces:
            response = self._get(self._url(f"/workspaces/{slug}"), "workspaces")
            if response.status_code in (HTTPStatus.NOT_FOUND, HTTPStatus.FORBIDDEN):
                raise ConfigError(
                    "workspaces",
                    f"workspace '{slug}' was not found or is not visible to this credential "
                    f"(HTTP {response.status_code}); check the slug in the workspace URL",
                )
            self._check(response, f"workspace {slug}", WORKSPACE_SCOPE)
            workspace = dict(response_json(response))
            workspace.setdefault("administrator", None)
            self._workspaces[slug] = workspace
        return self._workspaces[slug]

    def repositories(self, slug: str) -> list[dict[str, t.Any]]:
        """Every repository of a workspace (the scope filter is the caller's)."""
        with self._lock:
            cached = self._repositories.get(slug)
            if slug in self._refused:
                return []
        if cached is None:
            url = self._url(f"/repositories/{slug}", pagelen=100)
            try:
                cached = self._pages(url, "repositories", f"the repositories of workspace {slug}")
            except (ListingRefused, APIError) as failed:
                with self._lock:
                    self._refused[slug] = failed
                return []
            with self._lock:
                self._repositories[slug] = cached
        return cached

    def refusal(self) -> TapBitbucketError | None:
        """The error for the workspaces whose repository listing failed, if any: raised
        once the rest of the run is done."""
        with self._lock:
            refused = dict(self._refused)
        if not refused:
            return None
        if len(refused) == 1:
            (only,) = refused.values()
            kind = AuthError if isinstance(only, ListingRefused) else APIError
            return kind(f"{only} The other workspaces were synced.")
        if not all(isinstance(e, ListingRefused) for e in refused.values()):
            first = ", ".join(f"{slug}: {refused[slug]}" for slug in sorted(refused))
            return APIError(
                f"The repository listings of workspaces {', '.join(sorted(refused))} failed "
                f"({first}). The other workspaces were synced."
            )
        return AuthError(
            "Bitbucket refused to list the repositories of workspaces "
            f"{', '.join(sorted(refused))} (HTTP 403); grant the credential the scope "
            f"{REPOSITORY_SCOPE}, or access to those workspaces. The other workspaces "
            "were synced."
        )

    def listed(self) -> dict[str, list[dict[str, t.Any]]]:
        """The repository listings read so far this run, by workspace."""
        with self._lock:
            return dict(self._repositories)

    def repo_updated_on(self, slug: str, repo_uuid: str) -> str | None:
        """The listed ``updated_on`` of a repository (moves on git activity only)."""
        with self._lock:
            index = self._updated_on.get(slug)
        if index is None:
            index = {str(r.get("uuid")): r.get("updated_on") for r in self.repositories(slug)}
            with self._lock:
                self._updated_on[slug] = index
        found = index.get(repo_uuid)
        return str(found) if found else None

    def check_credentials(self) -> None:
        """One cheap authenticated call that fails fast on bad credentials, through the
        same paced, retrying path as every other request (issue 12, bug 6)."""
        try:
            if self.settings.workspaces:
                self.workspace(self.settings.workspaces[0])
                return
            response = self._get(self._url("/user/workspaces", pagelen=10), "connection test")
        except GaveUp as exc:
            if isinstance(exc.last_error, requests.RequestException):
                msg = (
                    f"Cannot reach {self.settings.api_url}: {type(exc.last_error).__name__}. "
                    "Check 'api_url' and the network."
                )
                raise AuthError(msg) from None
            raise
        self._check(response, "the workspaces you can see", WORKSPACE_SCOPE)

    # -- requests --------------------------------------------------------------------

    def _url(self, path: str, **params: t.Any) -> str:
        query = f"?{urlencode(params)}" if params else ""
        return f"{self.settings.api_url}{path}{query}"

    def _get(self, url: str, label: str, *, page: bool = False) -> requests.Response:
        def once() -> requests.Response:
            prepared = requests.Request("GET", url, headers={"Accept": "application/json"})
            response = self.transport.send(prepared.prepare(), label)
            status = response.status_code
            if status == HTTPStatus.TOO_MANY_REQUESTS or status >= 500:
                msg = f"HTTP {status} from {urlsplit(url).path}: {error_message(response)}"
                raise RetriableAPIError(msg, response)
            if response.ok:
                response_json(response)  # an invalid body is retried too
                problem = not_a_page(response) if page else None
                if problem:
                    raise RetriableAPIError(problem, response)
            return response

        return self.transport.retrying(once, label)()

    def _check(self, response: requests.Response, what: str, scope: str) -> None:
        status = response.status_code
        if status == HTTPStatus.UNAUTHORIZED:
            raise self.transport.unauthorized(response)
        if status == HTTPStatus.FORBIDDEN:
            msg = (
                f"Bitbucket refused to list {what} (HTTP 403: {error_message(response)}); "
                f"grant the credential the scope {scope}, or access to that workspace."
            )
            raise ListingRefused(msg)
        if status >= HTTPStatus.BAD_REQUEST:
            msg = (
                f"GET {urlsplit(str(response.url)).path} answered HTTP {status}: "
                f"{error_message(response)}; cannot list {what}."
            )
            raise APIError(msg)

    def _pages(self, url: str, label: str, what: str) -> list[dict[str, t.Any]]:
        scope = REPOSITORY_SCOPE if label == "repositories" else WORKSPACE_SCOPE
        paginator = BitbucketPaginator(self.settings.origin)
        rows: list[dict[str, t.Any]] = []
        link: str | None = url
        keys = LISTING_KEYS[label]
        while link:
            response = self._get(link, label, page=True)
            self._check(response, what, scope)
            values = response_json(response)["values"]
            path = urlsplit(link).path
            for row in values:
                # The rows every stream and plan below is built from (shapes.py); a null
                # nested field reads as missing.
                found = {key: _field(row, key) for key in keys}
                present = {key: value for key, value in found.items() if value is not None}
                check_keys(label, present, keys, functools.partial(str, path))
            rows.extend(values)
            more = paginator.has_more(response) and (values or paginator.continue_if_empty(response))
            link = paginator.get_next(response) if more else None
        return rows
