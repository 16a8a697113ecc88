"""The desktop (browser) flow: a loopback callback server and the browser."""

from __future__ import annotations

import contextlib
import html
import http.server
import logging
import secrets
import socket
import sys
import threading
import webbrowser
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tap_bitbucket.auth.constants import LOGGER
from tap_bitbucket.auth.settings import OAuthOptions, authorization_url, check_loopback_callback
from tap_bitbucket.auth.store import TokenSet
from tap_bitbucket.auth.token_endpoint import TokenEndpoint
from tap_bitbucket.errors import AuthError

# --------------------------------------------------------------------------------------
# The desktop (browser) flow
# --------------------------------------------------------------------------------------

_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>tap-bitbucket</title></head>"
    "<body style='font-family:sans-serif;margin:3em'><h1>{title}</h1><p>{text}</p></body></html>"
)


class _CallbackServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        family: int,
        *,
        expected_path: str,
        state: str,
        exchange: Callable[[str], TokenSet],
        logger: logging.Logger,
    ) -> None:
        self.address_family = family
        self.expected_path = expected_path.rstrip("/") or "/"
        self.expected_state = state
        self.exchange = exchange
        self.logger = logger
        self.done = threading.Event()
        self.result: TokenSet | None = None
        self.error: AuthError | None = None
        self.rejected_states = 0
        self.outcome_lock = threading.Lock()
        super().__init__(address, _CallbackHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.logger.debug("The OAuth callback server failed to answer a request")


class _CallbackHandler(http.server.BaseHTTPRequestHandler):
    server: _CallbackServer
    timeout = 15  # seconds a connection may stay silent
    server_version = "tap-bitbucket-oauth"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default access log: the request line carries the code."""

    def _reply(self, status: int, title: str, text: str) -> None:
        body = _PAGE.format(title=html.escape(title), text=html.escape(text)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        server = self.server
        parts = urlsplit(self.path)
        if (parts.path.rstrip("/") or "/") != server.expected_path:
            self._reply(404, "Not found", "This is the tap-bitbucket OAuth callback server.")
            return
        query = parse_qs(parts.query)
        state = (query.get("state") or [""])[0]
        if not secrets.compare_digest(state.encode(), server.expected_state.encode()):
            server.rejected_states += 1
            server.logger.warning(
                "Rejected an OAuth callback with a missing or wrong state; still waiting for "
                "the authorization started by this run."
            )
            self._reply(
                400,
                "Authorization rejected",
                "The state parameter does not match this login attempt. Start the "
                "authorization again from the URL printed by tap-bitbucket.",
            )
            return
        with server.outcome_lock:
            if server.done.is_set():
                self._reply(409, "Already done", "This authorization was already handled.")
                return
            error = (query.get("error") or [""])[0]
            code = (query.get("code") or [""])[0]
            if error:
                server.error = AuthError(
                    f"The authorization was refused in the browser (error={error[:60]}); run "
                    "`tap-bitbucket-oauth login` again and grant access."
                )
                server.done.set()
                self._reply(
                    400,
                    "Authorization refused",
                    "tap-bitbucket did not get access. You can close this tab.",
                )
                return
            if not code:
                self._reply(400, "No code", "The callback carried no authorization code.")
                return
            try:
                server.result = server.exchange(code)
            except AuthError as exc:
                server.error = exc
                server.done.set()
                self._reply(
                    502,
                    "Authorization failed",
                    "tap-bitbucket could not exchange the code; see its error message.",
                )
                return
            server.done.set()
        self._reply(
            200, "tap-bitbucket is authorized", "The tokens were saved. You can close this tab."
        )


def _announce_to_stderr(url: str) -> None:
    print(
        f"Open this URL in a browser to authorize tap-bitbucket: {url}",
        file=sys.stderr,
        flush=True,
    )


def run_browser_flow(
    options: OAuthOptions,
    endpoint: TokenEndpoint,
    *,
    logger: logging.Logger | None = None,
    announce: Callable[[str], None] | None = None,
) -> TokenSet:
    """Run the desktop authorization-code flow and return the tokens (not yet saved)."""
    log = logger or LOGGER
    options.require_client()
    host, port, path = check_loopback_callback(options.callback_url)
    family = socket.AF_INET6 if host == "::1" else socket.AF_INET
    bind_host = "::1" if host == "::1" else "127.0.0.1"
    state = secrets.token_urlsafe(32)
    redirect_uri = options.redirect_uri

    def exchange(code: str) -> TokenSet:
        return endpoint.exchange_code(code, redirect_uri)

    try:
        server = _CallbackServer(
            (bind_host, port),
            family,
            expected_path=path,
            state=state,
            exchange=exchange,
            logger=log,
        )
    except OSError as exc:
        raise AuthError(
            f"Cannot listen on {bind_host}:{port} for the OAuth callback "
            f"({exc.strerror or exc.__class__.__name__}); free that port or set callback_url "
            "to another loopback port registered for the consumer."
        ) from None
    url = authorization_url(options, state)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name="oauth-callback",
        daemon=True,
    )
    thread.start()
    try:
        (announce or _announce_to_stderr)(url)
        log.info(
            "Waiting up to %g s for the OAuth callback on %s",
            options.callback_timeout,
            options.callback_url,
        )
        if options.open_browser:
            opened = False
            with contextlib.suppress(Exception):
                opened = webbrowser.open(url)
            if not opened:
                log.info("No browser could be opened; open the URL above by hand.")
        if not server.done.wait(options.callback_timeout):
            raise AuthError(
                f"No OAuth callback reached {options.callback_url} within "
                f"{options.callback_timeout:g} s; open the printed URL in a browser (the "
                "consumer's callback URL must be this callback_url) or raise "
                "oauth_callback_timeout."
            )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    if server.error is not None:
        raise server.error
    if server.result is None:  # pragma: no cover - done is only set with an outcome
        raise AuthError("The OAuth callback carried no result; run `tap-bitbucket-oauth login`.")
    return server.result
