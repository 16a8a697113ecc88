"""The GitHub workflows are linted (actionlint, zizmor offline) and do what the release
process relies on: pinned actions, minimal permissions, trusted publishing, the changelog
as release notes, a canary that does nothing without credentials, and a newest-SDK job
that may fail."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import ROOT

BIN = Path(sys.executable).parent
WORKFLOWS = ROOT / ".github" / "workflows"
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def _load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    if True in document:
        document["on"] = document.pop(True)
    return document


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_actionlint() -> None:
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert {Path(f).name for f in files} >= {"ci.yml", "release.yml", "canary.yml"}
    proc = subprocess.run(
        [str(BIN / "actionlint"), "-no-color", *files],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_offline() -> None:
    proc = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--no-progress", str(ROOT / ".github")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["ci.yml", "release.yml", "canary.yml"])
def test_actions_are_pinned_and_checkouts_keep_no_credentials(name: str) -> None:
    workflow = _load(name)
    assert "permissions" in workflow, "a top-level permissions block (least privilege)"
    for step in _steps(workflow):
        if "uses" in step:
            assert SHA_PIN.match(step["uses"]), step["uses"]
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False


def test_release_publishes_with_trusted_publishing() -> None:
    release = _load("release.yml")
    assert release["on"]["push"]["tags"] == ["v[0-9]+.[0-9]+.[0-9]+*"]
    assert release["permissions"] == {}
    jobs = release["jobs"]
    assert jobs["publish"]["permissions"] == {"id-token": "write"}
    assert jobs["publish"]["environment"]["name"] == "pypi"
    assert jobs["publish"]["needs"] == "build"
    publish = [s["uses"] for s in jobs["publish"]["steps"] if "uses" in s]
    assert any(u.startswith("pypa/gh-action-pypi-publish@") for u in publish)
    assert not any("with" in s and "password" in s["with"] for s in jobs["publish"]["steps"])
    # Only the publish job may mint an OIDC token; only the release job may write.
    for name, job in jobs.items():
        if name != "publish":
            assert "id-token" not in job["permissions"], name
    assert jobs["github-release"]["permissions"] == {"contents": "write"}
    build = "\n".join(s.get("run", "") for s in jobs["build"]["steps"])
    assert "python -m build" in build and "twine check --strict" in build
    assert "check-wheel-contents" in build and "tests/test_wheel.py" in build
    notes = "\n".join(s.get("run", "") for s in jobs["github-release"]["steps"])
    assert "scripts/release_notes.py" in notes and "gh release create" in notes


def test_canary_runs_weekly_only_with_credentials() -> None:
    canary = _load("canary.yml")
    assert "schedule" in canary["on"] and "workflow_dispatch" in canary["on"]
    jobs = canary["jobs"]
    assert jobs["canary"]["needs"] == "credentials"
    assert jobs["canary"]["if"] == "needs.credentials.outputs.configured == 'true'"
    runs = "\n".join(s.get("run", "") for s in jobs["canary"]["steps"])
    assert "--test" in runs and "tap-bitbucket-drift" in runs
    assert '--summary "$GITHUB_STEP_SUMMARY"' in runs
    # Secrets reach the steps that need them through env, never a job-wide env.
    assert "env" not in jobs["canary"]


def test_ci_tries_the_newest_singer_sdk_without_failing_the_run() -> None:
    job = _load("ci.yml")["jobs"]["newest-singer-sdk"]
    assert job["continue-on-error"] is True
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    assert 'pip install --upgrade "singer-sdk[msgspec]"' in runs
    assert "GITHUB_STEP_SUMMARY" in runs


def test_dependabot_covers_pip_and_actions() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text(encoding="utf-8"))
    assert {u["package-ecosystem"] for u in config["updates"]} == {"pip", "github-actions"}


def test_pre_commit_hooks_are_pinned() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    repos = {r["repo"]: r for r in config["repos"]}
    hooks = {h["id"] for r in config["repos"] for h in r["hooks"]}
    assert {"ruff", "mypy"} <= hooks
    for repo in repos.values():
        if repo["repo"] != "local":
            assert re.fullmatch(r"v\d+\.\d+\.\d+", repo["rev"]), repo


def test_pre_commit_revs_are_the_dev_pins() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    revs = {r["repo"].rsplit("/", 1)[-1]: r["rev"].removeprefix("v") for r in config["repos"]}
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'"ruff=={revs["ruff-pre-commit"]}"' in pyproject
    assert f'"mypy=={revs["mirrors-mypy"]}"' in pyproject


def test_the_linters_do_catch_problems(tmp_path: Path) -> None:
    """actionlint fails on a typo'd key and an undefined step output; zizmor on an unpinned
    action and a template injection (so a clean result means something)."""
    typo = tmp_path / "typo.yml"
    typo.write_text(
        "on: push\n"
        "jobs:\n"
        "  one:\n"
        "    runs-on: ubuntu-latest\n"
        "    step:\n"
        "      - run: echo ${{ steps.nope.outputs.x }}\n",
        encoding="utf-8",
    )
    lint = subprocess.run(
        [str(BIN / "actionlint"), "-no-color", str(typo)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert lint.returncode != 0 and '"step"' in lint.stdout, lint.stdout
    unsafe = tmp_path / ".github" / "workflows" / "unsafe.yml"
    unsafe.parent.mkdir(parents=True)
    unsafe.write_text(
        "on: issues\n"
        "jobs:\n"
        "  two:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - run: echo ${{ github.event.issue.title }}\n",
        encoding="utf-8",
    )
    audit = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--no-progress", str(tmp_path / ".github")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert audit.returncode != 0
    assert "unpinned-uses" in audit.stdout and "template-injection" in audit.stdout
