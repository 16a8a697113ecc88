"""Work around what the singer-sdk has no public hook for, in one place.

Each item names the missing hook; tests/test_sdk_gaps.py fails loudly when an SDK
upgrade changes the behaviour that the work-around relies on.

* **A per-partition "unsorted" warning that cannot be declared away.** The SDK logs
  "Stream is assumed to be unsorted, progress is not resumable if interrupted" once per
  state partition of every ``is_sorted = False`` stream. Commits, PR activity and
  pipelines are scanned newest first, so they are unsorted by nature, and their
  partition is one repository: an interrupted repository restarts from its own
  bookmark, which is exactly what resuming means here. On a 1,000-repository
  workspace that is 3,000 WARNING lines that say nothing. The SDK has no setting to
  declare a stream "resumable per partition" (what makes a stream resumable is only
  documented, in meltano/sdk#2725), so the tap drops exactly that message with a
  logging filter on the SDK's logger.
"""

from __future__ import annotations

import logging

UNSORTED_WARNING = "Stream is assumed to be unsorted, progress is not resumable if interrupted"
#: The logger the SDK's state helpers write that warning to (not a child logger).
SDK_STATE_LOGGER = "singer_sdk"


class _DropUnsortedWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(UNSORTED_WARNING)


_FILTER = _DropUnsortedWarning()


def quiet_unsorted_warning() -> None:
    """Install the filter (idempotent)."""
    logger = logging.getLogger(SDK_STATE_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
