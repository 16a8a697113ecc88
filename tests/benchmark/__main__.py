"""Benchmark: request minimality, throughput, concurrency and memory of the tap.

Run from the repo root:  python -m tests.benchmark [--scale 1] [--wall-scale 7]

It starts the bundled emulator, runs the real tap (as a subprocess, the way Meltano
runs it) and prints progress lines, then ONE JSON object as the last line:

* requests_full / requests_min_full: a full sync of the default-selected streams, and
  the floor computed from the emulator's ground truth (tests/benchmark/minimum.py);
* requests_incremental_nochange / requests_min_incremental_nochange: a second sync
  from the first one's state with nothing changed;
* records, records_per_s, raw_records_per_s: the tap's throughput, and that of a
  minimal client that fetches exactly the same pages with `requests` and writes each
  record as a JSON line (the ceiling for a Python tap), both as fresh processes,
  taking turns --repeat times (the median wall time of each side counts);
* wall_s_workers_1 / wall_s_workers_8: the same sync at 100 ms injected latency on at
  least 50 repositories, with max_workers 1 and 8;
* peak_rss_mb_scale_1 / peak_rss_mb_scale_10: the tap's peak RSS on a full sync.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.benchmark.minimum import minimum_requests
from tests.emulator import Emulator, EmulatorConfig

ROOT = Path(__file__).resolve().parents[2]
# Streams for the concurrency runs: one list per repository each, so the run is
# dominated by per-repository latency, as real syncs are.
WALL_STREAMS = ("workspaces", "repositories", "branches", "tags", "pull_requests", "pipelines")


def tap_config(emu: Emulator, **extra: object) -> dict[str, object]:
    creds = emu.credentials
    return {
        "api_url": emu.api_url,
        "username": creds.email,
        "api_token": creds.api_token,
        **extra,
    }


def run_tap(
    config: dict[str, object],
    *,
    state: dict[str, object] | None = None,
    catalog: dict[str, object] | None = None,
) -> dict[str, object]:
    """Run the tap as a child process; return counts, last state, wall time, peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp, "config.json")
        cfg.write_text(json.dumps(config))
        args = [sys.executable, "-m", "tap_bitbucket.tap", "--config", str(cfg)]
        if state is not None:
            Path(tmp, "state.json").write_text(json.dumps(state))
            args += ["--state", str(Path(tmp, "state.json"))]
        if catalog is not None:
            Path(tmp, "catalog.json").write_text(json.dumps(catalog))
            args += ["--catalog", str(Path(tmp, "catalog.json"))]
        out_path = Path(tmp, "out.jsonl")
        err_path = Path(tmp, "err.log")
        started = time.perf_counter()
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(args, stdout=out, stderr=err, cwd=ROOT)
            peak_kib = 0
            while proc.poll() is None:
                peak_kib = max(peak_kib, _high_water_kib(proc.pid))
                time.sleep(0.02)
            status = proc.returncode
        wall = time.perf_counter() - started
        if status != 0:
            tail = err_path.read_text(errors="replace").splitlines()[-5:]
            raise SystemExit(f"tap failed ({status}): " + " | ".join(tail))
        records = 0
        last_state: dict[str, object] = {}
        with out_path.open("rb") as fh:
            for line in fh:
                if line.startswith(b'{"type":"RECORD"'):
                    records += 1
                elif b'"type":"STATE"' in line[:40]:
                    last_state = json.loads(line)["value"]
        # The cap's closing line (tap_bitbucket/progress.py): the run stopped early.
        capped = b"max_requests_per_run (" in err_path.read_bytes()
    return {
        "records": records,
        "capped": capped,
        "state": last_state,
        "wall_s": wall,
        "peak_rss_mb": peak_kib / 1024,
    }


def _high_water_kib(pid: int) -> int:
    """VmHWM: the process's peak RSS since exec.

    Not ru_maxrss from wait4: that counts the pages the child shared with this process
    between fork and exec, and this process holds the emulator's whole dataset.
    """
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


RAW_CLIENT = r"""
import json, sys, time, requests
urls = json.load(open(sys.argv[1]))
auth = (sys.argv[2], sys.argv[3])
session = requests.Session()
out = open("/dev/null", "w")
records = 0
started = time.perf_counter()
for url in urls:
    body = session.get(url, auth=auth, timeout=60).json()
    for value in body.get("values", [body]):
        out.write(json.dumps({"type": "RECORD", "record": value}) + "\n")
        records += 1
print(json.dumps({"records": records}))
"""


def run_raw_client(emu: Emulator, urls: list[str]) -> dict[str, float]:
    """The ceiling: the same pages, fetched and written by the simplest client."""
    with tempfile.TemporaryDirectory() as tmp:
        url_file = Path(tmp, "urls.json")
        url_file.write_text(json.dumps(urls))
        creds = emu.credentials
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", RAW_CLIENT, str(url_file), creds.email, creds.api_token],
            capture_output=True,
            check=True,
            text=True,
        )
        wall = time.perf_counter() - started
    return {"records": json.loads(result.stdout.splitlines()[-1])["records"], "wall_s": wall}


def api_requests(emu: Emulator) -> list[str]:
    """URLs of the successful API requests in the log, in order."""
    urls = []
    for entry in emu.request_log:
        if entry.path.startswith("/2.0/") and entry.status == 200:
            query = f"?{entry.query}" if entry.query else ""
            urls.append(f"{emu.base_url}{entry.path}{query}")
    return urls


def count_api_requests(emu: Emulator) -> int:
    return sum(1 for e in emu.request_log if e.path.startswith("/2.0/"))


