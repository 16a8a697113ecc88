"""Checking the shape of a --catalog before the SDK reads it (issue 16).

The SDK parses a catalog without checking it: ``{"streams": null}``, an entry that is not
an object, ``metadata: null`` or a property schema of ``null`` ended in a TypeError's or
AttributeError's text (found by tests/test_fuzz_catalog.py). Here each one is one line
naming the entry. What the SDK does with a well-formed catalog is left to it: streams the
tap does not have are ignored, a child selected without its parent is synced through it.
"""

from __future__ import annotations

import typing as t

from tap_bitbucket.errors import CatalogError
from tap_bitbucket.streams import STREAM_TYPES

#: Each stream's own replication key: the SDK uses it when the catalog names none.
_STREAMS: list[t.Any] = list(STREAM_TYPES)  # classes: `name` is declared per instance
_REPLICATION_KEYS: dict[str, t.Any] = {cls.name: cls.replication_key for cls in _STREAMS}
_TYPED = ("type", "anyOf", "oneOf", "allOf")


def check_catalog(catalog: dict[str, t.Any]) -> None:
    """Raise :class:`CatalogError` naming the first malformed part of ``catalog``."""
    streams = catalog.get("streams")
    if not isinstance(streams, list):
        raise CatalogError("'streams' must be a list of stream entries")
    for index, entry in enumerate(streams):
        if not isinstance(entry, dict) or not isinstance(entry.get("tap_stream_id"), str):
            raise CatalogError(f"streams[{index}] must be an object with a 'tap_stream_id'")
        where = f"entry '{entry['tap_stream_id']}'"
        _schema(f"{where}: schema", entry.get("schema"))
        metadata = entry.get("metadata", [])
        if not isinstance(metadata, list):
            raise CatalogError(f"{where}: 'metadata' must be a list")
        for number, item in enumerate(metadata):
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("breadcrumb"), list)
                or not all(isinstance(step, str) for step in item["breadcrumb"])
                or not isinstance(item.get("metadata"), dict)
            ):
                raise CatalogError(
                    f"{where}: metadata[{number}] must be an object with a 'breadcrumb' list "
                    "of strings and a 'metadata' object"
                )
            _metadata_values(where, item["metadata"])
        _replication_key_typed(where, entry, metadata)


def _replication_key_typed(where: str, entry: dict[str, t.Any], metadata: list[t.Any]) -> None:
    """The SDK derives how to compare bookmarks from the replication key's type: a
    schema without one ended in its EmptySchemaTypeError's text (found by the nightly
    profile of tests/test_fuzz_catalog.py)."""
    keys = {_REPLICATION_KEYS.get(entry["tap_stream_id"]), entry.get("replication_key")}
    for item in metadata:
        if item["breadcrumb"] == []:
            keys.add(item["metadata"].get("replication-key"))
    properties = entry["schema"].get("properties", {})
    for key in keys:
        schema = properties.get(key) if isinstance(key, str) else None
        if schema is not None and not any(word in schema for word in _TYPED):
            raise CatalogError(
                f"{where}: the replication key '{key}' has a schema without a type; give it "
                "the type of the discovered catalog"
            )


#: Metadata keys the SDK reads, and the JSON types each may have (null always may).
_METADATA: dict[str, tuple[type, ...]] = {
    "selected": (bool,),
    "selected-by-default": (bool,),
    "replication-key": (str,),
    "replication-method": (str,),
    "forced-replication-method": (str,),
    "inclusion": (str,),
    "table-key-properties": (list,),
}


def _metadata_values(where: str, values: dict[str, t.Any]) -> None:
    for key, kinds in _METADATA.items():
        value = values.get(key)
        if value is None:
            continue
        if not isinstance(value, kinds) or (
            isinstance(value, list) and not all(isinstance(v, str) for v in value)
        ):
            raise CatalogError(f"{where}: metadata '{key}' has the wrong type ({value!r:.40})")


def _schema(where: str, schema: t.Any) -> None:
    if not isinstance(schema, dict):
        raise CatalogError(f"{where} must be a JSON schema object")
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise CatalogError(f"{where}.properties must be an object")
    for name, value in properties.items():
        _schema(f"{where}.properties.{name}", value)
    if "items" in schema:
        _schema(f"{where}.items", schema["items"])
