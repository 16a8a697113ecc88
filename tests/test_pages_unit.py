"""Pages and timestamps: body cleaning, decoding, Bitbucket's error envelopes, following
`next` (tap_bitbucket/pages.py, tap_bitbucket/timestamps.py).

Responses are real `requests.Response` objects whose body is read from memory: these
functions only read a response, so no HTTP (and no mock of requests) is involved.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from singer_sdk.exceptions import RetriableAPIError

from tap_bitbucket.errors import APIError
from tap_bitbucket.pages import (
    BitbucketPaginator,
    clean_body,
    error_message,
    newest_first_stop,
    response_json,
)
from tap_bitbucket.timestamps import format_timestamp, newer_than, parse_timestamp

pytestmark = pytest.mark.unit

API = "https://api.bitbucket.org/2.0"
ORIGIN = ("https", "api.bitbucket.org")
PATH = "/2.0/repositories/acme/api/pipelines"


def response(
    body: Any = None, *, status: int = 200, url: str = API + PATH[4:], reason: str = "OK"
) -> requests.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    made = requests.Response()
    made.status_code, made.url, made.reason = status, url, reason
    made.raw = io.BytesIO(raw)
    made.encoding = "utf-8"
    return made


# ------------------------------------------------------------------ cleaning and decoding


def test_nul_characters_are_stripped_but_an_escaped_backslash_is_text() -> None:
    body = json.dumps({"a": "x\u0000y", "b": "\\u0000 literal"}).encode()
    assert json.loads(clean_body(body)) == {"a": "xy", "b": "\\u0000 literal"}


@pytest.mark.parametrize(
    ("given", "want"),
    [
        ("2024-05-21T01:50:36.611482242Z", "2024-05-21T01:50:36.611482+00:00"),
        ("2024-05-21T01:50:36.6114822+02:00", "2024-05-21T01:50:36.611482+02:00"),
        ("2024-05-21T01:50:36.611482Z", "2024-05-21T01:50:36.611482Z"),  # already fine
        ("2024-05-21T01:50:36Z", "2024-05-21T01:50:36Z"),
    ],
)
def test_fractions_are_cut_to_microseconds(given: str, want: str) -> None:
    cleaned = json.loads(clean_body(json.dumps({"t": given}).encode()))["t"]
    assert cleaned == want
    assert parse_timestamp(cleaned) == parse_timestamp(given)  # the same instant


def test_a_body_is_decoded_once() -> None:
    page = response({"values": [{"id": 1}]})
    first = response_json(page)
    assert first == {"values": [{"id": 1}]}
    assert response_json(page) is first


@pytest.mark.parametrize("body", [b'{"values": [', b"<html>oops</html>", b"[1, 2]"])
def test_a_garbled_body_is_a_retriable_fault_naming_the_path(body: bytes) -> None:
    with pytest.raises(RetriableAPIError) as info:
        response_json(response(body))
    assert PATH in str(info.value)


# ------------------------------------------------------------------ error envelopes


@pytest.mark.parametrize(
    ("body", "want"),
    [
        ({"type": "error", "error": {"message": "Not found", "detail": "no repo"}}, "Not found (no repo)"),
        ({"type": "error", "error": {"message": "Forbidden"}}, "Forbidden"),
        ({"error": "invalid_grant", "error_description": "Bad refresh token"}, "Bad refresh token"),
        (b"Rate limit exceeded\nplease wait", "Rate limit exceeded"),
        (b"", "Too Many Requests"),
        ({"unrelated": True}, "Too Many Requests"),
    ],
)  # fmt: skip
def test_error_message_is_bitbucket_s_own(body: Any, want: str) -> None:
    assert error_message(response(body, status=429, reason="Too Many Requests")) == want


# ------------------------------------------------------------------ pagination


def page(next_link: str | None, values: list[Any] | None = None) -> requests.Response:
    body: dict[str, Any] = {"values": values or []}
    if next_link:
        body["next"] = next_link
    return response(body)


def test_next_is_followed_exactly() -> None:
    link = f"{API}/repositories/acme/api/commits?page=abc%2B&pagelen=100"
    paginator = BitbucketPaginator(ORIGIN)
    assert paginator.has_more(page(link)) and paginator.get_next(page(link)) == link
    assert not paginator.has_more(page(None)) and paginator.get_next(page(None)) is None


@pytest.mark.parametrize(
    "other", ["https://evil.example/2.0/x?page=2", "http://api.bitbucket.org/2.0/x"]
)
def test_a_next_to_another_origin_is_refused(other: str) -> None:
    with pytest.raises(APIError) as info:
        BitbucketPaginator(ORIGIN).get_next(page(other))
    assert "api_url" in str(info.value) and "\n" not in str(info.value)


def test_a_repeated_next_is_refused_instead_of_looping() -> None:
    paginator = BitbucketPaginator(ORIGIN)
    link = f"{API}/repositories/acme/api/commits?page=2"
    paginator.get_next(page(link))
    with pytest.raises(APIError) as info:
        paginator.get_next(page(link))
    assert "already read" in str(info.value)


def test_a_next_back_to_the_first_page_is_refused() -> None:
    """The first request has no `page`; a later `next` to `page=1`, with its parameters
    in another order, is the same page (issue 16)."""
    paginator = BitbucketPaginator(ORIGIN)
    second = page(f"{API}/repositories/acme/api/pullrequests?page=1&pagelen=50&state=OPEN")
    second.url = f"{API}/repositories/acme/api/pullrequests?pagelen=50&state=OPEN&page=2"
    first = page(f"{API}/repositories/acme/api/pullrequests?pagelen=50&state=OPEN&page=2")
    first.url = f"{API}/repositories/acme/api/pullrequests?state=OPEN&pagelen=50"
    assert paginator.get_next(first).endswith("page=2")
    with pytest.raises(APIError) as info:
        paginator.get_next(second)
    assert "already read" in str(info.value)


def test_dropped_parameters_are_restored() -> None:
    """The pipelines list forgets `sort` after page 1 (notes §2.4)."""
    paginator = BitbucketPaginator(ORIGIN, restore_params={"sort": "-created_on"})
    got = paginator.get_next(page(f"{API}/x/pipelines?page=2"))
    assert got == f"{API}/x/pipelines?page=2&sort=-created_on"
    kept = paginator.get_next(page(f"{API}/x/pipelines?page=3&sort=created_on"))
    assert kept == f"{API}/x/pipelines?page=3&sort=created_on"


BOUND = datetime(2024, 3, 1, tzinfo=timezone.utc)


def dated(*offsets_days: float | None) -> list[dict[str, Any]]:
    return [
        {"date": None if d is None else format_timestamp(BOUND + timedelta(days=d))}
        for d in offsets_days
    ]


@pytest.mark.parametrize(
    ("values", "stops"),
    [
        (dated(-1, -2), True),  # the whole page is at or before the bookmark
        (dated(0, -5), True),
        (dated(1, -1), False),  # one newer item: the scan goes on
        (dated(None, -1), True),  # undated items do not count
        (dated(None), False),
        ([], False),
    ],
)
def test_newest_first_scans_stop_after_a_page_past_the_bookmark(
    values: list[dict[str, Any]], stops: bool
) -> None:
    assert newest_first_stop("date", BOUND)(page(None, values)) is stops
    assert newest_first_stop("date", None)(page(None, values)) is False
    assert newest_first_stop(lambda row: row.get("date"), BOUND)(page(None, values)) is stops


def test_stop_after_page_ends_the_paginator() -> None:
    paginator = BitbucketPaginator(ORIGIN, stop_after_page=newest_first_stop("date", BOUND))
    assert not paginator.has_more(page(f"{API}/x?page=2", dated(-1)))
    assert paginator.has_more(page(f"{API}/x?page=2", dated(1)))


# ------------------------------------------------------------------ timestamps


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-21T01:50:36Z",
        "2024-05-21T01:50:36.611482242Z",
        "2024-05-21T03:50:36+02:00",
        "2024-05-21T01:50:36",  # no offset: UTC
        " 2024-05-21T01:50:36z ",
    ],
)
def test_every_bitbucket_form_parses_to_aware_utc(text: str) -> None:
    parsed = parse_timestamp(text)
    assert parsed.tzinfo is not None and parsed.utcoffset() == timedelta(0)
    assert parsed.replace(microsecond=0) == datetime(2024, 5, 21, 1, 50, 36, tzinfo=timezone.utc)
    assert parse_timestamp(format_timestamp(parsed)) == parsed


def test_newer_than_the_bookmark() -> None:
    assert newer_than("2024-03-02T00:00:00Z", BOUND)
    assert not newer_than(format_timestamp(BOUND), BOUND)
    # Undated: cannot be shown to be old, so kept (tests/test_fuzz_server.py found
    # commits, pipelines and projects without a date left out silently).
    assert newer_than(None, BOUND) and newer_than("", BOUND)
    assert newer_than(None, None)  # no bookmark: everything
