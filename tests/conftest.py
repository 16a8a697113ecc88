"""Shared fixtures: a session-wide default emulator and a factory for fresh ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.emulator import Emulator, EmulatorConfig


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
