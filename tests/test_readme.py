"""The README tells the truth: its generated settings and streams tables match the tap
(`tap-bitbucket --about` and the stream classes), and its two set-up commands are the ones
the Makefile and CI run."""

from __future__ import annotations

import re

import pytest

from scripts import update_readme
from tests.meltano_helpers import ROOT, STREAMS


@pytest.fixture(scope="module")
def blocks() -> dict[str, str]:
    return update_readme.generated_blocks()


@pytest.fixture(scope="module")
def readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_generated_tables_are_current(readme: str, blocks: dict[str, str]) -> None:
    assert update_readme.render(readme, blocks) == readme, (
        "README.md is stale: run `make readme` (python -m scripts.update_readme)"
    )


def test_staleness_is_detected(readme: str, blocks: dict[str, str]) -> None:
    """Change one description or one stream property and the README no longer matches."""
    stale = readme.replace("Longest single backoff wait.", "Longest backoff wait.")
    assert stale != readme
    assert update_readme.render(stale, blocks) != stale
    stale = readme.replace("| `commit_statuses` |", "| `commit_status` |", 1)
    assert stale != readme
    assert update_readme.render(stale, blocks) != stale


def test_settings_table_lists_every_setting(blocks: dict[str, str]) -> None:
    info = update_readme.about()
    listed = re.findall(r"^\| `([a-z_]+)` \|", blocks["settings"], re.MULTILINE)
    assert listed == list(info["settings"]["properties"])
    for secret in ("api_token", "access_token", "oauth_client_secret"):
        row = next(line for line in blocks["settings"].splitlines() if f"| `{secret}` |" in line)
        assert "password (secret)" in row


def test_streams_table_describes_every_stream(blocks: dict[str, str]) -> None:
    rows = {
        m.group(1): line
        for line in blocks["streams"].splitlines()
        if (m := re.match(r"^\| `([a-z_]+)` \|", line))
    }
    assert sorted(rows) == sorted(STREAMS)
    for name, stream in STREAMS.items():
        cells = [c.strip() for c in rows[name].strip("|").split("|")]
        assert len(cells) == 7, rows[name]
        assert cells[1] == ", ".join(f"`{k}`" for k in stream.primary_keys)
        assert cells[2].startswith(stream.replication_method)
        if stream.replication_key:
            assert f"`{stream.replication_key}`" in cells[2]
        assert cells[4] == ("yes" if stream.selected_by_default else "no")
        assert cells[5] == f"`{stream.path}`"
        # Every stream's endpoint is in the spec, so every stream has a scope.
        assert "?" not in cells[6] and ":bitbucket" in cells[6], (name, cells[6])


def test_quickstart_commands_are_the_makefile_and_ci_ones(readme: str) -> None:
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(make \w+)", quickstart.split("```sh", 1)[1], re.MULTILINE)
    assert commands[:2] == ["make run", "make test"], "the two set-up commands, main job first"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^run: .*\n\t\$\(BIN\)/python -m scripts\.demo$", makefile, re.MULTILINE)
    assert re.search(r"^test: .*\$\(PLUGINS_STAMP\)", makefile, re.MULTILINE)
    assert re.search(r"^\t\$\(BIN\)/python -m pytest", makefile, re.MULTILINE)
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ci[-1].strip() == "make test", "CI runs exactly the README's test command, last"
