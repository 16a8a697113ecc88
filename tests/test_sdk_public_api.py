"""The tap uses the singer-sdk's public API only (issue 12): tests/sdk_scan.py scans the
package for private SDK imports, overrides of @final or private SDK methods (and writes to
the SDK's private state) and monkeypatching. Each rule has a self-test on a planted
offence, so a scan that silently finds nothing cannot pass.
"""

from __future__ import annotations

import pytest

from tap_bitbucket.client import BitbucketStream
from tap_bitbucket.tap import TapBitbucket
from tests.sdk_scan import (
    ALLOWED,
    SDK,
    Offence,
    package_modules,
    scan_package,
    scan_snippet,
    sdk_owner,
)

pytestmark = pytest.mark.unit


def _allowed(offence: Offence) -> bool:
    return (offence.where.split(":")[0], offence.text) in ALLOWED


def test_the_package_uses_the_sdk_public_api_only() -> None:
    modules = package_modules()
    assert len(modules) > 30, "the scan found too few modules"
    offences = [o for o in scan_package() if not _allowed(o)]
    assert not offences, "\n".join(map(str, offences))


def test_every_allowance_is_still_needed() -> None:
    """An allowance whose code is gone must go too (it would hide a new offence there)."""
    used = {(o.where.split(":")[0], o.text) for o in scan_package() if _allowed(o)}
    assert used == set(ALLOWED), set(ALLOWED) - used


def test_the_scan_sees_the_sdk_subclasses_of_the_package() -> None:
    """The override rule has something to check: the tap's classes derive from the SDK's
    and define methods the SDK also defines (public, non-final ones)."""
    for cls in (TapBitbucket, BitbucketStream):
        assert any(b.__module__.startswith(SDK) for b in cls.__mro__[1:]), cls
    assert "get_url_params" in vars(BitbucketStream)
    assert sdk_owner(BitbucketStream, "get_url_params") is None


def test_rule_a_catches_private_sdk_imports() -> None:
    found = scan_snippet(
        """
        import singer_sdk
        from singer_sdk.helpers import _state
        from singer_sdk import typing as th

        def use():
            from singer_sdk.helpers._compat import SingerSDKDeprecationWarning
            return singer_sdk.helpers._typing, th, _state, SingerSDKDeprecationWarning
        """
    )
    texts = {o.text for o in found if o.rule == "private-import"}
    assert texts == {
        "from singer_sdk.helpers import _state",
        "from singer_sdk.helpers._compat import SingerSDKDeprecationWarning",
        "singer_sdk.helpers._typing",
    }, found


def test_rule_a_ignores_private_names_of_other_packages() -> None:
    assert scan_snippet("from os import _exit\nimport concurrent.futures._base\n") == []


def test_rule_b_catches_overrides_of_final_and_private_sdk_methods() -> None:
    found = scan_snippet(
        """
        from singer_sdk import RESTStream, Tap

        class Base(Tap):
            name = "planted"

        class Planted(Base):  # indirect: through a class of the package
            def sync_all(self):  # @final, marker on the function
                pass

            def get_url_params(self, context, next_page_token):  # public: fine
                return {}

        class Stream(RESTStream):
            def has_selected_descendents(self):  # @final @property: marker lost at run time
                return False

            def _request(self, prepared_request, context):  # private SDK method
                pass

            def _mine(self):  # private, but not the SDK's: fine
                self._cache = {}  # private state of its own: fine
                self._config["x"] = 1  # the SDK's private state
        """
    )
    texts = {o.text for o in found if o.rule == "sdk-override"}
    assert texts == {
        "Planted.sync_all overrides @final singer_sdk.tap_base.Tap",
        "Stream.has_selected_descendents overrides @final singer_sdk.streams.core.Stream",
        "Stream._request overrides private singer_sdk.streams.rest._HTTPStream",
        "Stream writes self._config, private state of singer_sdk.streams.core.Stream",
    }, found


def test_rule_c_catches_monkeypatching() -> None:
    found = scan_snippet(
        """
        import sys
        import singer_sdk.tap_base
        from singer_sdk import Tap

        def patch():
            singer_sdk.tap_base.Tap.invoke = None
            Tap.cli = None
            sys.excepthook = print
            setattr(Tap, "sync_all", None)
            del Tap.run_connection_test

        class Fine:
            value = 1

        def fine(obj):
            obj.value = 2  # an attribute of a local object: fine
            Fine.value = 3  # a class of this module: fine
        """
    )
    texts = {o.text for o in found if o.rule == "monkeypatch"}
    assert texts == {
        "assigns singer_sdk.tap_base.Tap.invoke",
        "assigns Tap.cli",
        "assigns sys.excepthook",
        "setattr(Tap, ...)",
        "deletes Tap.run_connection_test",
    }, found
