"""``tap-bitbucket-oauth``: the OAuth web flow as commands, plus the desktop ``login``.

Subcommands (they mirror the reference connector's stored procedures):

* ``get-authorization-url [--callback-url U] [--state S]`` prints ``{"url", "state"}``;
* ``get-access-token [--verifier V] [--callback-url U]`` exchanges a verifier and prints the
  tokens; writes the settings file when ``oauth_settings_location`` is set;
* ``refresh-access-token [--refresh-token R]`` refreshes and prints the new tokens; updates
  the settings file when it is set (or when the refresh token came from it);
* ``login`` runs the desktop flow and writes the settings file; prints a summary without
  token values.

Settings come from ``--config FILE`` (repeatable, later files win, like the tap) and from
``TAP_BITBUCKET_<SETTING>`` environment variables (which win over files, like the tap's
``--config ENV``). Printing tokens on stdout is the purpose of ``get-access-token`` and
``refresh-access-token``; stderr and logs never carry a token or secret. Errors are one line
on stderr with exit code 2 (a traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from tap_bitbucket import auth
from tap_bitbucket.errors import AuthError, ConfigError, TapBitbucketError
from tap_bitbucket.redact import install_redaction, redact

PROG = "tap-bitbucket-oauth"
ENV_PREFIX = "TAP_BITBUCKET_"
LOGGER = logging.getLogger("tap_bitbucket.oauth_cli")

_TRUTHY = ("true", "1", "yes", "on")


class _Secrets:
    """Every secret this run has seen, for redaction of stderr and logs."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def add(self, *values: str | None) -> None:
        for value in values:
            if value and value not in self.values:
                self.values.append(value)

    def __call__(self) -> list[str]:
        return list(self.values)


_SECRETS = _Secrets()


def _env_config() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for prop in auth.AUTH_PROPERTIES:
        raw = os.environ.get(ENV_PREFIX + prop.name.upper())
        if raw is None:
            continue
        kind = prop.type_dict.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        if "boolean" in kinds:
            out[prop.name] = raw.strip().lower() in _TRUTHY
        elif "number" in kinds or "integer" in kinds:
            try:
                out[prop.name] = float(raw)
            except ValueError:
                raise ConfigError(
                    prop.name,
                    f"environment variable {ENV_PREFIX}{prop.name.upper()} is not a number",
                ) from None
        else:
            out[prop.name] = raw
    return out


def load_config(paths: Sequence[str]) -> dict[str, Any]:
    """Merge the JSON config files (later wins), then the environment variables."""
    config: dict[str, Any] = {}
    for path in paths:
        if path == "ENV":  # the tap's `--config ENV`: env vars are always read here
            continue
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except OSError as exc:
            raise ConfigError(
                "config", f"cannot read {path} ({exc.strerror or exc.__class__.__name__})"
            ) from None
        except ValueError:
            raise ConfigError("config", f"{path} is not valid JSON") from None
        if not isinstance(data, dict):
            raise ConfigError("config", f"{path} must hold a JSON object")
        config.update(data)
    config.update(_env_config())
    for name in auth.SECRET_SETTINGS:
        value = config.get(name)
        if isinstance(value, str):
            _SECRETS.add(value, value.strip())
    return config


