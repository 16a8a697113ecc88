"""Streams in-process: the status-to-outcome mapping of `validate_response`, the one
WARNING line of a tolerated error, and the record transforms (join keys, derived keys,
redaction). The tap is built in-process on an unreachable api_url: nothing here sends a
request.

Each stream's tolerated statuses and reasons come from its class (`tolerated_errors`),
so these tests hold for every stream of the registry, not for a hand-kept list.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from singer_sdk.exceptions import RetriableAPIError

from tap_bitbucket.client import BitbucketStream, SkipPartition, warn_skip
from tap_bitbucket.errors import APIError, AuthError
from tap_bitbucket.streams import STREAM_TYPES
from tap_bitbucket.tap import TapBitbucket
from tests.harness import parse_skip

pytestmark = pytest.mark.unit

API = "http://127.0.0.1:9/2.0"
REPO = {"workspace_slug": "acme", "repo_slug": "api", "repo_uuid": "{r-1}"}
ENVELOPE = {"type": "error", "error": {"message": "Bitbucket says no"}}


@pytest.fixture(scope="module")
def streams() -> Iterator[dict[str, BitbucketStream]]:
    tap = TapBitbucket(
        config={"api_url": API, "username": "me@example.com", "api_token": "ATATT-unit"},
        setup_mapper=False,
    )
    yield {name: stream for name, stream in tap.streams.items()}  # type: ignore[misc]
    tap.services.transport.close()


def response(status: int, body: Any = ENVELOPE, path: str = "/2.0/x") -> requests.Response:
    made = requests.Response()
    made.status_code, made.url, made.reason = status, f"http://127.0.0.1:9{path}", "Reason"
    made.raw = io.BytesIO(json.dumps(body).encode())
    made.encoding = "utf-8"
    return made


def untolerated(cls: type[BitbucketStream], *statuses: int) -> list[int]:
    return [s for s in statuses if s not in cls.tolerated_errors]


NAMES = sorted(cls.name for cls in STREAM_TYPES)
TOLERATED = [(c.name, s) for c in STREAM_TYPES for s in sorted(c.tolerated_errors)]


RETRIED = [
    (c.name, s)
    for c in STREAM_TYPES
    for s in (429, 500, 502, 503, 555)
    if s not in c.tolerated_errors
]


@pytest.mark.parametrize(("name", "status"), RETRIED)
def test_429_and_5xx_are_retried(
    streams: dict[str, BitbucketStream], name: str, status: int
) -> None:
    with pytest.raises(RetriableAPIError) as info:
        streams[name].validate_response(response(status))
    assert f"HTTP {status}" in str(info.value) and "Bitbucket says no" in str(info.value)


@pytest.mark.parametrize(("name", "status"), TOLERATED)
def test_a_tolerated_status_skips_the_partition_with_the_streams_reason(
    streams: dict[str, BitbucketStream], name: str, status: int
) -> None:
    """A tolerated 5xx too: diffstat's 555 (no computable diff, notes §8.10) is a per-PR
    soft failure; it used to be retried max_retries times and then fail the run."""
    stream = streams[name]
    with pytest.raises(SkipPartition) as info:
        stream.validate_response(response(status))
    assert info.value.status == status
    assert info.value.reason == f"{stream.tolerated_errors[status]} (Bitbucket says no)"


@pytest.mark.parametrize("name", NAMES)
def test_other_4xx_fail_with_one_line_naming_the_path(
    streams: dict[str, BitbucketStream], name: str
) -> None:
    cls = type(streams[name])
    for status in untolerated(cls, 400, 403, 404, 410):
        with pytest.raises(APIError) as info:
            streams[name].validate_response(response(status, path="/2.0/repositories/acme/api"))
        message = str(info.value)
        assert message.startswith(f"HTTP {status} from GET /2.0/repositories/acme/api: ")
        assert "Bitbucket says no" in message and "\n" not in message


def test_403_and_404_carry_a_hint(streams: dict[str, BitbucketStream]) -> None:
    stream = streams["repositories"]  # tolerates nothing
    assert not stream.tolerated_errors
    with pytest.raises(APIError, match="lacks a scope or admin rights"):
        stream.validate_response(response(403))
    with pytest.raises(APIError, match="Check the workspace and repository names"):
        stream.validate_response(response(404))


def test_401_gets_the_authenticators_hint(streams: dict[str, BitbucketStream]) -> None:
    """Issue 12, bug 6: the API-token hint reaches the user."""
    with pytest.raises(AuthError) as info:
        streams["branches"].validate_response(response(401, path="/2.0/repositories/acme/api"))
    assert "Atlassian account email" in str(info.value)
    assert "/2.0/repositories/acme/api" in str(info.value)


def test_a_good_page_is_decoded_inside_the_retry_policy(
    streams: dict[str, BitbucketStream],
) -> None:
    with pytest.raises(RetriableAPIError):
        garbled = response(200)
        garbled.raw = io.BytesIO(b'{"values": [')
        streams["branches"].validate_response(garbled)
    streams["branches"].validate_response(response(200, {"values": []}))


@pytest.mark.parametrize(
    ("context", "where"),
    [
        (REPO, "repository acme/api"),
        ({"workspace_slug": "acme", "project_key": "K", "project_uuid": "{p}"}, "project acme/K"),
        ({"workspace_slug": "acme", "workspace_uuid": "{w}"}, "workspace acme"),
    ],
)
def test_a_skip_is_one_warning_line_the_harness_parses(
    caplog: pytest.LogCaptureFixture, context: dict[str, Any], where: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="tap_bitbucket"):
        warn_skip("branches", context, SkipPartition(409, "the repository is empty (x)"))
    (line,) = [r.getMessage() for r in caplog.records]
    assert parse_skip(line) == ("branches", where, 409, "the repository is empty (x)")


# ------------------------------------------------------------------ transforms


@pytest.mark.parametrize("name", NAMES)
def test_context_keys_are_added_and_never_overwrite(
    streams: dict[str, BitbucketStream], name: str
) -> None:
    stream = streams[name]
    context = {key: f"ctx-{key}" for key in stream.context_keys}
    record = stream.shape({"uuid": "{x}", "id": 1}, context)
    assert record is not None
    assert {k: record[k] for k in stream.context_keys} == context
    if stream.context_keys:
        key = stream.context_keys[0]
        own = stream.shape({"uuid": "{x}", key: "own"}, context)
        assert own is not None and own[key] == "own"


@pytest.mark.parametrize(
    ("name", "row", "key", "want"),
    [
        ("workspace_members", {"user": {"uuid": "{u}"}}, "user_uuid", "{u}"),
        ("repository_user_permissions", {"user": {"uuid": "{u}"}}, "user_uuid", "{u}"),
        ("project_user_permissions", {"user": {"uuid": "{u}"}}, "user_uuid", "{u}"),
        ("project_default_reviewers", {"user": {"uuid": "{u}"}}, "user_uuid", "{u}"),
        ("default_reviewers", {"uuid": "{u}"}, "user_uuid", "{u}"),
        ("repository_group_permissions", {"group": {"slug": "devs"}}, "group_slug", "devs"),
        ("project_group_permissions", {"group": {"slug": "devs"}}, "group_slug", "devs"),
        ("workspace_members", {}, "user_uuid", None),
    ],
)
def test_derived_key_fields(
    streams: dict[str, BitbucketStream], name: str, row: dict[str, Any], key: str, want: Any
) -> None:
    record = streams[name].shape(dict(row), {})
    assert record is not None and record[key] == want
    assert key in streams[name].primary_keys


def test_diffstat_file_key_is_old_and_new_path(streams: dict[str, BitbucketStream]) -> None:
    row = {"old": {"path": "a.py"}, "new": None}
    record = streams["pull_request_diffstats"].shape(row, {})
    assert record is not None and json.loads(record["file_key"]) == ["a.py", None]


def test_step_images_lose_their_registry_credentials(
    streams: dict[str, BitbucketStream],
) -> None:
    image = {"name": "private/img", "username": "bot", "password": "hunter2", "email": "b@x"}
    record = streams["pipeline_steps"].post_process({"uuid": "{s}", "image": dict(image)}, {})
    assert record is not None
    assert record["image"]["name"] == image["name"]
    assert not {image["username"], image["password"], image["email"]} & set(
        record["image"].values()
    )


def test_activity_ids_are_stable_and_tell_entries_apart(
    streams: dict[str, BitbucketStream],
) -> None:
    stream = streams["pull_request_activity"]

    def entry(kind: str, body: dict[str, Any]) -> dict[str, Any]:
        record = stream.post_process({"pull_request": {"id": 7}, kind: body}, REPO)
        assert record is not None
        return record

    approval = {"date": "2024-01-01T00:00:00Z", "user": {"uuid": "{u}"}}
    first, again = entry("approval", approval), entry("approval", dict(approval))
    assert first["activity_id"] == again["activity_id"]
    assert first["activity_kind"] == "approval" and first["pull_request_id"] == 7
    assert first["activity_date"] == approval["date"]
    other_user = entry("approval", {**approval, "user": {"uuid": "{v}"}})
    assert other_user["activity_id"] != first["activity_id"]
    comment = {"id": 3, "created_on": "2024-01-02T00:00:00Z"}
    edited = {**comment, "updated_on": "2024-01-03T00:00:00Z"}
    assert entry("comment", comment)["activity_id"] == entry("comment", edited)["activity_id"]
    assert entry("comment", edited)["activity_date"] == edited["updated_on"]


def test_records_only_with_names_a_sibling_synced_before() -> None:
    """``records_only_with`` relies on the SDK syncing a repository's child streams in
    registry order: the stream it depends on must be an earlier sibling, partitioned
    the same way, so its read of the repository is done when this one decides."""
    order = [cls.name for cls in STREAM_TYPES]
    by_name = {cls.name: cls for cls in STREAM_TYPES}
    dependent = [cls for cls in STREAM_TYPES if cls.records_only_with]
    assert {cls.name for cls in dependent} == {"pull_request_activity", "deployments"}
    for cls in dependent:
        other = by_name[str(cls.records_only_with)]
        assert order.index(other.name) < order.index(cls.name)
        assert other.parent_stream_type is cls.parent_stream_type
        assert other.state_partitioning_keys == cls.state_partitioning_keys