def selection_catalog(config: dict[str, object], streams: tuple[str, ...]) -> dict[str, object]:
    """A catalog that selects exactly `streams` (the tap's own discovery output)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp, "config.json")
        cfg.write_text(json.dumps(config))
        out = subprocess.run(
            [sys.executable, "-m", "tap_bitbucket.tap", "--config", str(cfg), "--discover"],
            capture_output=True,
            check=True,
            cwd=ROOT,
        ).stdout
    catalog = json.loads(out)
    for entry in catalog["streams"]:
        chosen = entry["tap_stream_id"] in streams
        for md in entry["metadata"]:
            if md["breadcrumb"] == []:
                md["metadata"]["selected"] = chosen
    return catalog


def log(message: str) -> None:
    print(message, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="dataset scale of the request runs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="max_workers of the request and throughput runs (at 0 ms latency more threads only add GIL contention)",
    )
    parser.add_argument("--latency-ms", type=float, default=100, help="latency of the wall runs")
    parser.add_argument(
        "--wall-scale", type=int, default=7, help="scale of the wall runs (>= 50 repos)"
    )
    parser.add_argument(
        "--rss-scale", type=int, default=10, help="the larger scale of the RSS runs"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="throughput runs of the tap and of the raw client"
    )
    args = parser.parse_args()
    result: dict[str, object] = {"scale": args.scale, "machine": f"{os.cpu_count()} cores"}

    with Emulator(EmulatorConfig(seed=args.seed, scale=args.scale)).start() as emu:
        config = tap_config(emu, max_workers=args.workers)
        full = run_tap(config)
        result["requests_full"] = count_api_requests(emu)
        result["requests_min_full"] = sum(
            minimum_requests(emu.dataset, incremental_nochange=False).values()
        )
        result["records"] = full["records"]
        result["peak_rss_mb_scale_1" if args.scale == 1 else "peak_rss_mb"] = round(
            float(full["peak_rss_mb"]), 1
        )
        urls = api_requests(emu)
        log(
            f"full sync: {full['records']} records, {result['requests_full']} requests, "
            f"{full['wall_s']:.2f}s"
        )

        # Throughput: the tap and the raw client take turns, --repeat times each, and
        # each side's median counts. One run of either varies by +-30% on a shared VM.
        tap_walls: list[float] = [float(full["wall_s"])]
        raw_walls: list[float] = []
        for turn in range(args.repeat):
            raw = run_raw_client(emu, urls)
            raw_walls.append(raw["wall_s"])
            log(f"raw client: {raw['records']} records in {raw['wall_s']:.2f}s")
            if turn + 1 < args.repeat:
                again_full = run_tap(config)
                tap_walls.append(float(again_full["wall_s"]))
                log(
                    f"full sync again: {again_full['records']} records, {again_full['wall_s']:.2f}s"
                )
        result["records_per_s"] = round(float(full["records"]) / statistics.median(tap_walls), 1)
        result["raw_records"] = raw["records"]
        result["raw_records_per_s"] = round(raw["records"] / statistics.median(raw_walls), 1)
        result["throughput_runs"] = {
            "tap_wall_s": [round(w, 2) for w in tap_walls],
            "raw_wall_s": [round(w, 2) for w in raw_walls],
        }

        emu.reset_log()
        again = run_tap(config, state=full["state"])  # type: ignore[arg-type]
        result["requests_incremental_nochange"] = count_api_requests(emu)
        result["requests_min_incremental_nochange"] = sum(
            minimum_requests(emu.dataset, incremental_nochange=True).values()
        )
        result["records_incremental_nochange"] = again["records"]
        log(f"incremental, no change: {result['requests_incremental_nochange']} requests")

    with Emulator(
        EmulatorConfig(seed=args.seed, scale=args.wall_scale, latency_ms=args.latency_ms)
    ).start() as emu:
        repos = sum(1 for r in emu.dataset.repos if not r.deleted)
        result["wall_repositories"] = repos
        catalog = selection_catalog(tap_config(emu), WALL_STREAMS)
        for workers in (1, 8):
            run = run_tap(tap_config(emu, max_workers=workers), catalog=catalog)
            result[f"wall_s_workers_{workers}"] = round(float(run["wall_s"]), 2)
            log(
                f"{repos} repositories at {args.latency_ms:.0f} ms, max_workers={workers}: "
                f"{run['wall_s']:.2f}s, {run['records']} records"
            )

    for scale in (1, args.rss_scale):
        if scale == 1 and "peak_rss_mb_scale_1" in result:
            continue
        with Emulator(EmulatorConfig(seed=args.seed, scale=scale)).start() as emu:
            run = run_tap(tap_config(emu, max_workers=args.workers))
            key = "peak_rss_mb_scale_1" if scale == 1 else "peak_rss_mb_scale_10"
            result[key] = round(float(run["peak_rss_mb"]), 1)
            log(f"scale {scale}: {run['records']} records, peak RSS {run['peak_rss_mb']:.1f} MB")

    def ratio(a: str, b: str) -> float:
        return round(float(result[a]) / float(result[b]), 3)  # type: ignore[arg-type]

    result["ratio_requests_full"] = ratio("requests_full", "requests_min_full")
    result["ratio_requests_incremental"] = ratio(
        "requests_incremental_nochange", "requests_min_incremental_nochange"
    )
    result["ratio_records_per_s"] = ratio("records_per_s", "raw_records_per_s")
    result["ratio_wall_1_over_8"] = ratio("wall_s_workers_1", "wall_s_workers_8")
    result["ratio_rss_10_over_1"] = ratio("peak_rss_mb_scale_10", "peak_rss_mb_scale_1")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
