"""Shared fixtures: a session-wide default emulator and a factory for fresh ones."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, settings

from tests.emulator import Emulator, EmulatorConfig

# The property tests of bad input (tests/test_fuzz_*.py). `ci`, the default: a fixed
# seed (derandomize), few examples, no example database, so `make test` is reproducible
# and stays within its budget. `nightly` (`make fuzz`, or HYPOTHESIS_PROFILE=nightly):
# many more examples, a random seed each run (a failure prints the seed to reproduce).
# Each example is a whole tap run against the emulator: no per-example deadline, and the
# session emulator is shared between examples on purpose.
_FUZZ = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
settings.register_profile("ci", max_examples=10, derandomize=True, database=None, **_FUZZ)
settings.register_profile("nightly", max_examples=400, **_FUZZ)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """The default emulator (seed 1, scale 1), shared by a whole test session (per worker).

    Tests that change its state (mutate, delete a repository, faults, config, revocation)
    must use `make_emulator` instead.
    """
    with Emulator(EmulatorConfig()) as emu:
        yield emu
    assert not emu.internal_errors, emu.internal_errors


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    """Factory: `make_emulator(rate_limit=3, ...)` starts a fresh emulator with those
    EmulatorConfig fields; every emulator made is stopped at teardown."""
    made: list[Emulator] = []

    def _make(**config: Any) -> Emulator:
        emu = Emulator(EmulatorConfig(**config)).start()
        made.append(emu)
        return emu

    yield _make
    for emu in made:
        emu.stop()
    for emu in made:
        assert not emu.internal_errors, emu.internal_errors


@pytest.fixture
def api(emulator: Emulator) -> Iterator[requests.Session]:
    """A keep-alive session on the session emulator, authenticated with the API token."""
    with requests.Session() as session:
        session.auth = emulator.credentials.basic_auth()
        yield session
