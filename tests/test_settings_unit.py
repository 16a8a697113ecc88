"""Settings: one frozen, typed object; absent or null is the default, 0 is 0 (issue 12,
bug 5), bad values are refused with one ConfigError that names the setting.

The defaults compared with are the config schema's own (`SETTINGS`), the numeric rules
are `settings._NUMBERS`: nothing here restates a default by hand.
"""

from __future__ import annotations

import dataclasses
import decimal
from typing import Any

import pytest

from tap_bitbucket.errors import ConfigError
from tap_bitbucket.settings import _NUMBERS, DEFAULT_API_URL, SETTINGS, Settings
from tap_bitbucket.timestamps import parse_timestamp

pytestmark = pytest.mark.unit

SCHEMA = SETTINGS.to_dict()["properties"]
FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name != "raw"}


def _refused(config: dict[str, Any], setting: str) -> str:
    with pytest.raises(ConfigError) as info:
        Settings.from_config(config)
    assert info.value.setting == setting
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"Invalid setting '{setting}': ")
    return message


def test_every_setting_field_is_in_the_config_schema() -> None:
    assert set(FIELDS) <= set(SCHEMA), set(FIELDS) - set(SCHEMA)


@pytest.mark.parametrize("name", sorted(n for n in FIELDS if "default" in SCHEMA[n]))
def test_the_typed_default_is_the_schema_default(name: str) -> None:
    """What --about and the README document is what an absent setting gets."""
    assert getattr(Settings(), name) == SCHEMA[name]["default"]
    assert getattr(Settings.from_config({}), name) == SCHEMA[name]["default"]


@pytest.mark.parametrize("name", sorted(_NUMBERS))
def test_null_and_empty_mean_the_default(name: str) -> None:
    default = getattr(Settings(), name)
    assert getattr(Settings.from_config({name: None}), name) == default
    assert getattr(Settings.from_config({name: ""}), name) == default


@pytest.mark.parametrize("name", sorted(_NUMBERS))
def test_zero_is_zero_exactly_where_the_rules_allow_it(name: str) -> None:
    kind, minimum, zero_refused = _NUMBERS[name]
    config: dict[str, Any] = {name: 0}
    if name == "shard_index":
        config["shard_count"] = 2
    if zero_refused or minimum > 0:
        _refused(config, name)
        return
    value = getattr(Settings.from_config(config), name)
    assert value == 0 and type(value) is kind


@pytest.mark.parametrize("name", sorted(_NUMBERS))
def test_numbers_from_strings_and_decimals_are_typed(name: str) -> None:
    """Env vars arrive as strings; the SDK reads a config file's fractions as Decimal."""
    kind, minimum, _ = _NUMBERS[name]
    value = max(int(minimum), 1)
    extra = {"shard_count": 2} if name == "shard_index" else {}
    for given in (str(value), f" {value} ", decimal.Decimal(value)):
        parsed = getattr(Settings.from_config({name: given, **extra}), name)
        assert parsed == value and type(parsed) is kind, (given, parsed)


@pytest.mark.parametrize("name", sorted(n for n, (kind, _, _) in _NUMBERS.items() if kind is int))
def test_whole_number_settings_refuse_fractions(name: str) -> None:
    assert "whole number" in _refused({name: 2.5}, name)


@pytest.mark.parametrize("name", sorted(_NUMBERS))
@pytest.mark.parametrize("bad", [True, "many", [1], float("inf"), -1])
def test_bad_numbers_are_refused_naming_the_setting(name: str, bad: Any) -> None:
    _refused({name: bad}, name)


def test_a_fractional_decimal_stays_a_fraction() -> None:
    settings = Settings.from_config({"backoff_base_seconds": decimal.Decimal("0.25")})
    assert settings.backoff_base_seconds == 0.25
    assert settings.raw["backoff_base_seconds"] == 0.25  # plain JSON types for auth


def test_shard_index_must_be_below_shard_count() -> None:
    assert "between 0 and 2" in _refused({"shard_count": 3, "shard_index": 3}, "shard_index")
    assert Settings.from_config({"shard_count": 3, "shard_index": 2}).shard_index == 2


def test_lists_accept_comma_strings_and_strip_items() -> None:
    settings = Settings.from_config(
        {"workspaces": "acme, beta", "repositories": [" acme/* "], "exclude_repositories": None}
    )
    assert settings.workspaces == ("acme", "beta")
    assert settings.repositories == ("acme/*",)
    assert settings.exclude_repositories == ()


@pytest.mark.parametrize(
    ("value", "problem"),
    [(["acme", ""], "empty string"), ([1], "list of strings"), ({"a": 1}, "list of strings")],
)
def test_bad_lists_are_refused(value: Any, problem: str) -> None:
    assert problem in _refused({"workspaces": value}, "workspaces")


@pytest.mark.parametrize("setting", ["repositories", "exclude_repositories"])
@pytest.mark.parametrize(("glob", "problem"), [("acme", "workspace/repo"), ("acme/[ab", "'['")])
def test_malformed_globs_are_refused(setting: str, glob: str, problem: str) -> None:
    assert problem in _refused({setting: [glob]}, setting)


def test_api_url_default_trailing_slash_and_origin() -> None:
    assert Settings.from_config({}).api_url == DEFAULT_API_URL
    settings = Settings.from_config({"api_url": "http://127.0.0.1:8080/2.0/"})
    assert settings.api_url == "http://127.0.0.1:8080/2.0"
    assert settings.origin == ("http", "127.0.0.1:8080")
    for bad in ("ftp://host/2.0", "api.bitbucket.org/2.0", "https://"):
        _refused({"api_url": bad}, "api_url")


def test_start_date_is_parsed_to_aware_utc() -> None:
    given = "2024-05-01T12:00:00+02:00"
    start = Settings.from_config({"start_date": given}).start_date
    assert start == parse_timestamp(given) and start is not None
    assert start.utcoffset() is not None and start.utcoffset().total_seconds() == 0
    assert "ISO 8601" in _refused({"start_date": "last tuesday"}, "start_date")


def test_settings_are_frozen() -> None:
    settings = Settings.from_config({"max_workers": 2})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.max_workers = 3  # type: ignore[misc]
