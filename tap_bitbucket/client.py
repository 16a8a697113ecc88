"""The base stream: requests, paging, error policy and record cleaning.

Every stream of the tap derives from :class:`BitbucketStream`. Bitbucket-specific
behaviour lives here once:

* pages are decoded, cleaned and followed by tap_bitbucket/pages.py;
* ``pagelen`` is always the endpoint's maximum (notes §2.3);
* expected errors (404 Pipelines disabled, 409 empty repository, 403 missing scope)
  skip one stream for one repository with one WARNING line;
* any other 4xx fails with one line: status, path, Bitbucket's message;
* a stream's requests can be planned ahead on the prefetch pool (prefetch.py).
"""

from __future__ import annotations

import logging
import typing as t
from http import HTTPStatus
from urllib.parse import urlencode, urlsplit

import requests
from singer_sdk import RESTStream
from singer_sdk.exceptions import RetriableAPIError
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context
from singer_sdk.streams.rest import HTTPRequest, PageContext

from tap_bitbucket.errors import APIError
from tap_bitbucket.gaps import is_scope_refusal, required_scopes
from tap_bitbucket.pages import BitbucketPaginator, error_message, not_a_page, response_json
from tap_bitbucket.schemas import load_schema
from tap_bitbucket.shapes import check_keys, check_timestamp

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from singer_sdk import Tap

    from tap_bitbucket.services import Services

LOGGER = logging.getLogger("tap_bitbucket")


