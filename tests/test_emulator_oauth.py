"""The emulator's OAuth 2.0 server (`/site/oauth2/authorize`, `/site/oauth2/access_token`)."""

from __future__ import annotations

import threading
import time
import urllib.parse
from typing import Any

import requests

from tests.emulator import Emulator
from tests.emulator.oauth import SCOPES

EXPIRED = "Access token expired. Use your refresh token to obtain a new access token."


def authorize(emu: Emulator, **extra: str) -> requests.Response:
    params = {"client_id": emu.credentials.oauth_client_id, "response_type": "code", **extra}
    return requests.get(emu.oauth_url + "/authorize", params=params, allow_redirects=False)


def get_code(emu: Emulator, state: str = "xyz") -> str:
    resp = authorize(emu, state=state)
    assert resp.status_code == 302
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(resp.headers["Location"]).query)
    return query["code"][0]


def token(emu: Emulator, data: dict[str, str], auth: Any = "client") -> requests.Response:
    if auth == "client":
        auth = (emu.credentials.oauth_client_id, emu.credentials.oauth_client_secret)
    return requests.post(emu.oauth_url + "/access_token", data=data, auth=auth)


def exchange(emu: Emulator) -> dict[str, Any]:
    resp = token(emu, {"grant_type": "authorization_code", "code": get_code(emu)})
    assert resp.status_code == 200, resp.text
    return resp.json()


def api_get(emu: Emulator, access_token: str) -> requests.Response:
    return requests.get(emu.api_url + "/user", headers={"Authorization": f"Bearer {access_token}"})


def test_authorize_redirects_to_callback_with_code_and_state(emulator: Emulator):
    resp = authorize(emulator, state="s-123")
    assert resp.status_code == 302
    location = urllib.parse.urlsplit(resp.headers["Location"])
    callback = urllib.parse.urlsplit(emulator.credentials.callback_url)
    assert (location.scheme, location.netloc, location.path) == (
        callback.scheme,
        callback.netloc,
        callback.path,
    )
    assert emulator.credentials.callback_url == "http://localhost:33333"
    query = urllib.parse.parse_qs(location.query)
    assert query["state"] == ["s-123"]
    assert len(query["code"][0]) >= 10
    # a different code every time
    assert get_code(emulator) != get_code(emulator)


def test_authorize_checks_client_and_redirect_uri(emulator: Emulator):
    resp = requests.get(
        emulator.oauth_url + "/authorize",
        params={"client_id": "nope", "response_type": "code"},
        allow_redirects=False,
    )
    assert resp.status_code == 400
    assert "text/html" in resp.headers["Content-Type"]
    bad = authorize(emulator, redirect_uri="http://evil.example/cb")
    assert bad.status_code == 400
    good = authorize(emulator, redirect_uri=emulator.credentials.callback_url)
    assert good.status_code == 302


def test_callback_is_configurable(make_emulator):
    emu = make_emulator(callback_url="http://127.0.0.1:45678/callback")
    assert emu.credentials.callback_url == "http://127.0.0.1:45678/callback"
    resp = authorize(emu, state="a")
    assert resp.headers["Location"].startswith("http://127.0.0.1:45678/callback?code=")
    emu.configure(callback_url="http://127.0.0.1:9/cb")
    assert authorize(emu).headers["Location"].startswith("http://127.0.0.1:9/cb?code=")


def test_code_exchange(emulator: Emulator):
    body = exchange(emulator)
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "scopes",
        "state",
    }
    assert body["token_type"] == "bearer"
    assert body["state"] == "authorization_code"
    assert body["scopes"] == SCOPES == "account repository pullrequest pipeline webhook project"
    assert body["expires_in"] == emulator.config.token_lifetime_s
    resp = api_get(emulator, body["access_token"])
    assert resp.status_code == 200
    assert resp.json()["uuid"] == emulator.dataset.user["uuid"]
    assert emulator.request_log[-1].auth == "oauth"


def test_client_may_authenticate_in_the_body(emulator: Emulator):
    creds = emulator.credentials
    resp = token(
        emulator,
        {
            "grant_type": "client_credentials",
            "client_id": creds.oauth_client_id,
            "client_secret": creds.oauth_client_secret,
        },
        auth=None,
    )
    assert resp.status_code == 200
    assert api_get(emulator, resp.json()["access_token"]).status_code == 200


def test_code_is_single_use(emulator: Emulator):
    code = get_code(emulator)
    first = token(emulator, {"grant_type": "authorization_code", "code": code})
    assert first.status_code == 200
    second = token(emulator, {"grant_type": "authorization_code", "code": code})
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    bogus = token(emulator, {"grant_type": "authorization_code", "code": "made-up"})
    assert bogus.status_code == 400
    assert bogus.json()["error"] == "invalid_grant"


