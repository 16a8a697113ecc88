"""Fault injection and rate limiting, observed through real HTTP clients."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from typing import Any

import pytest
import requests

from tests.emulator import Emulator, FaultRule
from tests.emulator.faults import FaultInjector, RateLimiter

RATE_LIMIT_TEXT = "Rate limit for this resource has been exceeded"


def session_for(emu: Emulator) -> requests.Session:
    s = requests.Session()
    s.auth = emu.credentials.basic_auth()
    return s


def user_url(emu: Emulator) -> str:
    return emu.api_url + "/user"


# ------------------------------------------------------------------------------ rate limits


def test_rate_limit_without_retry_after(make_emulator):
    emu = make_emulator(rate_limit=3, rate_limit_window_s=60)
    with session_for(emu) as s:
        statuses = [s.get(user_url(emu)).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        resp = s.get(user_url(emu))
    assert resp.status_code == 429
    assert resp.headers["Content-Type"] == "text/plain"
    assert resp.text == RATE_LIMIT_TEXT
    assert "Retry-After" not in resp.headers
    assert [e.status for e in emu.request_log] == [200, 200, 200, 429]  # 429s are logged


def test_rate_limit_with_retry_after_and_window(make_emulator):
    emu = make_emulator(rate_limit=2, rate_limit_window_s=0.5, rate_limit_retry_after=7)
    with session_for(emu) as s:
        assert [s.get(user_url(emu)).status_code for _ in range(2)] == [200, 200]
        limited = s.get(user_url(emu))
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "7"
        time.sleep(0.6)
        assert s.get(user_url(emu)).status_code == 200  # the window slid on


def test_rate_limit_is_per_credential(make_emulator):
    emu = make_emulator(rate_limit=1, rate_limit_window_s=60)
    bearer = {"Authorization": f"Bearer {emu.credentials.access_token}"}
    with session_for(emu) as s:
        assert s.get(user_url(emu)).status_code == 200
        assert s.get(user_url(emu)).status_code == 429
    assert requests.get(user_url(emu), headers=bearer).status_code == 200
    assert requests.get(user_url(emu), headers=bearer).status_code == 429


def test_rate_limit_reconfigured_at_run_time(make_emulator):
    emu = make_emulator()
    with session_for(emu) as s:
        assert all(s.get(user_url(emu)).status_code == 200 for _ in range(5))
        emu.configure(rate_limit=1, rate_limit_window_s=60)
        assert s.get(user_url(emu)).status_code == 429


def test_rate_limiter_unit():
    now = [0.0]
    limiter = RateLimiter(2, 10, clock=lambda: now[0])
    assert limiter.hit("a") == (True, 1)
    assert limiter.hit("a") == (True, 2)
    assert limiter.hit("a") == (False, 2)
    assert limiter.hit("b") == (True, 1)
    now[0] = 10.5
    assert limiter.hit("a") == (True, 1)


# ------------------------------------------------------------------------------ error kinds


@pytest.mark.parametrize(
    ("kind", "html"),
    [("500", False), ("502", True), ("503", True), ("504", True)],
)
def test_server_errors(make_emulator, kind, html):
    emu = make_emulator(faults=[FaultRule(kind, at=[1])])
    with session_for(emu) as s:
        resp = s.get(user_url(emu))
        assert resp.status_code == int(kind)
        if html:
            assert resp.headers["Content-Type"].startswith("text/html")
            assert "<html>" in resp.text
        else:
            assert resp.json()["type"] == "error"
        assert s.get(user_url(emu)).status_code == 200  # only request 1
    assert emu.request_log[0].fault == kind
    assert emu.request_log[0].status == int(kind)


def test_error_body_override_and_custom_status(make_emulator):
    emu = make_emulator(
        faults=[FaultRule("503", at=[1], body="json"), FaultRule("error", at=[2], status=555)]
    )
    with session_for(emu) as s:
        first = s.get(user_url(emu))
        assert first.status_code == 503
        assert first.json()["type"] == "error"
        second = s.get(user_url(emu))
        assert second.status_code == 555
        assert second.json()["error"]["message"]


@pytest.mark.parametrize("retry_after", [None, 2])
def test_429_fault(make_emulator, retry_after):
    emu = make_emulator(faults=[FaultRule("429", at=[1], retry_after=retry_after)])
    with session_for(emu) as s:
        resp = s.get(user_url(emu))
    assert resp.status_code == 429
    assert resp.text == RATE_LIMIT_TEXT
    assert resp.headers["Content-Type"] == "text/plain"
    if retry_after is None:
        assert "Retry-After" not in resp.headers
    else:
        assert resp.headers["Retry-After"] == "2"


def test_reset_closes_the_connection(make_emulator):
    emu = make_emulator(faults=[FaultRule("reset", at=[2])])
    with session_for(emu) as s:
        assert s.get(user_url(emu)).status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            s.get(user_url(emu))
        assert s.get(user_url(emu)).status_code == 200  # a new connection works
    assert [e.status for e in emu.request_log] == [200, 0, 200]
    assert emu.request_log[1].fault == "reset"


def test_truncate_sends_half_the_body(make_emulator):
    emu = make_emulator(faults=[FaultRule("truncate", at=[1, 2])])
    with (
        session_for(emu) as s,
        pytest.raises(
            (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)
        ),
    ):
        s.get(user_url(emu)).json()
    creds = emu.credentials
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    token = base64.b64encode(f"{creds.email}:{creds.api_token}".encode()).decode()
    conn.request("GET", "/2.0/user", headers={"Authorization": "Basic " + token})
    resp = conn.getresponse()
    declared = int(resp.headers["Content-Length"])
    with pytest.raises(http.client.IncompleteRead) as exc:
        resp.read()
    assert len(exc.value.partial) == declared // 2
    with pytest.raises(json.JSONDecodeError):
        json.loads(exc.value.partial)
    conn.close()


def test_latency_fault(make_emulator):
    emu = make_emulator(faults=[FaultRule("latency", at=[2], latency_ms=300)])
    with session_for(emu) as s:
        t0 = time.perf_counter()
        s.get(user_url(emu))
        fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        resp = s.get(user_url(emu))
        slow = time.perf_counter() - t0
    assert resp.status_code == 200
    assert slow >= 0.3
    assert fast < 0.1


def test_config_latency(make_emulator):
    emu = make_emulator(latency_ms=150)
    with session_for(emu) as s:
        t0 = time.perf_counter()
        assert s.get(user_url(emu)).status_code == 200
        assert time.perf_counter() - t0 >= 0.15


def test_timeout_fault(make_emulator):
    emu = make_emulator(faults=[FaultRule("timeout", at=[1], latency_ms=2000)])
    with session_for(emu) as s:
        t0 = time.perf_counter()
        with pytest.raises(requests.exceptions.ReadTimeout):
            s.get(user_url(emu), timeout=0.3)
        assert time.perf_counter() - t0 < 1.5
        assert s.get(user_url(emu), timeout=5).status_code == 200


def test_revoke_fault(make_emulator):
    emu = make_emulator(faults=[FaultRule("revoke", path_regex=r"/user$", at=[2])])
    bearer = {"Authorization": f"Bearer {emu.credentials.access_token}"}
    assert requests.get(user_url(emu), headers=bearer).status_code == 200
    resp = requests.get(user_url(emu), headers=bearer)
    assert resp.status_code == 401
    assert resp.json()["type"] == "error"
    assert requests.get(user_url(emu), headers=bearer).status_code == 401  # stays revoked
    # other credentials are unaffected
    assert requests.get(user_url(emu), auth=emu.credentials.basic_auth()).status_code == 200


def test_revoke_fault_on_oauth_token(make_emulator):
    emu = make_emulator()
    tokens = emu.issue_oauth_tokens()
    emu.add_fault(FaultRule("revoke", path_regex="/2.0/", at=[1]))
    resp = requests.get(
        user_url(emu), headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert resp.status_code == 401


# ------------------------------------------------------------------------------ scheduling


def _statuses(emu: Emulator, n: int, path: str = "/user") -> list[int]:
    with session_for(emu) as s:
        return [s.get(emu.api_url + path).status_code for _ in range(n)]


def test_at_uses_global_request_numbers_and_path_regex(make_emulator):
    emu = make_emulator(faults=[FaultRule("503", path_regex=r"/user$", at=[2, 4])])
    with session_for(emu) as s:
        a = s.get(user_url(emu)).status_code  # 1
        b = s.get(user_url(emu)).status_code  # 2 -> 503
        c = s.get(emu.api_url + "/user/workspaces").status_code  # 3 (path does not match)
        d = s.get(emu.api_url + "/user/workspaces").status_code  # 4 -> path does not match
        e = s.get(user_url(emu)).status_code  # 5
    assert [a, b, c, d, e] == [200, 503, 200, 200, 200]


def test_every_and_count(make_emulator):
    emu = make_emulator(faults=[FaultRule("500", every=3, count=2)])
    assert _statuses(emu, 10) == [200, 200, 500, 200, 200, 500, 200, 200, 200, 200]
    assert emu.faults[0].fired == 2


def test_probability_is_reproducible(make_emulator):
    rule: dict[str, Any] = {"kind": "503", "probability": 0.5}
    a = make_emulator(faults=[FaultRule(**rule)], fault_seed=42)
    b = make_emulator(faults=[FaultRule(**rule)], fault_seed=42)
    c = make_emulator(faults=[FaultRule(**rule)], fault_seed=7)
    sa, sb, sc = _statuses(a, 40), _statuses(b, 40), _statuses(c, 40)
    assert sa == sb
    assert sa != sc
    assert 5 < sa.count(503) < 35


def test_first_matching_rule_wins_and_clear(make_emulator):
    emu = make_emulator()
    emu.add_fault(FaultRule("502", at=[1]))
    emu.add_fault(FaultRule("500"))
    assert _statuses(emu, 2) == [502, 500]
    emu.clear_faults()
    assert emu.faults == []
    assert _statuses(emu, 1) == [200]


def test_faults_on_the_token_endpoint(make_emulator):
    emu = make_emulator(faults=[FaultRule("503", path_regex="access_token", count=1)])
    creds = emu.credentials
    auth = (creds.oauth_client_id, creds.oauth_client_secret)
    url = emu.oauth_url + "/access_token"
    first = requests.post(url, data={"grant_type": "client_credentials"}, auth=auth)
    assert first.status_code == 503
    second = requests.post(url, data={"grant_type": "client_credentials"}, auth=auth)
    assert second.status_code == 200
    assert emu.request_log[0].fault == "503"
    assert emu.request_log[0].template == "/site/oauth2/access_token"


def test_reset_on_the_token_endpoint(make_emulator):
    emu = make_emulator(faults=[FaultRule("reset", path_regex="access_token", at=[1])])
    creds = emu.credentials
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(
            emu.oauth_url + "/access_token",
            data={"grant_type": "client_credentials"},
            auth=(creds.oauth_client_id, creds.oauth_client_secret),
        )


def test_fault_rule_validation():
    with pytest.raises(ValueError):
        FaultRule("teapot")
    with pytest.raises(ValueError):
        FaultRule("error")  # needs a status
    with pytest.raises(ValueError):
        FaultRule("500", probability=1.5)
    with pytest.raises(ValueError):
        FaultRule.from_dict({"kind": "500", "unknown": 1})
    assert FaultRule.from_dict({"kind": "timeout"}).sleep_s == 30.0


def test_injector_unit():
    inj = FaultInjector([FaultRule("500", path_regex="^/a", every=2)], seed=1)
    picks = [inj.pick(n, p) for n, p in enumerate(["/a", "/b", "/a", "/a", "/a"], start=1)]
    assert [r.kind if r else None for r in picks] == [None, None, "500", None, "500"]


def test_stop_does_not_wait_for_sleeping_handlers(make_emulator):
    emu = make_emulator(faults=[FaultRule("timeout", latency_ms=20_000)])
    sock = socket.create_connection(("127.0.0.1", emu.port))
    sock.sendall(b"GET /2.0/user HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.1)
    t0 = time.perf_counter()
    emu.stop()
    assert time.perf_counter() - t0 < 3
    sock.close()
