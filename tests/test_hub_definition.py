"""hub/tap-bitbucket.yml, the Meltano Hub plugin definition, is what the tap says about
itself (`--about`): regenerated here, it must match the committed file byte for byte, and
it must have what Hub's extractor format needs."""

from __future__ import annotations

from importlib import metadata
from typing import Any

import pytest
import yaml

from scripts import hub_definition
from scripts.update_readme import about as tap_about
from tests.test_meltano_config import settings_mismatches


@pytest.fixture(scope="module")
def about() -> dict[str, Any]:
    return tap_about()


@pytest.fixture(scope="module")
def hub() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(hub_definition.TARGET.read_text(encoding="utf-8"))
    return document


def test_the_definition_is_current(about: dict[str, Any]) -> None:
    assert hub_definition.render(about) == hub_definition.TARGET.read_text(encoding="utf-8"), (
        "hub/tap-bitbucket.yml is stale: run python -m scripts.hub_definition"
    )


def test_a_changed_setting_is_drift(about: dict[str, Any]) -> None:
    changed = yaml.safe_load(yaml.safe_dump(about))
    changed["settings"]["properties"]["max_workers"]["description"] = "something else"
    assert hub_definition.render(changed) != hub_definition.TARGET.read_text(encoding="utf-8")


def test_hub_extractor_fields(hub: dict[str, Any], about: dict[str, Any]) -> None:
    required = {
        "name",
        "namespace",
        "variant",
        "label",
        "description",
        "pip_url",
        "repo",
        "docs",
        "capabilities",
        "settings",
        "settings_group_validation",
    }
    assert required <= set(hub)
    assert hub["name"] == "tap-bitbucket" and hub["namespace"] == "tap_bitbucket"
    assert hub["pip_url"] == metadata.metadata("tap-bitbucket")["Name"]
    urls = dict(u.split(", ", 1) for u in metadata.metadata("tap-bitbucket").get_all("Project-URL"))
    assert hub["repo"] == urls["Repository"], "the repository URL comes from [project.urls]"
    assert hub["docs"] == f"https://hub.meltano.com/extractors/tap-bitbucket--{hub['variant']}"
    assert set(about["capabilities"]) <= set(hub["capabilities"])


def test_settings_have_kind_label_description_and_secrecy(
    hub: dict[str, Any], about: dict[str, Any]
) -> None:
    # The same agreement meltano.yml's settings must have with the config schema.
    assert settings_mismatches(about["settings"], hub["settings"]) == []
    for item in hub["settings"]:
        assert item["label"].strip() and item["description"].strip(), item["name"]
    by_name = {s["name"]: s for s in hub["settings"]}
    for secret in ("api_token", "access_token", "oauth_client_secret", "oauth_refresh_token"):
        assert by_name[secret]["kind"] == "password" and by_name[secret]["sensitive"] is True
    assert by_name["oauth_client_id"]["label"] == "OAuth Client ID"


def test_every_auth_scheme_has_a_settings_group(hub: dict[str, Any], about: dict[str, Any]) -> None:
    schemes = set(about["settings"]["properties"]["auth_scheme"]["enum"]) - {None}
    assert set(hub_definition.AUTH_GROUPS) == schemes
    names = set(about["settings"]["properties"])
    groups = hub["settings_group_validation"]
    for scheme, scheme_groups in hub_definition.AUTH_GROUPS.items():
        for group in scheme_groups:
            assert set(group) <= names, (scheme, group)
            assert group in groups, (scheme, group)
