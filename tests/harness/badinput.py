"""The invariant every bad-input case must keep (issue 16), and what the cases share.

For any input, the tap either

* exits 0, and every record it emitted is valid against its stream's SCHEMA, or is named
  by a WARNING (the stream, the record's key, the field) and was emitted as sent; or
* exits non-zero with exactly one error line that names the input at fault and says what
  to do;

and never prints a traceback (debug logging is off in these runs).
"""

from __future__ import annotations

import re
from typing import Any

from tests.harness.checks import record_validator
from tests.harness.running import ERROR_PREFIX, FAST, START_DATE, TapResult, api_token_config

#: Words of an error line that say what to do next.
ADVICE = re.compile(
    r"\b(must|required|check|fix|remove|delete|re-run|rerun|grant|set|use|select|report|retry|give|"
    r"run|add|make|wait|rename|lower|raise)\b",
    re.IGNORECASE,
)


class Setup(dict[str, Any]):
    """A property-test module's fixed inputs (config, catalog, base state, emulator):
    a short repr, so Hypothesis's report of a failing case does not print them whole."""

    def __repr__(self) -> str:
        return "setup"


def one_repository_config(emu: Any, repo: str) -> dict[str, Any]:
    """A sync of one repository that gives up fast: one worker, two tries, no real
    backoff (a hostile answer retried with the defaults would take minutes)."""
    return api_token_config(
        emu,
        workspaces=[repo.split("/", maxsplit=1)[0]],
        repositories=[repo],
        start_date=START_DATE,
        max_workers=1,
        max_retries=2,
        **FAST,
    )


def invariant_problems(result: TapResult, culprit: re.Pattern[str] | str) -> list[str]:
    """What breaks the invariant in `result` (empty when it holds).

    `culprit`: what the error line of a failed run must name (a setting, the state's
    stream, a catalog entry, an endpoint), as a regular expression.
    """
    problems: list[str] = []
    if "Traceback" in result.stderr:
        problems.append("a traceback: " + result.stderr[result.stderr.index("Traceback") :][:1500])
    errors = result.error_lines()
    if result.returncode == 0:
        if errors:
            problems.append(f"exit 0 with an error line: {errors}")
        problems.extend(unreported_invalid_records(result))
        return problems
    if len(errors) != 1:
        problems.append(f"exit {result.returncode} with {len(errors)} error lines: {errors}")
        problems.append(result.stderr[-1500:])
        return problems
    line = errors[0][len(ERROR_PREFIX) :]
    if not re.search(culprit, line):
        problems.append(f"the error line does not name {culprit!r}: {line}")
    if not ADVICE.search(line):
        problems.append(f"the error line does not say what to do: {line}")
    if re.search(r"\b[A-Z][a-zA-Z]+Error\b:", line):
        problems.append(f"an internal error's text in the error line: {line}")
    return problems


def unreported_invalid_records(result: TapResult) -> list[str]:
    """Records invalid against their stream's SCHEMA that no WARNING names."""
    warnings = "\n".join(result.warning_lines())
    validators: dict[str, Any] = {}
    problems = []
    for message in result.records:
        stream = message["stream"]
        schema = result.schemas.get(stream)
        if schema is None:
            problems.append(f"a record of {stream} before its SCHEMA")
            continue
        validator = validators.get(stream) or record_validator(schema["schema"])
        validators[stream] = validator
        for error in validator.iter_errors(message["record"]):
            field = (
                ".".join(str(p) for p in error.absolute_path)
                or (
                    # a missing required key is reported at the record's level
                    re.findall(r"'([^']+)' is a required property", error.message) or [""]
                )[0]
            )
            if not _reported(warnings, stream, field):
                problems.append(f"{stream}: invalid {field!r} without a WARNING: {error.message}")
    return problems[:10]


def _reported(warnings: str, stream: str, field: str) -> bool:
    for line in warnings.splitlines():
        if f"'{stream}'" in line and (not field or field.split(".", maxsplit=1)[0] in line):
            return True
    return False
