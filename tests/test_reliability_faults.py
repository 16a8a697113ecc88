"""The fault matrix: every fault kind, where it hurts, and the records still come out exact.

A clean sync of a small selection (API token) is the reference. Each faulted run (a fresh
emulator, OAuth with 1-second access tokens, one fault kind hitting three places) must exit
0 and emit exactly the reference's records: the same multiset of (stream, primary key,
content), so a retry neither loses nor repeats a record. Each rule must have fired, so a
test cannot pass because its fault never happened.

Where a fault hits:
* list: page 2 of acme/api's pull requests (a `next` link being followed);
* child: the 7th `/pullrequests/{id}/comments` request;
* token: the OAuth token endpoint, on the tap's 2nd refresh (the tokens live 1 s, so the
  tap refreshes several times during the run).

Then the failures that must stay failures, each with ONE line: retries exhausted, the 429
wait ceiling reached, a revoked refresh token or API token, a `next` link to another host
(never followed: the other host sees no request), and a pagination loop.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.emulator import Emulator, EmulatorConfig, FaultRule
from tests.harness import (
    FAST,
    START_DATE,
    TapResult,
    api_token_config,
    catalog_selecting,
    key_properties,
    oauth_code_config,
    record_key,
    run_tap,
)

SELECTION = {
    "repositories",
    "pull_requests",
    "pull_request_comments",
    "pipelines",
    "pipeline_steps",
    "commits",
    "branches",
}
SCOPE = {"repositories": ["acme/*"], "max_workers": 1, **FAST}
ERROR = "tap-bitbucket: error: "

KINDS: dict[str, dict[str, Any]] = {
    "429_retry_after": {"kind": "429", "retry_after": 1},
    "429": {"kind": "429"},
    "500": {"kind": "500"},
    "502": {"kind": "502"},
    "503": {"kind": "503"},
    "504": {"kind": "504"},
    "reset": {"kind": "reset"},
    "timeout": {"kind": "timeout", "latency_ms": 2500},  # request_timeout_seconds is 1
    "truncate": {"kind": "truncate"},
}
WHERE: dict[str, dict[str, Any]] = {
    "list": {"path_regex": r"^/2\.0/repositories/acme/api/pullrequests$", "every": 2},
    "child": {"path_regex": r"/pullrequests/\d+/comments$", "every": 7},
    "token": {"path_regex": r"/site/oauth2/access_token$", "every": 2},
}
# Each API request is held this long, so a sync of SCOPE outlasts several 1-second
# tokens however fast the tap is (the tests below need refreshes in mid-sync).
SLOW_MS = 15


TOKEN_RETRY_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d (\d\d:\d\d:\d\d),\d+ \| WARNING +\| tap_bitbucket[.\w]* +\| OAuth token "
    r"request \(refresh_token\) failed \(.*\); retrying in ([\d.]+) s \(resuming at "
    r"(\d\d:\d\d:\d\d), attempt 2 of \d+\)$"
)
RETRY_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d (\d\d:\d\d:\d\d),\d+ \| INFO +\| tap_bitbucket +\| (\w+): retry \d+ "
    r"after (.*); waiting ([\d.]+)s \(resuming at (\d\d:\d\d:\d\d)\)$"
)


def content(run: TapResult, emu: Emulator) -> Counter[tuple[str, str, str]]:
    """The run's records as a multiset of (stream, key, content); the emulator's address
    (in `links`) is replaced so runs against different emulators compare."""
    keys = key_properties(run.messages)
    out: Counter[tuple[str, str, str]] = Counter()
    for message in run.records:
        body = json.dumps(message["record"], sort_keys=True).replace(emu.base_url, "EMU")
        out[(*record_key(message, keys), body)] += 1
    return out


@pytest.fixture(scope="module")
def catalog() -> dict[str, Any]:
    return catalog_selecting(SELECTION)


@pytest.fixture(scope="module")
def reference(
    catalog: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Counter[tuple[str, str, str]]:
    with Emulator(EmulatorConfig()) as emu:
        run = run_tap(
            api_token_config(emu, start_date=START_DATE, **SCOPE),
            catalog=catalog,
            home=tmp_path_factory.mktemp("reference"),
            parse="lenient",
            timeout=180,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        records = content(run, emu)
    assert set(records.values()) == {1}, "the clean sync itself repeats records"
    streams = Counter(stream for stream, _, _ in records)
    assert set(streams) == SELECTION and sum(streams.values()) > 500, streams
    return records


def assert_exact(run: TapResult, emu: Emulator, reference: Counter[tuple[str, str, str]]) -> None:
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    got = content(run, emu)
    missing, extra = reference - got, got - reference
    assert not missing and not extra, (
        f"{sum(missing.values())} missing, e.g. {list(missing)[:2]}; "
        f"{sum(extra.values())} extra, e.g. {list(extra)[:2]}"
    )


def retry_lines(run: TapResult) -> list[re.Match[str]]:
    return [m for line in run.stderr.splitlines() if (m := RETRY_LINE.match(line))]


def faulted_requests(emu: Emulator) -> list[Any]:
    return [e for e in emu.request_log if e.fault]


def settled_log(emu: Emulator, faults: int) -> list[Any]:
    """The request log in arrival order, once every faulted request is in it: a request
    held by a timeout fault is logged when the emulator answers it, which can be after the
    tap (which gave up on it and retried) has finished."""
    deadline = time.monotonic() + 10
    while len(faulted_requests(emu)) < faults and time.monotonic() < deadline:
        time.sleep(0.05)
    return sorted(emu.request_log, key=lambda e: e.n)


# ---------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("kind", list(KINDS))
def test_fault_is_retried_on_list_child_and_token_requests(
    kind: str,
    make_emulator: Callable[..., Emulator],
    tmp_path: Path,
    catalog: dict[str, Any],
    reference: Counter[tuple[str, str, str]],
) -> None:
    """One run per fault kind, hit at all three places (OAuth with 1-second tokens)."""
    emu = make_emulator(token_lifetime_s=1, latency_ms=SLOW_MS)
    settings = tmp_path / "oauth.json"
    config = oauth_code_config(emu, settings, **SCOPE)  # one token request: the exchange
    rules = {
        where: emu.add_fault(FaultRule(**KINDS[kind], **WHERE[where], count=1))
        for where in ("list", "child", "token")
    }
    run = run_tap(config, catalog=catalog, home=tmp_path, parse="lenient", timeout=180)
    assert_exact(run, emu, reference)
    assert {where: rule.fired for where, rule in rules.items()} == dict.fromkeys(rules, 1)
    log = settled_log(emu, faults=3)
    hits = {
        where: next(e for e in log if e.fault and re.search(WHERE[where]["path_regex"], e.path))
        for where in rules
    }
    retries = {}
    for where, hit in hits.items():
        # The same request was sent again after the fault, and it succeeded.
        again = [e for e in log if e.n > hit.n and e.path == hit.path and e.query == hit.query]
        assert again and again[0].status == 200, (where, again[:1])
        retries[where] = again[0]
    # API retries are logged at INFO, one line per wait, with the time it resumes.
    lines = retry_lines(run)
    assert sorted(m.group(2) for m in lines) == ["pull_request_comments", "pull_requests"]
    # The token endpoint's retry says the same: one WARNING with the wait and resume time.
    token_lines = [m for line in run.stderr.splitlines() if (m := TOKEN_RETRY_LINE.match(line))]
    assert len(token_lines) == 1, run.stderr[-2000:]
    logged_at, wait, resume = token_lines[0].groups()
    start = datetime.strptime(logged_at, "%H:%M:%S")
    assert (
        start <= datetime.strptime(resume, "%H:%M:%S") <= start + timedelta(seconds=float(wait) + 1)
    )
    if kind.startswith("429"):
        for line in lines:
            where = "list" if line.group(2) == "pull_requests" else "child"
            check_429_wait(line, hits[where], retries[where], KINDS[kind].get("retry_after"))
    # The token fault hit the tap's 2nd refresh (usually in the middle of the sync; on a
    # slow machine the 1-second token may need it before the first API request), the tokens
    # were refreshed in the middle of the sync, and no API request was ever refused for an
    # expired token.
    tokens = [e for e in log if e.path.endswith("/access_token")]
    assert tokens.index(hits["token"]) == 2  # the exchange, a refresh, then this one
    api = [e.n for e in log if e.path.startswith("/2.0/")]
    assert any(min(api) < e.n < max(api) and e.status == 200 for e in tokens)
    # (The request a timeout fault held for 2.5 s may itself be answered 401: its 1-second
    # token expired while the emulator slept, long after the tap had given up on it.)
    assert [e for e in log if e.path.startswith("/2.0/") and e.status == 401 and not e.fault] == []
    # The settings file ends with a refresh token that works.
    saved = json.loads(settings.read_text())
    again = requests.post(
        emu.oauth_url + "/access_token",
        timeout=10,
        data={"grant_type": "refresh_token", "refresh_token": saved["refresh_token"]},
        auth=(emu.credentials.oauth_client_id, emu.credentials.oauth_client_secret),
    )
    assert again.status_code == 200, again.text


def check_429_wait(line: re.Match[str], hit: Any, retry: Any, retry_after: float | None) -> None:
    """Each 429 wait is logged at INFO with the time the request resumes."""
    logged_at, _stream, error, wait, resume = line.groups()
    assert "429" in error
    start = datetime.strptime(logged_at, "%H:%M:%S")
    resumes = datetime.strptime(resume, "%H:%M:%S")
    assert start <= resumes <= start + timedelta(seconds=float(wait) + 1)
    gap = retry.timestamp - hit.timestamp
    if retry_after is not None:
        assert float(wait) == retry_after  # Retry-After is honoured exactly...
        assert gap >= retry_after  # ...and the emulator saw the retry no sooner
    else:
        assert float(wait) <= FAST["backoff_max_seconds"]  # backoff within its bounds


def test_revoked_oauth_access_token_is_refreshed(
    make_emulator: Callable[..., Emulator],
    tmp_path: Path,
    catalog: dict[str, Any],
    reference: Counter[tuple[str, str, str]],
) -> None:
    rules = [FaultRule("revoke", **WHERE[where], count=1) for where in ("list", "child")]
    emu = make_emulator(faults=rules)
    config = oauth_code_config(emu, tmp_path / "oauth.json", **SCOPE)
    run = run_tap(config, catalog=catalog, home=tmp_path, parse="lenient", timeout=180)
    assert_exact(run, emu, reference)
    assert [rule.fired for rule in rules] == [1, 1]
    log = emu.request_log
    for hit in faulted_requests(emu):
        assert hit.status == 401
        later = log[log.index(hit) + 1 :]
        assert later[0].path.endswith("/access_token") and later[0].status == 200  # refreshed
        assert later[1].path == hit.path and later[1].status == 200  # the request, retried
    assert len([e for e in log if e.status == 401]) == 2


# ---------------------------------------------------------------------------- failures


def one_error_line(run: TapResult) -> str:
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if ERROR in line]
    assert len(errors) == 1, run.stderr[-3000:]
    assert errors[0].startswith(ERROR)
    return errors[0]


def test_retries_exhausted_fail_with_one_line(
    make_emulator: Callable[..., Emulator], tmp_path: Path, catalog: dict[str, Any]
) -> None:
    path = "/2.0/repositories/acme/api/pipelines"
    rule = FaultRule("503", path_regex=f"^{re.escape(path)}$")
    emu = make_emulator(faults=[rule])
    run = run_tap(
        api_token_config(emu, start_date=START_DATE, **SCOPE, max_retries=3),
        catalog=catalog,
        home=tmp_path,
        parse="lenient",
        timeout=180,
    )
    line = one_error_line(run)
    assert path in line and "HTTP 503" in line and "3 tries" in line, line
    assert rule.fired == 3  # max_retries tries, then it gave up
    assert len(retry_lines(run)) == 2


def test_429_waits_until_the_ceiling_then_fails(
    make_emulator: Callable[..., Emulator], tmp_path: Path, catalog: dict[str, Any]
) -> None:
    """429 is not bounded by max_retries but by the total wait (rate_limit_max_wait_seconds)."""
    path = "/2.0/repositories/acme/api/refs/branches"
    rule = FaultRule("429", path_regex=f"^{re.escape(path)}$")
    emu = make_emulator(faults=[rule])
    config = api_token_config(
        emu, start_date=START_DATE, **SCOPE, max_retries=2, rate_limit_max_wait_seconds=1.0
    )
    run = run_tap(config, catalog=catalog, home=tmp_path, parse="lenient", timeout=180)
    line = one_error_line(run)
    assert path in line and "HTTP 429" in line, line
    assert rule.fired > 2  # more tries than max_retries: 429 waits, it does not count tries
    hits = sorted(e.timestamp for e in emu.request_log if e.fault)
    # It waited out (about) the ceiling, not much longer: the last wait may overshoot it
    # by one backoff step at most.
    assert 0.9 <= hits[-1] - hits[0] <= 1.0 + FAST["backoff_max_seconds"] + 1.5
    assert len(retry_lines(run)) == rule.fired - 1  # every wait was logged


def test_revoked_refresh_token_fails_with_one_line(
    make_emulator: Callable[..., Emulator],
    tmp_path: Path,
    catalog: dict[str, Any],
) -> None:
    emu = make_emulator(token_lifetime_s=1, latency_ms=SLOW_MS)
    config = oauth_code_config(emu, tmp_path / "oauth.json", **SCOPE)
    rule = emu.add_fault(FaultRule("revoke", **WHERE["token"], count=1))
    run = run_tap(config, catalog=catalog, home=tmp_path, parse="lenient", timeout=180)
    line = one_error_line(run)
    assert rule.fired == 1
    assert "refresh token was rejected" in line and "tap-bitbucket-oauth login" in line, line


def test_revoked_api_token_fails_with_one_line(
    make_emulator: Callable[..., Emulator], tmp_path: Path, catalog: dict[str, Any]
) -> None:
    rule = FaultRule("revoke", **WHERE["child"], count=1)
    emu = make_emulator(faults=[rule])
    run = run_tap(
        api_token_config(emu, start_date=START_DATE, **SCOPE),
        catalog=catalog,
        home=tmp_path,
        parse="lenient",
        timeout=180,
    )
    line = one_error_line(run)
    assert rule.fired == 1
    assert "401" in line and "comments" in line, line
    after = [e for e in emu.request_log if e.n > faulted_requests(emu)[0].n]
    assert after == []  # nothing more was tried with a dead credential


class Listener:
    """A TCP listener that records every connection made to it (it answers nothing)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def test_next_link_to_another_host_is_refused(
    make_emulator: Callable[..., Emulator], tmp_path: Path, catalog: dict[str, Any]
) -> None:
    listener = Listener()
    try:
        other = f"http://127.0.0.1:{listener.port}"
        emu = make_emulator(next_host_override=other)
        run = run_tap(
            api_token_config(emu, start_date=START_DATE, **SCOPE),
            catalog=catalog,
            home=tmp_path,
            parse="lenient",
            timeout=180,
        )
        line = one_error_line(run)
    finally:
        listener.close()
    assert f"Refusing to follow a pagination link to {other}" in line, line
    assert "api_url" in line
    assert listener.connections == 0  # the credentials never travelled there


