"""User-facing errors: each one is printed as a single line and ends the run non-zero."""

from __future__ import annotations


class TapBitbucketError(Exception):
    """An error the user can act on.

    The message is one line that says what is wrong and what to do next. It never
    carries a credential. The CLI prints it without a traceback (unless debug
    logging is on) and exits with ``exit_code``.
    """

    exit_code = 2


class ConfigError(TapBitbucketError):
    """A setting is missing, malformed or inconsistent."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        super().__init__(f"Invalid setting '{setting}': {problem}")


class AuthError(TapBitbucketError):
    """Credentials were rejected or could not be obtained or persisted."""


class APIError(TapBitbucketError):
    """Bitbucket answered with an error that the tap cannot skip."""

    exit_code = 1


class GaveUp(APIError):
    """A request failed on every try the retry policy allowed."""

    def __init__(self, message: str, last_error: BaseException) -> None:
        super().__init__(message)
        self.last_error = last_error


class StateError(TapBitbucketError):
    """The --state input cannot be used."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"Invalid state: {problem}. Fix or remove the state file (a sync without state "
            "starts from start_date)."
        )


class CatalogError(TapBitbucketError):
    """The --catalog input cannot be used."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"Invalid catalog: {problem}. Fix the catalog file, or make a new one with "
            "`tap-bitbucket --discover`."
        )
