"""meltano.yml agrees with the tap: every setting of the config schema (tap-specific and the
SDK's built-in ones) with the right kind and secrecy, and nothing more; the capabilities
the tap has; the default stream selection; pinned loaders; the two environments."""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.update_readme import meltano_kind
from tests.meltano_helpers import DEFAULT_STREAMS, ROOT, STREAMS

TAP = str(Path(sys.executable).parent / "tap-bitbucket")


@pytest.fixture(scope="module")
def about() -> dict[str, Any]:
    result = subprocess.run(
        [TAP, "--about", "--format=json"], capture_output=True, text=True, check=True, timeout=120
    )
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))
    return document


def _plugin(project: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    matches = [p for p in project["plugins"][kind] if p["name"] == name]
    assert len(matches) == 1, f"{kind} {name} should be declared once"
    return matches[0]


def expected_kind(prop: dict[str, Any]) -> str:
    """The Meltano setting kind for a JSON-schema property of the tap's config."""
    return meltano_kind(prop)


def settings_mismatches(schema: dict[str, Any], settings: list[dict[str, Any]]) -> list[str]:
    """Every disagreement between the tap's config schema and meltano.yml's settings."""
    problems: list[str] = []
    declared = {s["name"]: s for s in settings}
    if len(declared) != len(settings):
        problems.append("a setting is declared twice")
    properties = schema["properties"]
    for name in sorted(set(properties) - set(declared)):
        problems.append(f"{name}: in the tap's config schema, missing from meltano.yml")
    for name in sorted(set(declared) - set(properties)):
        problems.append(f"{name}: in meltano.yml, not a setting of the tap")
    for name in sorted(set(properties) & set(declared)):
        prop, setting = properties[name], declared[name]
        kind = expected_kind(prop)
        if setting.get("kind") != kind:
            problems.append(f"{name}: kind {setting.get('kind')!r}, expected {kind!r}")
        secret = bool(prop.get("secret") or prop.get("writeOnly"))
        if bool(setting.get("sensitive")) != secret:
            problems.append(f"{name}: sensitive={setting.get('sensitive')!r}, secret={secret}")
        if kind == "options":
            values = [o["value"] for o in setting.get("options", [])]
            if values != list(prop["enum"]):
                problems.append(f"{name}: options {values}, expected {prop['enum']}")
        if not (setting.get("description") or "").strip():
            problems.append(f"{name}: no description")
    return problems


def selected_streams(patterns: list[str], streams: list[str]) -> list[str]:
    """Meltano's select rules at stream level: any include matches, no `!` exclude does."""
    includes = [p.split(".")[0] for p in patterns if not p.startswith("!")]
    excludes = [p[1:].split(".")[0] for p in patterns if p.startswith("!") and p.endswith(".*")]
    return sorted(
        s
        for s in streams
        if any(fnmatch.fnmatchcase(s, p) for p in includes)
        and not any(fnmatch.fnmatchcase(s, p) for p in excludes)
    )


# ----------------------------------------------------------------------------- tests


def test_every_setting_agrees_with_the_config_schema(
    about: dict[str, Any], project: dict[str, Any]
) -> None:
    tap = _plugin(project, "extractors", "tap-bitbucket")
    assert settings_mismatches(about["settings"], tap["settings"]) == []


def test_the_check_fails_on_any_disagreement(
    about: dict[str, Any], project: dict[str, Any]
) -> None:
    """The comparison itself can fail, in both directions and on kind and secrecy."""
    settings = _plugin(project, "extractors", "tap-bitbucket")["settings"]

    def broken(change: Any) -> list[str]:
        copied = copy.deepcopy(settings)
        change(copied)
        return settings_mismatches(about["settings"], copied)

    def by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
        return next(s for s in items if s["name"] == name)

    assert any("missing from meltano.yml" in p for p in broken(lambda s: s.pop(0)))
    assert any(
        "not a setting of the tap" in p
        for p in broken(lambda s: s.append({"name": "bogus", "kind": "string"}))
    )
    assert any(
        "kind" in p for p in broken(lambda s: by_name(s, "start_date").update(kind="string"))
    )
    assert any("sensitive" in p for p in broken(lambda s: by_name(s, "api_token").pop("sensitive")))
    assert any(
        "sensitive" in p for p in broken(lambda s: by_name(s, "username").update(sensitive=True))
    )
    assert any("options" in p for p in broken(lambda s: by_name(s, "auth_scheme")["options"].pop()))


def test_secrets_are_password_settings(project: dict[str, Any]) -> None:
    settings = {s["name"]: s for s in _plugin(project, "extractors", "tap-bitbucket")["settings"]}
    for name in ("api_token", "access_token", "oauth_client_secret", "oauth_refresh_token"):
        assert settings[name]["kind"] == "password"
        assert settings[name]["sensitive"] is True


def test_extractor_definition_and_capabilities(
    about: dict[str, Any], project: dict[str, Any]
) -> None:
    tap = _plugin(project, "extractors", "tap-bitbucket")
    assert tap["namespace"] == "tap_bitbucket"
    assert tap["pip_url"] == "-e ."
    assert tap["executable"] == "tap-bitbucket"
    declared = set(tap["capabilities"])
    # Everything the tap reports, plus `test` (the SDK's `--test`, used by
    # `meltano config test`); nothing it does not have.
    assert set(about["capabilities"]) <= declared
    assert declared - set(about["capabilities"]) <= {"test"}
    if "test" in declared:
        help_text = subprocess.run(
            [TAP, "--help"], capture_output=True, text=True, check=True, timeout=120
        ).stdout
        assert "--test" in help_text


def test_select_matches_the_default_streams(project: dict[str, Any]) -> None:
    tap = _plugin(project, "extractors", "tap-bitbucket")
    assert selected_streams(tap["select"], sorted(STREAMS)) == DEFAULT_STREAMS


def test_loaders_are_pinned(project: dict[str, Any]) -> None:
    duckdb = _plugin(project, "loaders", "target-duckdb")
    # target-duckdb 0.8.0 silently drops rows with duckdb >= 1.3: both pins are load-bearing.
    assert duckdb["pip_url"].split() == ["target-duckdb==0.8.0", "duckdb==1.2.2"]
    assert duckdb["config"]["filepath"].endswith("output/warehouse.duckdb")
    assert _plugin(project, "loaders", "target-jsonl")["pip_url"] == "target-jsonl==0.1.4"
    postgres = _plugin(project, "loaders", "target-postgres")
    assert postgres["pip_url"] == "meltanolabs-target-postgres==0.8.1"
    assert postgres["variant"] == "meltanolabs"
    assert postgres["config"]["load_method"] == "upsert"
    for loader in project["plugins"]["loaders"]:
        assert loader.get("namespace"), f"{loader['name']}: custom definition (no Hub lookup)"
        for setting in loader.get("settings", []):
            if setting["kind"] == "password":
                assert setting.get("sensitive") is True, (loader["name"], setting["name"])


def test_environments_and_no_secret_values(project: dict[str, Any]) -> None:
    environments = {e["name"]: e for e in project["environments"]}
    assert {"dev", "demo"} <= set(environments)
    assert project["default_environment"] == "dev"

    def tap_config(env: str) -> dict[str, Any]:
        extractors = environments[env]["config"]["plugins"]["extractors"]
        config: dict[str, Any] = next(p for p in extractors if p["name"] == "tap-bitbucket")[
            "config"
        ]
        return config

    assert tap_config("dev")["api_url"] == "https://api.bitbucket.org/2.0"
    demo = tap_config("demo")
    assert demo["api_url"] == "${BITBUCKET_EMULATOR_API_URL}"
    assert demo["api_token"] == "${BITBUCKET_EMULATOR_API_TOKEN}"
    # Emulator data goes to a warehouse of its own, never into the real one.
    demo_loaders = {
        p["name"]: p["config"] for p in environments["demo"]["config"]["plugins"]["loaders"]
    }
    base_duckdb = _plugin(project, "loaders", "target-duckdb")["config"]["filepath"]
    assert demo_loaders["target-duckdb"]["filepath"] != base_duckdb
    # Secrets only ever come from the environment: no literal value in meltano.yml.
    sensitive = {
        s["name"]
        for p in [*project["plugins"]["extractors"], *project["plugins"]["loaders"]]
        for s in p.get("settings", [])
        if s.get("sensitive")
    }
    configs = [p.get("config", {}) for kind in project["plugins"].values() for p in kind]
    configs += [
        p.get("config", {})
        for e in project["environments"]
        for kind in (e.get("config", {}).get("plugins") or {}).values()
        for p in kind
    ]
    for config in configs:
        for name, value in config.items():
            if name in sensitive:
                assert re.fullmatch(r"\$\{?[A-Z0-9_]+\}?", str(value)), name