def looping_run(
    emu: Emulator, tmp_path: Path, catalog: dict[str, Any]
) -> tuple[Emulator, TapResult, re.Match[str]]:
    """A sync against an emulator whose `next` links loop: it must end with one error
    line naming the looping path (returned as the match's group 1)."""
    run = run_tap(
        api_token_config(emu, start_date=START_DATE, **SCOPE),
        catalog=catalog,
        timeout=60,
        home=tmp_path,
        parse="lenient",
    )
    line = one_error_line(run)
    assert "already read" in line, line
    looped = re.search(r"\((/2\.0/[^)]+)\)", line)
    assert looped, line
    return emu, run, looped


def test_repeating_next_link_fails_instead_of_spinning(
    make_emulator: Callable[..., Emulator],
    tmp_path: Path,
    catalog: dict[str, Any],
) -> None:
    emu, _, looped = looping_run(make_emulator(next_loop=True), tmp_path, catalog)
    # page 1, then page 2 whose `next` is page 2 again: it stopped there.
    assert sum(1 for e in emu.request_log if e.path == looped.group(1)) == 2


def test_a_next_link_back_to_the_first_page_fails_before_its_records_come_again(
    make_emulator: Callable[..., Emulator],
    tmp_path: Path,
    catalog: dict[str, Any],
) -> None:
    """Page 2's `next` is page 1 (issue 16): the first page was requested without
    `page`, so only a page identity that treats `page=1` as the first page catches it;
    page 1 is then read once, and no record of it is emitted twice."""
    emu, run, looped = looping_run(make_emulator(next_loop_back=True), tmp_path, catalog)
    first_pages = [
        e for e in emu.request_log if e.path == looped.group(1) and "page=" not in (e.query or "")
    ]
    assert len(first_pages) == 1
    keys = key_properties(run.messages)
    emitted = [record_key(m, keys) for m in run.messages if m["type"] == "RECORD"]
    assert len(emitted) == len(set(emitted))