class SkipPartition(Exception):
    """An expected error: skip this stream for this repository (or project)."""

    def __init__(self, status: int, reason: str, *, scopes: list[str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        #: Set when the credential lacks a scope: every partition would answer the same
        #: (gaps.py); the scopes Bitbucket names, possibly none.
        self.scopes = scopes


class BitbucketStream(RESTStream[str | None]):
    """Base stream for Bitbucket Cloud REST API 2.0."""

    #: Largest ``pagelen`` the endpoint accepts (notes §2.3): 100 unless stated.
    page_size: int = 100
    #: Expected statuses that skip this stream for one partition, with the reason.
    tolerated_errors: t.ClassVar[dict[int, str]] = {}
    #: Query parameters that never change between pages.
    static_params: t.ClassVar[dict[str, str | list[str]]] = {}
    #: Schema file name under tap_bitbucket/schemas (defaults to the stream name).
    schema_name: str | None = None
    #: Context keys copied onto every record (the warehouse join keys).
    context_keys: tuple[str, ...] = ()
    #: A slow-changing settings table: read again once per ``admin_refresh_hours``.
    slow_changing: t.ClassVar[bool] = False
    #: Changes only with git activity, which moves the repository's ``updated_on``
    #: (notes §8.11): unread while that has not moved since the last read.
    follows_git: t.ClassVar[bool] = False
    #: A repository stream whose records exist only where this named one, synced
    #: before it in the same run, has records (PR activity needs a PR, a deployment a
    #: pipeline): unread where this run's unfiltered read of that one found nothing.
    records_only_with: t.ClassVar[str | None] = None
    #: Fields of a record that ``get_child_context`` reads besides its primary key.
    child_context_fields: t.ClassVar[tuple[str, ...]] = ()

    # `clean_body()` already strips NUL bytes and normalises timestamps at every depth, so
    # the SDK's recursive conformance pass would only re-walk each record (it took most
    # of the per-record CPU in the speed issue's measurement). Top-level conformance
    # still drops undeclared top-level keys and coerces top-level types.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.ROOT_ONLY

    def __init__(self, tap: Tap) -> None:
        super().__init__(tap=tap, schema=load_schema(self.schema_name or self.name))
        self._session: requests.Session | None = None

    @property
    def services(self) -> Services:
        """What every stream shares: settings, transport, scope, listings, bookmarks.

        The one place a stream reads its tap (issue 12: dependencies point one way);
        the tap builds the services once per sync, on first use.
        """
        return t.cast("Services", self._tap.services)  # type: ignore[attr-defined]

    @property
    def url_base(self) -> str:
        return self.services.settings.api_url

    @property
    def authenticator(self) -> t.Any:
        # One authenticator per tap, shared by every stream and thread.
        return self.services.transport.authenticator

    @property
    def requests_session(self) -> requests.Session:
        if self._session is None:
            self._session = self.services.transport.session(self.name)
        return self._session

    @property
    def http_headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "User-Agent": self.services.transport.user_agent}

    # -- requests --------------------------------------------------------------------

    def paginator_for(self, context: Context | None) -> BitbucketPaginator:
        """A new paginator for ``context``: also used to prefetch, so it reads nothing
        but the context, the settings and the run's starting bookmarks."""
        return BitbucketPaginator(self.services.settings.origin)

    def get_new_paginator(self) -> BitbucketPaginator:
        return self.paginator_for(dict(self.context) if self.context else None)

    def get_url_params(self, context: Context | None, next_page_token: str | None) -> t.Any:
        params: dict[str, t.Any] = {"pagelen": self.page_size}
        params.update(self.static_params)
        return params

    def get_http_request(self, *, page: PageContext[str | None]) -> HTTPRequest:
        if page.next_page_token:
            # Follow `next` exactly: it already carries every original parameter, and
            # re-sending parameters has been answered with 400 (notes §2.2).
            return HTTPRequest(url=page.next_page_token, method="GET", headers=self.http_headers)
        request = super().get_http_request(page=page)
        params = request.params
        if isinstance(params, dict):
            # Repeated keys (state=OPEN&state=MERGED) need doseq; `+` in `fields` must be
            # sent as %2B (notes §3.4), which urlencode does.
            request.url = f"{request.url}?{urlencode(params, doseq=True)}"
            request.params = {}
        return request

    def validate_response(self, response: requests.Response) -> None:
        status = response.status_code
        # Tolerated first: a stream may tolerate a 5xx that is an answer, not a fault
        # (diffstat's 555, no computable diff, notes §8.10); retrying it only delays the
        # failure of the whole run.
        if status in self.tolerated_errors:
            raise SkipPartition(
                status,
                f"{self.tolerated_errors[status]} ({error_message(response)})",
                scopes=self.scope_refusal(response),
            )
        if status == HTTPStatus.TOO_MANY_REQUESTS or status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            # Bitbucket's 429 is text/plain and usually has no Retry-After (notes §4.5).
            msg = f"HTTP {status} from {urlsplit(response.url).path}: {error_message(response)}"
            raise RetriableAPIError(msg, response)
        if status == HTTPStatus.UNAUTHORIZED:
            raise self.services.transport.unauthorized(response)
        if status >= HTTPStatus.BAD_REQUEST:
            path = urlsplit(response.url).path
            hint = _HINTS.get(status, "")
            msg = f"HTTP {status} from GET {path}: {error_message(response)}.{hint}"
            raise APIError(msg)
        # Decoded now, inside the retry policy. Every stream reads a list endpoint.
        problem = not_a_page(response)
        if problem:
            raise RetriableAPIError(problem, response)

    def scope_refusal(self, response: requests.Response) -> list[str] | None:
        """For a tolerated 403 that is about the credential's scopes (gaps.py): the
        scopes Bitbucket names (maybe none); None for any other answer."""
        if response.status_code != HTTPStatus.FORBIDDEN or 403 not in self.tolerated_errors:
            return None
        if not is_scope_refusal(error_message(response)):
            return None
        return required_scopes(response_json(response))

    def request_decorator(self, func: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
        """Retry policy: the transport's (tries for faults, a wait ceiling for 429)."""
        return self.services.transport.retrying(func, self.name)

    def parse_response(self, response: requests.Response) -> Iterable[dict[str, t.Any]]:
        yield from response_json(response)["values"]  # a list: validate_response checked

    # -- prefetching (see tap_bitbucket/prefetch.py) ---------------------------------

    def prefetch(self, context: Context) -> None:
        """Have the worker pool fetch this stream's pages for ``context`` ahead of time.

        The first URL is built exactly as the SDK's request loop will build it, and the
        following pages come from :meth:`paginator_for`, with the SDK's rule that an
        empty page ends the scan.
        """
        transport = self.services.transport
        if not transport.prefetcher.enabled or self.ABORT_AT_RECORD_COUNT is not None:
            return
        if not self.needs_request(context, ahead=True):
            return
        first = self.get_http_request(page=PageContext(stream_context=context, next_page_token=None))
        paginator = self.paginator_for(context)

        def next_page(response: requests.Response) -> str | None:
            body = response_json(response)
            if body.get("values") == [] and not paginator.continue_if_empty(response):
                return None
            link = paginator.get_next(response) if paginator.has_more(response) else None
            return _prepared_url(link) if link else None

        gaps = self.services.gaps

        def fetch(url: str) -> requests.Response | None:
            if gaps.known(self.name):
                return None  # learned meanwhile: the sync will not ask either
            prepared = requests.Request("GET", url, headers=self.http_headers).prepare()
            response = transport.send(prepared, self.name)
            scopes = self.scope_refusal(response)
            if scopes is not None:
                gaps.learn(self.name, describe(context), scopes)
            if response.status_code == HTTPStatus.TOO_MANY_REQUESTS or response.status_code >= 500:
                return None  # not final: the main thread's request retries it
            if response.ok:
                try:
                    response_json(response)  # decoded here, off the main thread
                except RetriableAPIError:
                    return None
            return response

        transport.prefetcher.submit(_prepared_url(first.url), fetch, next_page)

    # -- records ---------------------------------------------------------------------

    def request_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        if not self.needs_request(context):
            return
        records = 0
        try:
            for record in super().request_records(context):
                if self.replication_key:
                    # Before any stream logic compares it with a bookmark (shapes.py).
                    value = self.replication_value(record)
                    check_timestamp(
                        self.name, self.replication_key, value, lambda: self.endpoint(context)
                    )
                records += 1
                yield record
        except SkipPartition as skip:
            if skip.scopes is not None:
                self.services.gaps.learn(self.name, describe(context), skip.scopes)
                return
            warn_skip(self.name, context, skip)
            # A tolerated refusal (Pipelines off, an empty or deleted repository) is an
            # answer: there is nothing here, so a records_only_with stream has nothing.
            records = 0
        self.read_done(context, records)

    # -- what a scheduled run can leave unread (issue 13) -----------------------------

    def needs_request(self, context: Context | None, *, ahead: bool = False) -> bool:
        """Whether this partition must be asked this run.

        Prefetch planning and the start-up plan ask ``ahead`` of the sync; the answer
        is the sync's, from the run's starting bookmarks, except for
        ``records_only_with``: ahead, the starting state predicts that the other
        stream is still empty; the sync also needs this run's own empty read of it, so
        a first pull request or pipeline is followed at once by its activity or
        deployments (unprefetched), and nothing prefetched goes unused.
        """
        services = self.services
        if services.gaps.known(self.name):
            return False
        if not context:
            return True
        partition = self.partition_of(context)
        marks = services.bookmarks
        if self.slow_changing and not marks.refresh_due(self.name, partition):
            return False
        other = self.records_only_with
        if (
            other
            and not self.selected_children()
            and marks.never_had_records(other, partition)
            and (ahead or marks.read_empty(other, partition))
        ):
            return False
        return not (
            self.follows_git
            and not self.selected_children()
            and marks.git_unchanged(self.name, partition, self.repo_updated_on(context))
        )

    def read_done(self, context: Context | None, records: int) -> None:
        """Stamp a whole read (or a tolerated refusal, which is an answer too)."""
        if not context:
            return
        marks = self.services.bookmarks
        marks.note_read(self.name, self.partition_of(context), records)
        if not (self.slow_changing or self.follows_git):
            return
        marks.stamp_read(
            self.get_context_state(context),
            refreshed_at=marks.now if self.slow_changing else None,
            repo_updated_on=self.repo_updated_on(context) if self.follows_git else None,
        )

    def partition_of(self, context: Mapping[str, t.Any]) -> dict[str, t.Any]:
        return self.services.bookmarks.partition_context(context, self.state_partitioning_keys)

    def repo_updated_on(self, context: Mapping[str, t.Any]) -> str | None:
        return self.services.directory.repo_updated_on(
            str(context.get("workspace_slug")), str(context.get("repo_uuid"))
        )

    def replication_value(self, row: dict[str, t.Any]) -> t.Any:
        """The replication key's value in a row as Bitbucket sent it."""
        return row.get(self.replication_key) if self.replication_key else None

    def endpoint(self, context: Context | None) -> str:
        """The path this stream reads for ``context`` (for error lines)."""
        return urlsplit(self.get_url(context)).path

    def post_process(
        self, row: dict[str, t.Any], context: Context | None = None
    ) -> dict[str, t.Any] | None:
        record = self.shape(row, context)
        if record is None:
            return None
        fields = (*self.primary_keys, *self.child_context_fields)
        check_keys(self.name, record, fields, lambda: self.endpoint(context))
        return record

    def shape(self, row: dict[str, t.Any], context: Context | None) -> dict[str, t.Any] | None:
        """The record made from a row: the context's join keys, then the transform."""
        if context:
            for key in self.context_keys:
                if key in context and key not in row:
                    row[key] = context[key]
        record = self.transform(row, context)
        if record is not None and self.replication_key and self.replication_key not in record:
            # Missing is null: the SDK's bookmark update reads the key unconditionally.
            record[self.replication_key] = None
        return record

    def passes_stream_maps(self, row: dict[str, t.Any], context: Context | None) -> bool:
        """Whether the stream maps keep this record (the SDK's own test, before it syncs
        a record's children), checked on a copy before the SDK sees the row."""
        record = self.post_process(dict(row), context)
        return record is not None and bool(self.stream_maps[0].get_filter_result(record))

    def selected_children(self) -> list[BitbucketStream]:
        return [
            t.cast("BitbucketStream", c)
            for c in self.child_streams
            if c.selected or c.has_selected_descendents
        ]

    def transform(self, row: dict[str, t.Any], context: Context | None) -> dict[str, t.Any] | None:
        """Stream-specific shaping after cleaning; return None to drop the row."""
        return row


def _prepared_url(url: str) -> str:
    """The URL as requests sends it (quoted): the key the main thread's request finds."""
    return str(requests.Request("GET", url).prepare().url)


def warn_skip(stream_name: str, context: Mapping[str, t.Any] | None, skip: SkipPartition) -> None:
    """The one WARNING of a tolerated error: the stream, where, the status and why."""
    LOGGER.warning(
        "Skipping stream '%s' for %s: HTTP %s, %s",
        stream_name,
        describe(context),
        skip.status,
        skip.reason,
    )


def describe(context: Mapping[str, t.Any] | None) -> str:
    if not context:
        return "the tap"
    if "repo_slug" in context:
        return f"repository {context.get('workspace_slug')}/{context['repo_slug']}"
    if "project_key" in context:
        return f"project {context.get('workspace_slug')}/{context['project_key']}"
    if "workspace_slug" in context:
        return f"workspace {context['workspace_slug']}"
    return str(dict(context))



_HINTS = {
    403: " The credential lacks a scope or admin rights for this resource.",
    404: " Check the workspace and repository names.",
}