def _emit(payload: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    sys.stdout.flush()


def _token_payload(tokens: auth.TokenSet, written: str | None) -> dict[str, Any]:
    return {
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "expires_in": int(tokens.expires_in) if tokens.expires_in is not None else None,
        "token_type": tokens.token_type,
        "scopes": tokens.scopes,
        "settings_location": written,
    }


def _options(config: Mapping[str, Any], callback_url: str | None = None) -> auth.OAuthOptions:
    options = auth.OAuthOptions.from_config(config).with_callback(callback_url)
    _SECRETS.add(*options.secrets())
    return options


def _store(options: auth.OAuthOptions) -> auth.OAuthSettingsStore:
    return auth.OAuthSettingsStore(options.settings_location, options.settings_key, logger=LOGGER)


def cmd_get_authorization_url(config: Mapping[str, Any], args: argparse.Namespace) -> None:
    options = _options(config, args.callback_url)
    state = args.state or secrets.token_urlsafe(32)
    _emit({"url": auth.authorization_url(options, state), "state": state})


def cmd_get_access_token(config: Mapping[str, Any], args: argparse.Namespace) -> None:
    options = _options(config, args.callback_url)
    verifier = auth.extract_code(args.verifier) if args.verifier else options.verifier
    if not verifier:
        raise ConfigError("oauth_verifier", "is required: pass --verifier CODE or set it in config")
    _SECRETS.add(args.verifier, verifier)
    options.require_client()
    endpoint = auth.TokenEndpoint(options, logger=LOGGER).apply_retry_settings(config)
    written: str | None = None
    if options.settings_location_explicit:
        store = _store(options)
        with store.locked():
            store.check_writable()
            tokens = endpoint.exchange_code(verifier, options.redirect_uri)
            _SECRETS.add(*tokens.secrets())
            tokens = replace(tokens, verifier_sha256=auth.verifier_digest(verifier))
            store.write(tokens)
            written = store.path
    else:
        tokens = endpoint.exchange_code(verifier, options.redirect_uri)
        _SECRETS.add(*tokens.secrets())
    if written:
        LOGGER.info("Saved the OAuth tokens to %s", written)
    _emit(_token_payload(tokens, written))


def cmd_refresh_access_token(config: Mapping[str, Any], args: argparse.Namespace) -> None:
    options = _options(config)
    given = args.refresh_token or options.refresh_token
    _SECRETS.add(given)
    options.require_client()
    endpoint = auth.TokenEndpoint(options, logger=LOGGER).apply_retry_settings(config)
    store = _store(options)
    use_file = options.settings_location_explicit or (not given and store.exists())
    if not use_file and given and store.exists():
        # The default file may hold this very refresh token: keep it in step when it does.
        try:
            disk = store.read()
        except AuthError:
            disk = None
        use_file = disk is not None and disk.refresh_token == given
    if not use_file:
        if not given:
            raise ConfigError(
                "oauth_refresh_token",
                "is required: pass --refresh-token, set it in config, or set "
                "oauth_settings_location to a settings file that holds one",
            )
        tokens = endpoint.refresh(given)
        _SECRETS.add(*tokens.secrets())
        _emit(_token_payload(tokens, None))
        return
    if not given and not store.exists():
        raise AuthError(
            f"The OAuth settings file {store.path} does not exist; pass --refresh-token, or "
            "run `tap-bitbucket-oauth login` first."
        )
    with store.locked():
        disk = store.read()
        if disk is not None:
            _SECRETS.add(*disk.secrets())
        refresh_token = given or (disk.refresh_token if disk is not None else None)
        if not refresh_token:
            raise AuthError(
                f"The OAuth settings file {store.path} holds no refresh token; {auth.LOGIN_HINT}."
            )
        store.check_writable()
        tokens = endpoint.refresh(refresh_token)
        _SECRETS.add(*tokens.secrets())
        if not tokens.refresh_token:
            tokens = replace(tokens, refresh_token=refresh_token)
        if disk is not None and disk.verifier_sha256:
            tokens = replace(tokens, verifier_sha256=disk.verifier_sha256)
        store.write(tokens)
    LOGGER.info("Saved the refreshed OAuth tokens to %s", store.path)
    _emit(_token_payload(tokens, store.path))


def cmd_login(config: Mapping[str, Any], args: argparse.Namespace) -> None:
    overrides = dict(config)
    if args.timeout is not None:
        overrides["oauth_callback_timeout"] = args.timeout
    if args.no_browser:
        overrides["oauth_open_browser"] = False
    options = _options(overrides, args.callback_url)
    options.require_client()
    auth.check_loopback_callback(options.callback_url)
    store = _store(options)
    with store.locked():
        store.check_writable()
    endpoint = auth.TokenEndpoint(options, logger=LOGGER).apply_retry_settings(config)
    tokens = auth.run_browser_flow(options, endpoint, logger=LOGGER)
    _SECRETS.add(*tokens.secrets())
    with store.locked():
        store.write(tokens)
    LOGGER.info("Saved the OAuth tokens to %s", store.path)
    _emit(
        {
            "settings_location": store.path,
            "encrypted": bool(options.settings_key),
            "client_id": tokens.client_id,
            "token_type": tokens.token_type,
            "scopes": tokens.scopes,
            "expires_in": int(tokens.expires_in) if tokens.expires_in is not None else None,
            "expires_at": tokens.expires_at,
        }
    )


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        action="append",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="the tap's JSON config file (repeatable; later files win). "
        f"{ENV_PREFIX}<SETTING> environment variables are read too.",
    )
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="debug logging and a traceback on errors",
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="OAuth helper for tap-bitbucket (Bitbucket Cloud OAuth 2.0 consumers).",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "get-authorization-url",
        parents=[common],
        help="print the URL where the user authorizes the consumer",
    )
    p.add_argument("--callback-url", help="callback URL (default: callback_url setting)")
    p.add_argument("--state", help="state value to send (default: a random one)")
    p.set_defaults(func=cmd_get_authorization_url)

    p = sub.add_parser(
        "get-access-token",
        parents=[common],
        help="exchange a verifier (the callback's code) for tokens",
    )
    p.add_argument(
        "--verifier",
        help="the code from the callback URL (or the whole URL); "
        "prefer the oauth_verifier setting, command lines are visible to others",
    )
    p.add_argument("--callback-url", help="the callback URL the code was issued for")
    p.set_defaults(func=cmd_get_access_token)

    p = sub.add_parser(
        "refresh-access-token",
        parents=[common],
        help="refresh the tokens (rotates the refresh token)",
    )
    p.add_argument(
        "--refresh-token",
        help="refresh token (default: oauth_refresh_token, then the settings file)",
    )
    p.set_defaults(func=cmd_refresh_access_token)

    p = sub.add_parser(
        "login",
        parents=[common],
        help="run the browser flow and save the tokens to the settings file",
    )
    p.add_argument("--callback-url", help="loopback callback URL (default: callback_url)")
    p.add_argument("--timeout", type=float, help="seconds to wait for the callback")
    p.add_argument(
        "--no-browser",
        action="store_true",
        help="only print the authorization URL, do not open a browser",
    )
    p.set_defaults(func=cmd_login)
    return parser


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_redaction(_SECRETS)
    try:
        config = load_config(getattr(args, "config", None) or [])
        args.func(config, args)
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as exc:
        if debug:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            sys.stderr.write(redact(text, _SECRETS()))
        if isinstance(exc, TapBitbucketError):
            line = str(exc)
        else:
            detail = str(exc).splitlines()[0] if str(exc) else ""
            line = f"{type(exc).__name__}: {detail} (run with --debug for a traceback)"
        sys.stderr.write(f"{PROG}: error: {_one_line(redact(line, _SECRETS()))}\n")
        sys.stderr.flush()
        return exc.exit_code if isinstance(exc, TapBitbucketError) else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
