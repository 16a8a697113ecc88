"""Run the Bitbucket Cloud emulator in the foreground.

    python -m tests.emulator --port 8765 --seed 1 --scale 1

Prints one line with the API URL and where the credentials can be fetched, then serves until
SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from . import DEFAULT_CALLBACK_URL, Emulator, EmulatorConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.emulator",
        description="Bitbucket Cloud REST API 2.0 emulator (with OAuth server and faults).",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    p.add_argument("--seed", type=int, default=1, help="dataset seed (default 1)")
    p.add_argument("--scale", type=int, default=1, help="dataset scale (default 1)")
    p.add_argument("--latency-ms", type=float, default=0, help="latency added to API requests")
    p.add_argument(
        "--rate-limit", type=int, default=None, help="requests per window per credential"
    )
    p.add_argument("--rate-limit-window", type=float, default=3600, help="window in seconds")
    p.add_argument(
        "--rate-limit-retry-after",
        type=float,
        default=None,
        help="send Retry-After with this many seconds on 429 (Bitbucket sends none)",
    )
    p.add_argument(
        "--token-lifetime", type=float, default=3600, help="OAuth access token lifetime (s)"
    )
    p.add_argument(
        "--refresh-grace",
        type=float,
        default=30,
        help="seconds a rotated refresh token is accepted once more (0 = strict rotation)",
    )
    p.add_argument(
        "--callback-url",
        default=DEFAULT_CALLBACK_URL,
        help=f"OAuth consumer callback URL (default {DEFAULT_CALLBACK_URL})",
    )
    p.add_argument("--fault-seed", type=int, default=0, help="seed for probabilistic faults")
    p.add_argument(
        "--write-credentials",
        metavar="PATH",
        default=None,
        help="write api_url, oauth_url and credentials as JSON to PATH (mode 0600)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = EmulatorConfig(
        seed=args.seed,
        scale=args.scale,
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        rate_limit=args.rate_limit,
        rate_limit_window_s=args.rate_limit_window,
        rate_limit_retry_after=args.rate_limit_retry_after,
        token_lifetime_s=args.token_lifetime,
        refresh_grace_s=args.refresh_grace,
        callback_url=args.callback_url,
        fault_seed=args.fault_seed,
    )
    emu = Emulator(config).start()
    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        if args.write_credentials:
            fd = os.open(args.write_credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(emu.credentials_document(), fh, indent=2)
                fh.write("\n")
        print(
            f"Bitbucket emulator listening: api_url={emu.api_url} oauth_url={emu.oauth_url} "
            f"credentials={emu.base_url}/_emulator/credentials",
            flush=True,
        )
        while not done.wait(0.5):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
