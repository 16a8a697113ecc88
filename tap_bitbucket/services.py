"""What every stream of one sync shares, built once by the tap and handed to streams."""

from __future__ import annotations

import dataclasses
import typing as t

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from tap_bitbucket.directory import Directory
    from tap_bitbucket.gaps import CredentialGaps
    from tap_bitbucket.progress import Progress
    from tap_bitbucket.scope import Scope
    from tap_bitbucket.settings import Settings
    from tap_bitbucket.streams.bookmarks import Bookmarks
    from tap_bitbucket.transport import Transport


@dataclasses.dataclass(frozen=True)
class Services:
    settings: Settings
    transport: Transport
    scope: Scope
    directory: Directory
    bookmarks: Bookmarks
    gaps: CredentialGaps
    progress: Progress
    #: Offer the tap's state now (a stream at a safe point inside a partition).
    write_state: Callable[[], None]
