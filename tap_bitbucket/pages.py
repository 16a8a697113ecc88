"""Bitbucket pages: the body decoded once and cleaned, error envelopes, and pagination.

* pages are fetched by following ``next`` exactly (notes §2.2), never by rebuilding
  parameters, and a ``next`` that leaves the ``api_url`` origin is refused;
* text is stripped of NUL bytes and nanosecond timestamps are cut to microseconds.
"""

from __future__ import annotations

import json
import re
import typing as t
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from singer_sdk.exceptions import RetriableAPIError
from singer_sdk.pagination import BaseAPIPaginator

from tap_bitbucket.errors import APIError
from tap_bitbucket.timestamps import parse_timestamp

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    import requests

# Both are fixed on the raw body, before parsing: two C-speed regex passes instead of a
# recursive walk over every record (which took a sixth of a full sync's CPU).
# A JSON "\u0000" escape preceded by an even number of backslashes is a NUL character.
_JSON_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")
_JSON_NANO_TS = re.compile(rb'"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6})\d+(Z|[+-]\d\d:?\d\d)?"')


def clean_body(raw: bytes) -> bytes:
    """Strip NUL characters from JSON strings and cut sub-microsecond fractions.

    Postgres rejects NUL in text columns, and several targets (and Python < 3.11)
    reject 9-digit fractions such as pipelines' "2024-05-21T01:50:36.611482242Z".
    """
    if b"\\u0000" in raw:
        raw = _JSON_NUL.sub(rb"\1", raw)
    return _JSON_NANO_TS.sub(_fix_fraction, raw)


def _fix_fraction(match: re.Match[bytes]) -> bytes:
    offset = match.group(2) or b""
    return b'"' + match.group(1) + (b"+00:00" if offset == b"Z" else offset) + b'"'


#: Empty pages with a ``next`` followed in a row before the scan fails.
MAX_EMPTY_PAGES = 20