def test_refresh_rotates(make_emulator):
    emulator = make_emulator(refresh_grace_s=0)  # strict rotation
    first = exchange(emulator)
    refreshed = token(
        emulator, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert refreshed.status_code == 200
    new = refreshed.json()
    assert new["state"] == "refresh_token"
    assert new["refresh_token"] != first["refresh_token"]
    assert new["access_token"] != first["access_token"]
    assert api_get(emulator, new["access_token"]).status_code == 200
    # the old access token stays valid until it expires
    assert api_get(emulator, first["access_token"]).status_code == 200
    # the used refresh token is spent
    again = token(
        emulator, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert again.status_code == 400
    assert again.json() == {
        "error": "invalid_grant",
        "error_description": again.json()["error_description"],
    }
    assert again.json()["error_description"]
    # the new one works (once)
    third = token(emulator, {"grant_type": "refresh_token", "refresh_token": new["refresh_token"]})
    assert third.status_code == 200


def test_concurrent_refresh_exactly_one_wins(make_emulator):
    emulator = make_emulator(refresh_grace_s=0)  # strict rotation
    refresh = exchange(emulator)["refresh_token"]
    results: list[int] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        resp = token(emulator, {"grant_type": "refresh_token", "refresh_token": refresh})
        results.append(resp.status_code)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 400, 400, 400]


def test_rotated_refresh_token_works_once_more_within_the_grace(make_emulator):
    """Bitbucket: the old refresh token "stops working shortly afterwards" (notes §5)."""
    emu = make_emulator(refresh_grace_s=0.5)
    assert emu.config.refresh_grace_s == 0.5

    def refresh(token_value: str) -> requests.Response:
        return token(emu, {"grant_type": "refresh_token", "refresh_token": token_value})

    first = exchange(emu)
    rotated = refresh(first["refresh_token"])
    assert rotated.status_code == 200
    # within the grace: the old token works once more and yields fresh tokens...
    retry = refresh(first["refresh_token"])
    assert retry.status_code == 200
    assert retry.json()["refresh_token"] not in (first["refresh_token"],
                                                 rotated.json()["refresh_token"])
    assert api_get(emu, retry.json()["access_token"]).status_code == 200
    # ...but only once
    again = refresh(first["refresh_token"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # after the grace: rejected, even if it was never reused
    second = refresh(rotated.json()["refresh_token"])
    assert second.status_code == 200
    time.sleep(0.6)
    late = refresh(rotated.json()["refresh_token"])
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"
    # a revoked token gets no grace
    third = refresh(second.json()["refresh_token"])
    assert third.status_code == 200
    assert emu.revoke_token(second.json()["refresh_token"]) is True
    assert refresh(second.json()["refresh_token"]).status_code == 400
    # the default models Bitbucket; strict rotation (0) is configurable at run time
    assert make_emulator().config.refresh_grace_s == 30
    emu.configure(refresh_grace_s=0)
    fourth = refresh(third.json()["refresh_token"])
    assert fourth.status_code == 200
    assert refresh(third.json()["refresh_token"]).status_code == 400


def test_client_credentials_has_no_refresh_token(emulator: Emulator):
    resp = token(emulator, {"grant_type": "client_credentials"})
    assert resp.status_code == 200
    body = resp.json()
    assert "refresh_token" not in body
    assert body["state"] == "client_credentials"
    assert body["token_type"] == "bearer"
    assert api_get(emulator, body["access_token"]).status_code == 200


def test_token_expiry(make_emulator):
    emu = make_emulator(token_lifetime_s=1)
    body = exchange(emu)
    assert body["expires_in"] == 1
    assert api_get(emu, body["access_token"]).status_code == 200
    time.sleep(1.1)
    resp = api_get(emu, body["access_token"])
    assert resp.status_code == 401
    assert resp.json() == {"type": "error", "error": {"message": EXPIRED}}
    # the refresh token still works and yields a fresh access token
    new = token(emu, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert new.status_code == 200
    assert api_get(emu, new.json()["access_token"]).status_code == 200


def test_wrong_client_credentials(emulator: Emulator):
    creds = emulator.credentials
    for auth in ((creds.oauth_client_id, "wrong"), ("unknown-client", creds.oauth_client_secret)):
        resp = token(emulator, {"grant_type": "client_credentials"}, auth=auth)
        assert resp.status_code == 401
        assert resp.json()["error"] == "invalid_client"
        assert resp.json()["error_description"]
    missing = token(emulator, {"grant_type": "client_credentials"}, auth=None)
    assert missing.status_code == 401


def test_bad_grant_types(emulator: Emulator):
    for data, error in (
        ({}, "invalid_request"),
        ({"grant_type": "password", "username": "a", "password": "b"}, "unsupported_grant_type"),
        ({"grant_type": "implicit"}, "unsupported_grant_type"),
    ):
        resp = token(emulator, data)
        assert resp.status_code == 400
        assert resp.json()["error"] == error


def test_revoke_access_and_refresh_tokens(make_emulator):
    emu = make_emulator()
    body = exchange(emu)
    assert emu.revoke_token(body["access_token"]) is True
    resp = api_get(emu, body["access_token"])
    assert resp.status_code == 401
    assert resp.json()["error"]["message"] != EXPIRED
    assert emu.revoke_token(body["refresh_token"]) is True
    resp = token(emu, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"
    assert emu.revoke_token("never-issued") is False


def test_issue_oauth_tokens_helper(emulator: Emulator):
    body = emulator.issue_oauth_tokens()
    assert api_get(emulator, body["access_token"]).status_code == 200
    resp = token(emulator, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert resp.status_code == 200


def test_oauth_requests_are_logged_and_numbered(make_emulator):
    emu = make_emulator()
    exchange(emu)
    log = emu.request_log
    assert [e.template for e in log] == ["/site/oauth2/authorize", "/site/oauth2/access_token"]
    assert [e.n for e in log] == [1, 2]
    assert [e.status for e in log] == [302, 200]
    assert log[1].method == "POST"
    assert emu.request_counts() == {"/site/oauth2/authorize": 1, "/site/oauth2/access_token": 1}
