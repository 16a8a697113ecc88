"""Singer output: the SDK's msgspec writer, minus three costs measured in this tap.

A full sync of the emulator's default dataset spent more time writing SCHEMA and STATE
messages than records (cProfile, 886 requests, 3,788 records):

* the SDK writes a SCHEMA message every time a child stream starts a partition: once
  per repository and per PR, each one a recursive ``dataclasses.asdict`` of a large
  schema. One SCHEMA per stream is enough for every target: each stream's line is
  serialised once and kept by stream name (never by ``id()`` of a schema, which a freed
  object can hand to another: issue 12, bug 4); a changed schema is still written;
* the SDK writes a STATE message after every child partition, deep-copying a state
  that grows with the number of repositories: quadratic in the repository count.
  :class:`ThrottledStateWriter` writes the newest state at most once per
  ``state_interval`` seconds, and always at the end. STATE still only ever describes
  records already written, so resuming from any STATE loses nothing;
* stdout was flushed after every message; it is now flushed with each STATE message
  (so a reader always sees the state together with the records it covers) and at exit.

Each RECORD is also checked against its stream's SCHEMA as written (record_check.py).
"""

from __future__ import annotations

import copy
import sys
import time
import typing as t

from singer_sdk.contrib.msgspec import MsgSpecWriter, serialize_jsonl
from singer_sdk.singerlib import RecordMessage, SchemaMessage, StateMessage

from tap_bitbucket.record_check import StreamCheck

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import TapState
    from singer_sdk.singerlib.encoding.base import GenericSingerWriter


class TapWriter(MsgSpecWriter):
    """Writes each stream's SCHEMA once, serialises STATE without deep copies."""

    def __init__(self) -> None:
        super().__init__()
        # stream -> (the schema dict it was made from, its line). Holding the dict keeps
        # the identity test below sound; an equal but new dict is compared by value.
        self._schema_lines: dict[str, tuple[t.Any, bytes]] = {}
        self._written_schema: dict[str, bytes] = {}
        self._checks: dict[str, StreamCheck] = {}
        #: RECORD messages written (the progress lines count them).
        self.records_written = 0

    def serialize_message(self, message: t.Any) -> t.Any:
        if isinstance(message, StateMessage):
            return serialize_jsonl({"type": "STATE", "value": message.value})
        if isinstance(message, SchemaMessage):
            return bytearray(self._schema_line(message))
        return super().serialize_message(message)

    def _schema_line(self, message: SchemaMessage) -> bytes:
        # The SDK passes the same dict for every partition of a stream: serialise it once.
        known = self._schema_lines.get(message.stream)
        if known is not None and (known[0] is message.schema or known[0] == message.schema):
            return known[1]
        # Serialised straight from the schema dict: the SDK's `to_dict()` is a
        # recursive dataclasses.asdict() deep copy of the whole schema.
        body: dict[str, t.Any] = {
            "type": "SCHEMA",
            "stream": message.stream,
            "schema": message.schema,
        }
        if message.key_properties is not None:
            body["key_properties"] = list(message.key_properties)
        if message.bookmark_properties:
            body["bookmark_properties"] = message.bookmark_properties
        line = bytes(serialize_jsonl(body))
        self._schema_lines[message.stream] = (message.schema, line)
        return line

    def write_message(self, message: t.Any) -> None:
        out = sys.stdout.buffer
        if isinstance(message, SchemaMessage):
            line = self._schema_line(message)
            if self._written_schema.get(message.stream) == line:
                return
            self._written_schema[message.stream] = line
            self._checks[message.stream] = StreamCheck(
                message.stream, message.schema, list(message.key_properties or ())
            )
            out.write(line)
            return
        out.write(self.format_message(message))
        if isinstance(message, RecordMessage):
            self.records_written += 1
            check = self._checks.get(message.stream)
            if check is not None:
                check.check(message.record)
        if isinstance(message, StateMessage):
            out.flush()

    def close(self) -> None:
        sys.stdout.buffer.flush()
        for check in self._checks.values():
            check.summary()


class ThrottledStateWriter:
    """Writes the newest state at most once per ``interval`` seconds, and on flush.

    The tap's ``state_writer`` (the SDK's public property that streams write through);
    it offers the same ``write_state`` as the SDK's writer.
    """

    def __init__(self, message_writer: GenericSingerWriter[t.Any, t.Any], interval: float) -> None:
        self._writer = message_writer
        self.interval = interval
        self._last_write = 0.0
        self._pending: TapState | None = None
        self._last_value: TapState | None = None

    def write_state(self, state: TapState) -> None:
        now = time.monotonic()
        if now - self._last_write < self.interval:
            self._pending = state
            return
        self._emit(state)

    def flush(self) -> None:
        if self._pending is not None:
            self._emit(self._pending)

    def _emit(self, state: TapState) -> None:
        self._pending = None
        self._last_write = time.monotonic()
        if state == self._last_value:
            return
        # The snapshot is what goes out: later mutations of the live dict must not leak
        # into a message that is still waiting in a buffer.
        snapshot = copy.deepcopy(state)
        self._writer.write_message(StateMessage(value=snapshot))
        self._last_value = snapshot