class BitbucketPaginator(BaseAPIPaginator[str | None]):
    """Follows Bitbucket's opaque ``next`` links exactly (notes §2.2).

    * A ``next`` whose origin differs from ``api_url`` is refused, so credentials never
      travel to a host taken from a response (notes §8.7).
    * A ``next`` seen before means the server is looping: fail instead of spinning.
    * ``stop_after_page`` lets newest-first scans end once they are past the bookmark.
    * ``restore_params`` re-adds query parameters that Bitbucket drops from ``next``:
      the pipelines list forgets ``sort`` after page 1 (notes §2.4), and following that
      ``next`` verbatim would silently revert to oldest-first.
    """

    def __init__(
        self,
        origin: tuple[str, str],
        *,
        stop_after_page: Callable[[requests.Response], bool] | None = None,
        restore_params: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(None)
        self._origin = origin
        self._stop_after_page = stop_after_page
        self._restore = dict(restore_params or {})
        self._seen: set[str] = set()
        self._empty_pages = 0

    def continue_if_empty(self, response: requests.Response) -> bool:
        """An empty page that still links to a next one is followed: the SDK's default
        would end the scan there and silently skip the pages after it. Endless empty
        pages (each with a new ``next``, so no loop is seen) fail after
        ``MAX_EMPTY_PAGES`` in a row."""
        if not self.has_more(response):
            return False
        self._empty_pages += 1
        if self._empty_pages > MAX_EMPTY_PAGES:
            msg = (
                f"Bitbucket returned {MAX_EMPTY_PAGES} empty pages in a row from "
                f"{urlsplit(response.url).path}, each with a next page; stopping instead of "
                "following them forever. Re-run the sync; if it repeats, report it to Atlassian."
            )
            raise APIError(msg)
        return True

    def has_more(self, response: requests.Response) -> bool:
        if self._stop_after_page is not None and self._stop_after_page(response):
            return False
        return bool(response_json(response).get("next"))

    def get_next(self, response: requests.Response) -> str | None:
        if response_json(response).get("values"):
            self._empty_pages = 0
        link: str | None = response_json(response).get("next")
        if not link:
            return None
        parts = urlsplit(link)
        if (parts.scheme, parts.netloc) != self._origin:
            msg = (
                f"Refusing to follow a pagination link to {parts.scheme}://{parts.netloc}: "
                f"it is not the configured api_url host ({self._origin[0]}://{self._origin[1]})."
                " Check 'api_url' or the proxy in front of Bitbucket."
            )
            raise APIError(msg)
        if self._restore:
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            missing = {k: v for k, v in self._restore.items() if k not in query}
            if missing:
                extra = urlencode(missing)
                link = urlunsplit(parts._replace(query=f"{parts.query}&{extra}".lstrip("&")))
        # The page just read counts as seen too, so a `next` back to the first page
        # (which was requested without `page`) is caught before its records come again.
        if response.url:
            self._seen.add(_page_key(response.url))
        if _page_key(link) in self._seen:
            msg = (
                f"Bitbucket returned a next page that was already read ({parts.path}); stopping"
                " instead of looping. Re-run the sync; if it repeats, report it to Atlassian."
            )
            raise APIError(msg)
        self._seen.add(_page_key(link))
        return link


def _page_key(url: str) -> str:
    """A page's identity: its path and query parameters in any order, where ``page=1``
    is the same page as no ``page`` (the first request of every list)."""
    parts = urlsplit(url)
    query = sorted(
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if (k, v) != ("page", "1")
    )
    return f"{parts.path}?{urlencode(query)}"


def response_json(response: requests.Response) -> dict[str, t.Any]:
    """The parsed body, decoded once per response (validate_response stores it)."""
    cached = response.__dict__.get("_bb_body")
    if cached is None:
        cached = _decode(response)
        response.__dict__["_bb_body"] = cached
    return t.cast("dict[str, t.Any]", cached)


def _decode(response: requests.Response) -> dict[str, t.Any]:
    try:
        body = json.loads(clean_body(response.content))
    except ValueError as exc:
        # A truncated or garbled body is a transient fault: retried by the backoff policy.
        kind = response.headers.get("Content-Type", "no Content-Type").split(";")[0]
        msg = f"invalid JSON ({kind}) from {urlsplit(response.url).path}: {exc}"
        raise RetriableAPIError(msg, response) from exc
    if not isinstance(body, dict):
        msg = f"unexpected JSON (not an object) from {urlsplit(response.url).path}"
        raise RetriableAPIError(msg, response)
    return body


def not_a_page(response: requests.Response) -> str | None:
    """Why a 200 of a list endpoint is not a page of values (None when it is one).

    An HTML portal or a JSON error envelope sent with 200 by a proxy is a fault to retry
    and then fail on, never a record and never an empty list (issue 16).
    """
    if isinstance(response_json(response).get("values"), list):
        return None
    return (
        f"HTTP 200 from {urlsplit(response.url).path} is not a page of values"
        f" ({error_message(response) or 'no values'})"
    )


def error_message(response: requests.Response) -> str:
    """Bitbucket's own message from the JSON error envelope (notes §6), or the text."""
    try:
        body = json.loads(response.content)
    except ValueError:
        text = response.text.strip().splitlines()
        return text[0][:200] if text else (response.reason or "")
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            detail = err.get("detail")
            message = str(err["message"])
            return f"{message} ({detail})" if detail else message
        if body.get("error_description"):
            return str(body["error_description"])
    return response.reason or ""


def newest_first_stop(
    field: str | Callable[[dict[str, t.Any]], str | None],
    bound: datetime | None,
) -> Callable[[requests.Response], bool]:
    """A stop rule for newest-first scans that ignore `q` (commits, pipelines, activity).

    Stop after a page whose every dated item is at or before ``bound`` (items there were
    emitted by an earlier run): in topological or creation order newer items come
    first, and a whole page past the bound means the rest is older still (notes §8.15).
    """
    getter = (lambda row: row.get(field)) if isinstance(field, str) else field

    def stop(response: requests.Response) -> bool:
        if bound is None:
            return False
        values = response_json(response).get("values") or []
        dates = [getter(v) for v in values]
        dated = [d for d in dates if d]
        return bool(dated) and all(parse_timestamp(d) <= bound for d in dated)

    return stop
