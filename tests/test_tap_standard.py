"""The Singer SDK's standard tap tests, offline against a dedicated emulator.

`get_tap_test_class` needs the tap config when the class is built (at import), so this
module starts its own emulator at import and stops it at interpreter exit. Every stream is
selected, including the two not selected by default (`commit_statuses`,
`pull_request_diffstats`), so every stream's standard tests see records.
"""

from __future__ import annotations

import atexit
import copy
from typing import Any

import pytest
from singer_sdk.testing import get_tap_test_class
from singer_sdk.testing.runners import TapTestRunner

from tap_bitbucket.tap import TapBitbucket
from tests.emulator import Emulator, EmulatorConfig
from tests.harness import once_per_session

EMULATOR = Emulator(EmulatorConfig()).start()
atexit.register(EMULATOR.stop)

CONFIG: dict[str, Any] = {
    "api_url": EMULATOR.api_url,
    "username": EMULATOR.credentials.email,
    "api_token": EMULATOR.credentials.api_token,
}


def _catalog_selecting_every_stream() -> dict[str, Any]:
    catalog = copy.deepcopy(TapBitbucket(config=CONFIG, setup_mapper=False).catalog_dict)
    for entry in catalog["streams"]:
        for meta in entry["metadata"]:
            if not meta["breadcrumb"]:
                meta["metadata"]["selected"] = True
    return catalog


CATALOG = _catalog_selecting_every_stream()

_StandardTests = get_tap_test_class(TapBitbucket, config=CONFIG, catalog=CATALOG)


def _sync_messages() -> list[dict[str, Any]]:
    runner = TapTestRunner(TapBitbucket, config=CONFIG, catalog=CATALOG)
    runner.sync_all()
    return runner.raw_messages


class TestTapBitbucket(_StandardTests):  # type: ignore[misc,valid-type]
    """The standard tests, unchanged; only their one sync is shared between xdist workers.

    The SDK's class-scoped `runner` fixture syncs once per class *per worker*; pytest-xdist
    spreads these ~365 tests over every worker, so it would sync once on each. This runner
    syncs the same way (`TapTestRunner.sync_all`, the same config and catalog) once per
    session and hands every worker the same messages.
    """

    @pytest.fixture(scope="class")
    @classmethod
    def runner(cls, tmp_path_factory: pytest.TempPathFactory) -> TapTestRunner:
        messages = once_per_session(tmp_path_factory, "standard-sync", _sync_messages)
        runner = TapTestRunner(TapBitbucket, config=CONFIG, catalog=CATALOG)
        runner._parse_records(messages)
        return runner
