"""The main job, run by `make run`: `meltano run tap-bitbucket target-duckdb`, then a summary.

With Bitbucket credentials configured (TAP_BITBUCKET_API_TOKEN, TAP_BITBUCKET_ACCESS_TOKEN,
TAP_BITBUCKET_OAUTH_* in the environment or in `.env`), the pipeline runs in Meltano's
`dev` environment against Bitbucket Cloud. Without them it starts the bundled emulator
(`python -m tests.emulator`) on a free loopback port, runs the pipeline in the `demo`
environment against it, and stops the emulator again, also on failure or Ctrl-C.

Either way it ends with the tables of the DuckDB warehouse, their row counts and the file's
path. Running it again is incremental: Meltano keeps the tap's state in its system database
(.meltano/meltano.db). In demo mode each later run first replays one more batch of emulator
mutations (new and updated pull requests, comments, commits, pipelines), so the second run
shows what an incremental sync picks up.

    python -m scripts.demo [--emulator | --bitbucket] [--target target-duckdb]
                           [--full-refresh] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MELTANO = Path(os.environ.get("MELTANO_BIN") or ROOT / ".meltano-venv" / "bin" / "meltano")
DUCKDB_PYTHON = ROOT / ".meltano" / "loaders" / "target-duckdb" / "venv" / "bin" / "python"
# meltano.yml: the dev environment loads into warehouse.duckdb, the demo one into demo.duckdb.
WAREHOUSES = {"dev": ROOT / "output" / "warehouse.duckdb", "demo": ROOT / "output" / "demo.duckdb"}
RUN_LOG = ROOT / "output" / "meltano-run.log"
DEMO_STATE = ROOT / ".meltano" / "demo-runs.json"
EMULATOR_SEED = 1
EMULATOR_SCALE = 1

# Any of these, set in the environment or `.env`, means "sync the real Bitbucket".
CREDENTIAL_VARS = (
    "TAP_BITBUCKET_API_TOKEN",
    "TAP_BITBUCKET_ACCESS_TOKEN",
    "TAP_BITBUCKET_OAUTH_CLIENT_ID",
    "TAP_BITBUCKET_OAUTH_CLIENT_SECRET",
    "TAP_BITBUCKET_OAUTH_ACCESS_TOKEN",
    "TAP_BITBUCKET_OAUTH_REFRESH_TOKEN",
    "TAP_BITBUCKET_OAUTH_VERIFIER",
)


class DemoError(Exception):
    """A failure reported as one line, without a traceback."""


# ----------------------------------------------------------------------------- credentials


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments, `export` and quotes allowed)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if key.startswith("export "):
            key = key[len("export ") :].strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def configured_credentials(environ: Mapping[str, str], dotenv: Mapping[str, str]) -> list[str]:
    """Names of the Bitbucket credential variables that are set (non-empty)."""
    return [name for name in CREDENTIAL_VARS if (environ.get(name) or dotenv.get(name))]


# ----------------------------------------------------------------------------- emulator


@contextmanager
def running_emulator(workdir: Path, seed: int, scale: int) -> Iterator[dict[str, Any]]:
    """Start `python -m tests.emulator` on a free port; yield its credentials document."""
    creds_path = workdir / "emulator-credentials.json"
    log_path = workdir / "emulator.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.emulator",
                "--port",
                "0",  # the OS picks a free port; the credentials file says which
                "--seed",
                str(seed),
                "--scale",
                str(scale),
                "--write-credentials",
                str(creds_path),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield _wait_for_emulator(proc, creds_path, log_path)
    finally:
        _stop(proc)


def _wait_for_emulator(
    proc: subprocess.Popen[bytes], creds_path: Path, log_path: Path
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise DemoError(f"the emulator exited with code {proc.returncode}:\n{output}")
        if "listening" in log_path.read_text(encoding="utf-8", errors="replace"):
            document: dict[str, Any] = json.loads(creds_path.read_text(encoding="utf-8"))
            return document
        time.sleep(0.1)
    raise DemoError("the emulator did not start within 60 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def mutate(base_url: str, times: int) -> None:
    """Replay `times` batches of emulator mutations (deterministic: same batches every run)."""
    for _ in range(times):
        request = urllib.request.Request(f"{base_url}/_emulator/mutate", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()


# ----------------------------------------------------------------------------- meltano

_LOG_TIME = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z\s+")
_LOG_LINE = re.compile(r"^\S+\s+\[(?P<level>\w+)\s*\]\s+(?P<source>\S+)")


def run_meltano(
    environment: str,
    target: str,
    env: Mapping[str, str],
    *,
    full_refresh: bool,
    verbose: bool,
    env_file: Path | None = None,
) -> None:
    """`meltano run tap-bitbucket <target>`: full log to output/meltano-run.log, the gist here."""
    if not MELTANO.exists():
        raise DemoError(f"{MELTANO} is missing: run `make run` (it installs Meltano first)")
    command = [str(MELTANO), "--environment", environment]
    if env_file is not None:
        command += ["--env-file", str(env_file)]
    command.append("run")
    if full_refresh:
        command.append("--full-refresh")
    command += ["tap-bitbucket", target]
    shown = [c for c in command[1:] if c != "--env-file" and c != str(env_file)]
    print(f"$ meltano {' '.join(shown)}", flush=True)
    RUN_LOG.parent.mkdir(parents=True, exist_ok=True)
    tail: list[str] = []
    with RUN_LOG.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [str(MELTANO), "--log-format", "uncolored", *command[1:]],
            cwd=ROOT,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                tail = [*tail[-39:], line.rstrip("\n")]
                if verbose or _worth_showing(line):
                    print(f"  {_LOG_TIME.sub('', line.rstrip())}", flush=True)
            code = proc.wait()
        except BaseException:
            _stop_meltano(proc)
            raise
    if code != 0:
        shown = "\n".join(f"  {line}" for line in tail)
        raise DemoError(
            f"meltano run failed with exit code {code}; the last lines of {RUN_LOG}:\n{shown}"
        )


def _stop_meltano(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _worth_showing(line: str) -> bool:
    """Meltano's own progress lines, warnings and errors; not every tap metric."""
    match = _LOG_LINE.match(line)
    if match is None:
        return False
    level, source = match["level"].lower(), match["source"]
    if level in {"warning", "error", "critical"}:
        return True
    return source == "meltano" and level == "info"


