"""The authorization-code grant: tokens persisted in the settings file, refreshed and
rotated under its lock, with the browser flow as the fallback when settings allow it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import requests

from tap_bitbucket.auth.authenticators import OAuthAuth, bearer_of
from tap_bitbucket.auth.browser import run_browser_flow
from tap_bitbucket.auth.constants import LOGIN_HINT
from tap_bitbucket.auth.store import OAuthSettingsStore, TokenSet, verifier_digest
from tap_bitbucket.auth.token_endpoint import OAuthGrantError
from tap_bitbucket.errors import AuthError, ConfigError


class OAuthCodeAuth(OAuthAuth):
    """Authorization-code grant with tokens persisted in the settings file."""

    grant = "oauth_code"

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        session: requests.Session | None,
        logger: logging.Logger | None,
    ) -> None:
        super().__init__(config, session=session, logger=logger)
        self.store = OAuthSettingsStore(
            self.options.settings_location, self.options.settings_key, logger=self.logger
        )
        self._prepared = False

    # -- state -----------------------------------------------------------------------

    def _adopt(self, tokens: TokenSet) -> None:
        self._remember(*tokens.secrets())
        self._tokens = tokens

    def _check_owner(self, tokens: TokenSet | None) -> None:
        if tokens is None or not tokens.client_id or not self.options.client_id:
            return
        if tokens.client_id != self.options.client_id:
            raise AuthError(
                f"The OAuth settings file {self.store.path} holds tokens of another OAuth "
                "consumer than oauth_client_id; use the matching oauth_client_id, or delete "
                "the file and run `tap-bitbucket-oauth login`."
            )

    def _save_and_adopt(self, tokens: TokenSet) -> None:
        self.store.write(tokens)  # the rotated refresh token is safe before the token is used
        self._adopt(tokens)

    def _refresh_locked(self, disk: TokenSet | None) -> None:
        """Refresh with the newest refresh token; the caller holds the settings-file lock."""
        refresh_token = (disk.refresh_token if disk is not None else None) or (
            self._tokens.refresh_token if self._tokens is not None else None
        )
        if not refresh_token:
            raise AuthError(
                "The OAuth access token expired and there is no refresh token to renew it; "
                f"{LOGIN_HINT}."
            )
        self.store.check_writable()
        fresh = self.endpoint.refresh(refresh_token)
        previous = disk or self._tokens
        if not fresh.refresh_token:
            fresh = replace(fresh, refresh_token=refresh_token)
        if previous is not None and previous.verifier_sha256:
            fresh = replace(fresh, verifier_sha256=previous.verifier_sha256)
        if fresh.scopes is None and previous is not None:
            fresh = replace(fresh, scopes=previous.scopes)
        self._save_and_adopt(fresh)
        self.logger.info(
            "Refreshed the OAuth access token (valid %g s); saved to %s",
            fresh.expires_in or 0,
            self.store.path,
        )

    def _refresh(self, rejected: str | None) -> bool:
        """Make the in-memory token usable again; False when nothing could be done."""
        with self.store.locked():
            disk = self.store.read()
            self._check_owner(disk)
            if (
                disk is not None
                and disk.access_token
                and disk.access_token != rejected
                and disk.is_fresh(self.options.refresh_margin)
            ):
                # Another process already rotated the tokens: use them, do not refresh again
                # (that would burn the refresh token the other process just saved).
                self._adopt(disk)
                return True
            if not ((disk and disk.refresh_token) or (self._tokens and self._tokens.refresh_token)):
                return False
            self._refresh_locked(disk)
            return True

    def _refresh_or_fall_back(self, saved: TokenSet | None, what: str) -> bool:
        """Refresh; False when the refresh token was rejected and GETANDREFRESH lets the
        browser flow get new tokens instead (any other failure is raised)."""
        try:
            self._refresh_locked(saved)
        except OAuthGrantError as exc:
            if self.options.initiate != "GETANDREFRESH" or exc.error != "invalid_grant":
                raise
            self.logger.warning("%s was rejected; starting the browser flow.", what)
            return False
        return True

    # -- interface -------------------------------------------------------------------

    def prepare(self) -> None:
        with self._lock:
            self._prepare_locked()
            self._prepared = True

    def _prepare_locked(self) -> None:
        options = self.options
        if options.initiate == "OFF":
            if not options.access_token:
                raise ConfigError("oauth_access_token", "is required when initiate_oauth is OFF")
            self._adopt(TokenSet(access_token=options.access_token))
            return
        options.require_client()
        margin = options.refresh_margin
        with self.store.locked():
            disk = self.store.read()
            self._check_owner(disk)
            usable_disk = disk if disk is not None and disk.has_tokens else None
            if options.verifier:
                digest = verifier_digest(options.verifier)
                if usable_disk is None or usable_disk.verifier_sha256 != digest:
                    try:
                        tokens = self.endpoint.exchange_code(options.verifier, options.redirect_uri)
                    except OAuthGrantError as exc:
                        if exc.error != "invalid_grant" or usable_disk is None:
                            raise
                        self.logger.warning(
                            "oauth_verifier was rejected (probably already used); using the "
                            "tokens of the settings file %s",
                            self.store.path,
                        )
                        usable_disk = replace(usable_disk, verifier_sha256=digest)
                        if usable_disk.is_fresh(margin):
                            self._save_and_adopt(usable_disk)
                            return
                    else:
                        self._save_and_adopt(replace(tokens, verifier_sha256=digest))
                        self.logger.info(
                            "Exchanged oauth_verifier for OAuth tokens; saved to %s",
                            self.store.path,
                        )
                        return
            if usable_disk is not None:
                self._adopt(usable_disk)
                self.logger.info("Using the OAuth tokens of %s", self.store.path)
                if usable_disk.is_fresh(margin):
                    return
                if self._refresh_or_fall_back(usable_disk, "The saved OAuth refresh token"):
                    return
            elif options.refresh_token:
                self._adopt(
                    TokenSet(
                        access_token=options.access_token,
                        refresh_token=options.refresh_token,
                        client_id=options.client_id,
                    )
                )
                if self._refresh_or_fall_back(None, "oauth_refresh_token"):
                    return
            elif options.access_token and options.initiate != "GETANDREFRESH":
                self.logger.warning(
                    "Only oauth_access_token is set (no refresh token, no settings file): it "
                    "is used as is and cannot be refreshed."
                )
                self._adopt(TokenSet(access_token=options.access_token))
                return
        if options.initiate == "GETANDREFRESH":
            tokens = run_browser_flow(options, self.endpoint, logger=self.logger)
            self._remember(*tokens.secrets())
            with self.store.locked():
                self._save_and_adopt(tokens)
            self.logger.info("Saved the OAuth tokens to %s", self.store.path)
            return
        raise AuthError(
            f"No OAuth tokens: the settings file {self.store.path} does not exist or is empty "
            "and neither oauth_verifier nor oauth_refresh_token is set; run "
            "`tap-bitbucket-oauth login`, set oauth_verifier, or set initiate_oauth to "
            "GETANDREFRESH."
        )

    def _can_refresh(self) -> bool:
        return self.options.initiate != "OFF"

    def _authorization(self) -> str:
        tokens = self._tokens
        margin = self.options.refresh_margin
        if not (self._prepared and tokens is not None and tokens.is_fresh(margin)):
            with self._lock:
                if not self._prepared:
                    self.prepare()
                tokens = self._tokens
                if tokens is not None and not tokens.is_fresh(margin) and self._can_refresh():
                    self._refresh(rejected=None)
                    tokens = self._tokens
        if tokens is None or not tokens.access_token:
            raise AuthError(f"No OAuth access token is available; {LOGIN_HINT}.")
        return f"Bearer {tokens.access_token}"

    def handle_unauthorized(self, response: requests.Response) -> bool:
        if not self._can_refresh():
            return False
        failed = bearer_of(response)
        with self._lock:
            current = self._tokens
            if (
                current is not None
                and current.access_token
                and failed is not None
                and current.access_token != failed
                and current.is_fresh(self.options.refresh_margin)
            ):
                return True  # another thread already replaced the rejected token
            return self._refresh(rejected=failed)

    def unauthorized_message(self) -> str:
        if not self._can_refresh():
            return (
                "Bitbucket rejected oauth_access_token (HTTP 401) and initiate_oauth is OFF, "
                "so it is never refreshed; supply a valid oauth_access_token or set "
                "initiate_oauth to REFRESH with a refresh token or settings file."
            )
        return (
            "Bitbucket rejected the OAuth access token even after a refresh (HTTP 401); check "
            f"the consumer's permissions, or {LOGIN_HINT}."
        )
