"""One version, from one place: the package metadata (pyproject.toml's `version`).

`tap-bitbucket --version`, `--about` and the default User-Agent all show it; the server
must see it in every request; the changelog has a section for it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from tests.emulator import Emulator
from tests.harness import ROOT, api_token_config, discovered_catalog, run_tap, select_only

BIN = Path(sys.executable).parent
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?$")


def _version() -> str:
    return metadata.version("tap-bitbucket")


def test_the_metadata_version_is_pyproject_s_and_semver() -> None:
    # (tomllib is 3.11+, and CI tests 3.10: the one `version =` line of [project].)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    declared = re.findall(r'^version = "([^"]+)"$', pyproject, re.M)
    assert len(declared) == 1
    # An editable install records the version at install time: a stale one means the
    # venv needs `pip install -e .` again, not that the tap is wrong.
    assert _version() == declared[0], "reinstall: pip install -e ."
    assert SEMVER.match(_version())


def test_version_of_the_console_script() -> None:
    out = subprocess.run(
        [str(BIN / "tap-bitbucket"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert out.startswith(f"tap-bitbucket v{_version()}, Meltano SDK v"), out


def test_about_carries_the_version_and_the_python_versions() -> None:
    out = subprocess.run(
        [str(BIN / "tap-bitbucket"), "--about", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    about = json.loads(out)
    assert about["version"] == _version()
    # The SDK derives these from the classifiers: the ones CI tests.
    assert about["supported_python_versions"] == ["3.10", "3.11", "3.12", "3.13"]


def test_the_server_sees_the_version_in_the_user_agent(
    make_emulator: Callable[..., Emulator],
) -> None:
    emu = make_emulator()
    result = run_tap(
        api_token_config(emu), catalog=select_only(discovered_catalog(), ["workspaces"])
    )
    assert result.returncode == 0, result.stderr[-2000:]
    agents = {entry.user_agent for entry in emu.request_log}
    assert agents == {f"tap-bitbucket/{_version()}"}


def test_the_changelog_has_this_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[{re.escape(_version())}\] - \d{{4}}-\d\d-\d\d$", changelog, re.M)
    assert re.search(rf"^\[{re.escape(_version())}\]: https://", changelog, re.M)


def test_the_readme_installs_this_version() -> None:
    """The README's install commands pin the current release: no placeholder, no stale pin."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = readme.split("## Install\n", 1)[1].split("\n## ", 1)[0]
    pins = re.findall(r"tap-bitbucket==([0-9][^\s`'\"]*)", install)
    assert pins and set(pins) == {_version()}, pins
    assert "pip_url: tap-bitbucket==" in install
    assert "YOUR-ORG" not in readme and "git+https://" not in install