# ----------------------------------------------------------------------------- summary

_SUMMARY_QUERY = r"""
import json, sys
import duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
tables = con.execute(
    "SELECT table_schema, table_name FROM information_schema.tables "
    "WHERE table_type = 'BASE TABLE' ORDER BY 1, 2"
).fetchall()
print(json.dumps([
    [schema, name, con.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchone()[0]]
    for schema, name in tables
]))
"""


def warehouse_tables(path: Path) -> list[tuple[str, str, int]]:
    """(schema, table, rows) of a DuckDB file, read with target-duckdb's own duckdb."""
    if not DUCKDB_PYTHON.exists():
        raise DemoError(f"{DUCKDB_PYTHON} is missing: run `make run` (meltano install)")
    result = subprocess.run(
        [str(DUCKDB_PYTHON), "-c", _SUMMARY_QUERY, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise DemoError(f"could not read {path}: {result.stderr.strip()[-500:]}")
    return [(s, t, int(n)) for s, t, n in json.loads(result.stdout)]


def summary(path: Path, before: Mapping[str, int]) -> str:
    rows = warehouse_tables(path)
    if not rows:
        return f"DuckDB warehouse {path}: no tables yet."
    width = max(len(f"{s}.{t}") for s, t, _ in rows)
    lines = [f"DuckDB warehouse: {path}", ""]
    lines.append(f"  {'table'.ljust(width)}  {'rows':>8}")
    for schema, table, count in rows:
        name = f"{schema}.{table}"
        delta = count - before.get(name, 0)
        change = f"  (+{delta})" if before and delta else ""
        lines.append(f"  {name.ljust(width)}  {count:>8,}{change}")
    total = sum(count for _, _, count in rows)
    lines += ["", f"  {len(rows)} tables, {total:,} rows"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def _shown(path: Path) -> str:
    """A path relative to the repository when it is inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _load_demo_runs() -> int:
    try:
        return int(json.loads(DEMO_STATE.read_text(encoding="utf-8"))["runs"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _save_demo_runs(runs: int) -> None:
    DEMO_STATE.parent.mkdir(parents=True, exist_ok=True)
    DEMO_STATE.write_text(json.dumps({"runs": runs}) + "\n", encoding="utf-8")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__.split("\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--emulator", action="store_true", help="use the bundled emulator even with credentials"
    )
    mode.add_argument(
        "--bitbucket", action="store_true", help="use Bitbucket Cloud (credentials required)"
    )
    p.add_argument("--target", default="target-duckdb", help="loader (default target-duckdb)")
    p.add_argument(
        "--full-refresh", action="store_true", help="ignore the saved state (sync everything)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show every log line")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    env = dict(os.environ)
    env.setdefault("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
    credentials = configured_credentials(env, read_dotenv(ROOT / ".env"))
    use_emulator = args.emulator or (not credentials and not args.bitbucket)
    environment = "demo" if use_emulator else (env.get("MELTANO_ENVIRONMENT") or "dev")
    warehouse = Path(
        env.get("TARGET_DUCKDB_FILEPATH") or WAREHOUSES.get(environment, WAREHOUSES["dev"])
    )
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    if args.bitbucket and not credentials:
        print(
            "No Bitbucket credentials: set TAP_BITBUCKET_USERNAME and TAP_BITBUCKET_API_TOKEN "
            "(or TAP_BITBUCKET_ACCESS_TOKEN, or the OAuth settings) in the environment or .env.",
            file=sys.stderr,
        )
        return 2
    show_summary = args.target == "target-duckdb"
    before: dict[str, int] = {}
    if show_summary and warehouse.exists():
        before = {f"{s}.{t}": n for s, t, n in warehouse_tables(warehouse)}
    # A missing warehouse with a saved state would be an incremental load into nothing.
    full_refresh = args.full_refresh or (show_summary and not warehouse.exists())
    try:
        if use_emulator:
            runs = 0 if full_refresh else _load_demo_runs()
            print(
                "No Bitbucket credentials configured: using the bundled emulator "
                "(set TAP_BITBUCKET_API_TOKEN or TAP_BITBUCKET_ACCESS_TOKEN for the real one).",
                flush=True,
            )
            with tempfile.TemporaryDirectory(prefix="tap-bitbucket-demo-") as tmp:
                with running_emulator(Path(tmp), EMULATOR_SEED, EMULATOR_SCALE) as emu:
                    print(f"Emulator listening on {emu['api_url']}", flush=True)
                    if runs:
                        print(
                            f"Replaying {runs} batch(es) of emulator changes since the first "
                            "run: this sync is incremental (Meltano state).",
                            flush=True,
                        )
                        mutate(str(emu["base_url"]), runs)
                    # Real credentials (environment or .env) would override the demo
                    # environment's: the emulator run sees neither.
                    env = {k: v for k, v in env.items() if not k.startswith("TAP_BITBUCKET_")}
                    no_dotenv = Path(tmp) / "empty.env"
                    no_dotenv.write_text("", encoding="utf-8")
                    env.update(
                        BITBUCKET_EMULATOR_API_URL=str(emu["api_url"]),
                        BITBUCKET_EMULATOR_OAUTH_URL=str(emu["oauth_url"]),
                        BITBUCKET_EMULATOR_EMAIL=str(emu["credentials"]["email"]),
                        BITBUCKET_EMULATOR_API_TOKEN=str(emu["credentials"]["api_token"]),
                    )
                    run_meltano(
                        "demo",
                        args.target,
                        env,
                        full_refresh=full_refresh,
                        verbose=args.verbose,
                        env_file=no_dotenv,
                    )
                print("Emulator stopped.", flush=True)
            _save_demo_runs(runs + 1)
        else:
            print(
                f"Bitbucket credentials found ({', '.join(credentials) or 'none'}): "
                f"syncing Bitbucket Cloud in the '{environment}' environment.",
                flush=True,
            )
            run_meltano(
                environment, args.target, env, full_refresh=full_refresh, verbose=args.verbose
            )
    except KeyboardInterrupt:
        print("\nInterrupted; the emulator (if any) was stopped.", file=sys.stderr)
        return 130
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Full log: {_shown(RUN_LOG)}")
    if show_summary:
        print()
        print(summary(warehouse, before))
        try:
            report = build_analytics(environment, env, warehouse)
        except DemoError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"\nReport: {_shown(report)}")
    return 0


def build_analytics(environment: str, env: Mapping[str, str], warehouse: Path) -> Path:
    """`meltano invoke dbt-duckdb:build` on the warehouse just loaded (the models and their
    tests of transform/), then output/report.html from the marts."""
    from scripts import report  # noqa: PLC0415 (plotly is only needed here)

    command = [str(MELTANO), "--environment", environment, "invoke", "dbt-duckdb:build"]
    print(f"\n$ meltano {' '.join(command[1:])}", flush=True)
    dbt_env = {k: v for k, v in env.items() if not k.startswith("TAP_BITBUCKET_")}
    dbt_env["BITBUCKET_DUCKDB_PATH"] = str(warehouse)
    with RUN_LOG.open("a", encoding="utf-8") as log:
        result = subprocess.run(
            command, cwd=ROOT, env=dbt_env, stdout=log, stderr=subprocess.STDOUT, check=False
        )
    if result.returncode != 0:
        raise DemoError(f"dbt build failed (exit {result.returncode}); see {_shown(RUN_LOG)}")
    print("  dbt build: models and tests passed", flush=True)
    out = ROOT / "output" / "report.html"
    out.write_text(report.render(report.read_marts(warehouse)), encoding="utf-8")
    return out


if __name__ == "__main__":
    sys.exit(main())
