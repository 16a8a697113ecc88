"""The distributions are proven, not assumed: the sdist and the wheel are built with
`python -m build`, pass `twine check --strict`, `check-wheel-contents` and pyroma (10/10),
and the BUILT WHEEL, installed into a fresh venv that cannot see this checkout, runs
`--version`, `--about`, `--discover`, a short sync against the emulator and the drift
detector.

What proves the wheel self-contained: the fresh venv is not made with
--system-site-packages and gets the tap only from the wheel (its dependencies come from
the package index, as a user's would); the tap is run from a folder outside the checkout
with no PYTHONPATH; `tap_bitbucket` must import from the venv's site-packages; every file
git tracks under tap_bitbucket/ (the schemas, the drift baseline) must be in the wheel;
and the installed tap's catalog must equal the checkout's.

WHEEL_TEST_DIST=<folder> tests distributions built before (the release workflow tests the
very files it publishes) instead of building them.

The build and the venv are made once per test session (shared by pytest-xdist workers
under a file lock): about a minute the first time, mostly installing the dependencies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from tests.emulator import Emulator
from tests.harness import (
    ROOT,
    api_token_config,
    discovered_catalog,
    parse_lines,
    select_only,
    tap_env,
)

BIN = Path(sys.executable).parent
VERSION = metadata.version("tap-bitbucket")


@dataclass(frozen=True)
class Built:
    dist: Path
    venv: Path

    @property
    def wheel(self) -> Path:
        return next(self.dist.glob("*.whl"))

    @property
    def sdist(self) -> Path:
        return next(self.dist.glob("*.tar.gz"))

    def script(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=900, **kwargs)


def _check(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _build(root: Path) -> Built:
    dist, venv = root / "dist", root / "venv"
    prebuilt = os.environ.get("WHEEL_TEST_DIST")
    if prebuilt:
        dist = Path(prebuilt).resolve()
    else:
        _check(_run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)]))
    _check(_run([sys.executable, "-m", "venv", str(venv)]))
    wheel = next(dist.glob("*.whl"))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    # The wheel by path, its dependencies from the index: what `pip install tap-bitbucket`
    # does, without the checkout anywhere on the path.
    _check(_run([*pip, str(wheel)], cwd=root))
    return Built(dist, venv)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's folder, shared by every worker
    root = shared / "wheel-build"
    with FileLock(str(shared / "wheel-build.lock")):
        if not (root / "done").exists():
            root.mkdir(exist_ok=True)
            built = _build(root)
            (root / "done").write_text(str(built.dist))
            return built
    return Built(Path((root / "done").read_text()), root / "venv")


@pytest.fixture
def outside(tmp_path: Path) -> dict[str, Any]:
    """Run the installed scripts from a folder outside the checkout, no PYTHONPATH."""
    env = tap_env()
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    return {"cwd": tmp_path, "env": env}


def test_the_distributions_pass_twine_and_check_wheel_contents(built: Built) -> None:
    _check(_run([str(BIN / "twine"), "check", "--strict", str(built.wheel), str(built.sdist)]))
    _check(_run([str(BIN / "check-wheel-contents"), str(built.wheel)]))
    assert built.wheel.name == f"tap_bitbucket-{VERSION}-py3-none-any.whl"


def test_pyroma_rates_the_sdist_10(built: Built) -> None:
    proc = _check(_run([str(BIN / "pyroma"), "--file", "--min", "10", str(built.sdist)]))
    assert "Final rating: 10/10" in proc.stdout


def test_every_package_file_is_in_the_wheel(built: Built) -> None:
    tracked = _check(_run(["git", "ls-files", "tap_bitbucket"], cwd=ROOT)).stdout.split()
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
        entry_points = wheel.read(f"tap_bitbucket-{VERSION}.dist-info/entry_points.txt")
    missing = sorted(p for p in tracked if p not in names)
    assert missing == [], f"not in the wheel: {missing}"
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert "tap_bitbucket/drift_baseline.json" in names
    for script in ("tap-bitbucket", "tap-bitbucket-oauth", "tap-bitbucket-drift"):
        assert f"{script} = ".encode() in entry_points


def test_the_installed_tap_is_the_wheel_s(built: Built, outside: dict[str, Any]) -> None:
    python = built.script("python")
    code = "import tap_bitbucket, sys; print(tap_bitbucket.__file__)"
    location = Path(_check(_run([python, "-c", code], **outside)).stdout.strip())
    assert built.venv in location.parents, location
    assert ROOT not in location.parents
    version = _check(_run([built.script("tap-bitbucket"), "--version"], **outside)).stdout
    assert version.startswith(f"tap-bitbucket v{VERSION}, Meltano SDK v")


def test_about_and_discover_from_the_wheel(built: Built, outside: dict[str, Any]) -> None:
    tap = built.script("tap-bitbucket")
    about = json.loads(_check(_run([tap, "--about", "--format=json"], **outside)).stdout)
    assert about["name"] == "tap-bitbucket"
    assert about["version"] == VERSION
    config = outside["cwd"] / "config.json"
    config.write_text(json.dumps({"api_url": "http://127.0.0.1:9/2.0", "access_token": "x"}))
    catalog = json.loads(
        _check(_run([tap, "--config", str(config), "--discover"], **outside)).stdout
    )
    # Every schema was read from the wheel: the same catalog as the checkout's.
    assert catalog == discovered_catalog()


def test_a_short_sync_and_drift_check_from_the_wheel(
    built: Built, outside: dict[str, Any], emulator: Emulator
) -> None:
    cwd: Path = outside["cwd"]
    (cwd / "config.json").write_text(json.dumps(api_token_config(emulator)))
    streams = ["workspaces", "repositories", "pull_requests"]
    (cwd / "catalog.json").write_text(json.dumps(select_only(discovered_catalog(), streams)))
    command = [
        built.script("tap-bitbucket"),
        "--config",
        "config.json",
        "--catalog",
        "catalog.json",
    ]
    proc = _check(_run(command, **outside))
    messages = parse_lines(proc.stdout)
    synced = {m["stream"] for m in messages if m["type"] == "RECORD"}
    assert synced == set(streams)
    assert any(m["type"] == "STATE" for m in messages)
    (cwd / "out.jsonl").write_text(proc.stdout)
    (cwd / "tap.log").write_text(proc.stderr)
    drift = [built.script("tap-bitbucket-drift"), "--input", "out.jsonl", "--log", "tap.log"]
    report = _check(_run(drift, **outside)).stdout
    assert "No drift" in report