# ---------------------------------------------------------------------------- emulator hooks


def test_emulator_pagination_hooks(make_emulator: Callable[..., Emulator]) -> None:
    """The two test hooks the failure tests above rely on."""
    auth = make_emulator().credentials.basic_auth()
    offhost = make_emulator(next_host_override="http://elsewhere.example:81")
    page = requests.get(offhost.api_url + "/repositories/acme/api/commits", auth=auth, timeout=10)
    assert page.json()["next"].startswith("http://elsewhere.example:81/2.0/repositories/")
    looping = make_emulator(next_loop=True)
    url = looping.api_url + "/repositories/acme/api/pullrequests?state=MERGED&pagelen=10"
    first = requests.get(url, auth=auth, timeout=10).json()
    second = requests.get(first["next"], auth=auth, timeout=10).json()
    assert second["next"] == first["next"]  # page 2 links to itself
    assert second["values"] != first["values"]
    commits = requests.get(
        looping.api_url + "/repositories/acme/api/commits", auth=auth, timeout=10
    ).json()
    cursor = requests.get(commits["next"], auth=auth, timeout=10).json()
    assert cursor["next"] == commits["next"]


def test_emulator_token_endpoint_reset_happens_before_the_grant(
    make_emulator: Callable[..., Emulator],
) -> None:
    """A reset on the token endpoint drops the request unprocessed: the refresh token it
    carried is not spent (even with strict rotation), so a retry succeeds."""
    emu = make_emulator(refresh_grace_s=0)
    issued = emu.issue_oauth_tokens()
    rule = emu.add_fault(FaultRule("reset", path_regex="access_token$", count=1))
    client = (emu.credentials.oauth_client_id, emu.credentials.oauth_client_secret)
    form = {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(emu.oauth_url + "/access_token", data=form, auth=client, timeout=10)
    assert rule.fired == 1
    [entry] = emu.request_log
    assert (entry.template, entry.status, entry.fault) == ("/site/oauth2/access_token", 0, "reset")
    again = requests.post(emu.oauth_url + "/access_token", data=form, auth=client, timeout=10)
    assert again.status_code == 200, again.text
