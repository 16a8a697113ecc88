"""Property tests: hostile --config (issue 16).

A working config (one small repository of the session emulator, fast retries) gets one
setting, drawn from the tap's whole config schema, set to a hostile value: a wrong type,
an out-of-range or huge number, an empty string or list, odd unicode; or keys the tap does
not know; or list settings of odd strings. Each case runs the tap in-process and must
keep the invariant of tests/harness/badinput.py; a refused config names the setting.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tap_bitbucket.settings import SETTINGS
from tests.emulator import Emulator
from tests.fuzz_strategies import JSON, NUMBERS, ODD_DATES, ODD_TEXT, SCALARS
from tests.harness import FAST, api_token_config, catalog_selecting
from tests.harness.badinput import Setup, invariant_problems
from tests.harness.inprocess import run_in_process

REPO = "globex/api-fork"
STREAMS = {"workspaces", "repositories", "pull_requests", "pipelines"}
NAMES = sorted(SETTINGS.to_dict()["properties"])
#: Values that are valid and merely slow (a pacer of 60 requests an hour waits a minute a
#: request): a run with them keeps its promise, but not within a test's time.
SLOW = {"requests_per_hour": 3600.0, "request_timeout_seconds": 0.05}
#: Besides the setting itself, what the error line of a refused config may name: a
#: credential setting can make the credential, not one setting, the thing at fault.
ALSO = {
    "api_url": r"api_url|Cannot reach|api_url host",
    "username": r"username|credential|api_token|401",
    "api_token": r"api_token|credential|401",
    "auth_scheme": r"auth_scheme|credential|oauth|access_token|api_token",
    "access_token": r"access_token|credential|401|auth",
    "oauth_url": r"oauth",
}



@pytest.fixture(scope="module")
def setup(emulator: Emulator) -> Setup:
    config = api_token_config(
        emulator, workspaces=["globex"], repositories=[REPO], max_workers=1, **FAST
    )
    return Setup(config=config, catalog=catalog_selecting(STREAMS))


def _run(setup: Setup, config: dict[str, Any], culprit: str) -> None:
    result = run_in_process(config, catalog=setup["catalog"], timeout=30)
    problems = invariant_problems(result, culprit)
    assert not problems, "\n".join(problems)


def _slowest(name: str, value: Any) -> Any:
    """A number that would only make the run slow is raised to one that does not."""
    floor = SLOW.get(name)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if floor is not None and number and 0 < value < floor:
        return floor
    return value


HOSTILE = st.one_of(SCALARS, NUMBERS, ODD_DATES, JSON, st.just(""), st.just([]), st.just({}))


@given(name=st.sampled_from(NAMES), value=HOSTILE)
def test_one_setting_with_a_hostile_value(setup: Setup, name: str, value: Any) -> None:
    config = {**setup["config"], name: _slowest(name, value)}
    culprit = rf"'{re.escape(name)}'|{ALSO.get(name, re.escape(name))}"
    _run(setup, config, culprit)


@given(extra=st.dictionaries(ODD_TEXT, JSON, min_size=1, max_size=3))
def test_keys_the_tap_does_not_know(setup: Setup, extra: dict[str, Any]) -> None:
    config = {**extra, **setup["config"]}
    _run(setup, config, "|".join(re.escape(k) for k in extra) or "config")


GLOBS = st.one_of(ODD_TEXT, st.sampled_from(["globex/*", "*/*", "globex/api-*", "GLOBEX/API-FORK"]))


@given(
    name=st.sampled_from(["workspaces", "repositories", "exclude_repositories"]),
    values=st.lists(GLOBS, max_size=3),
)
def test_odd_strings_in_a_list_setting(setup: Setup, name: str, values: list[str]) -> None:
    config = {**setup["config"], name: values}
    _run(setup, config, rf"'{name}'|workspaces|repositories")
