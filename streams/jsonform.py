"""The JSON form of events (spec §2): timestamps as ISO-8601 strings, decimals as strings.

Conversion is driven by the event's Avro schema so that the JSON form a trader, a campaign or the
CLI writes is checked against exactly the contract the wire carries. Errors name the JSON Pointer
of the offending value. Unknown fields are refused: a misspelt field name must not silently become
a missing optional one.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

INT_RANGE = (-(2**31), 2**31 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)
# Avro timestamp-millis is a long; fastavro (and Python) stop at year 9999 anyway.
_MIN_TS = datetime(1, 1, 1, tzinfo=UTC)
# datetime keeps microseconds and drops further digits silently: they are checked on the text.
_FRACTION = re.compile(r"[.,]([0-9]+)")


class JsonFormError(ValueError):
    """A JSON value that is not the JSON form of the expected event."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(f"{pointer or '/'}: {message}")
        self.pointer = pointer
        self.message = message


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _named(schema: Any, names: dict[str, Any]) -> Any:
    """Follow a reference to a named type seen earlier in the same schema."""
    if isinstance(schema, str) and schema in names:
        return names[schema]
    if (
        isinstance(schema, dict)
        and "name" in schema
        and schema.get("type")
        in (
            "record",
            "enum",
            "fixed",
        )
    ):
        names.setdefault(schema["name"], schema)
    return schema


def from_json(schema: Any, value: Any) -> Any:
    """Convert the JSON form `value` to the Avro-native form of `schema` (parsed by fastavro)."""
    return _from(schema, value, "", _named_types(schema, {}))


def to_json(schema: Any, value: Any) -> Any:
    """Convert an Avro-native value (as fastavro reads it) to its JSON form."""
    return _to(schema, value, _named_types(schema, {}))


def _named_types(schema: Any, names: dict[str, Any]) -> dict[str, Any]:
    """Every named type of `schema`, found up front: registering them only while converting
    misses a type defined in a branch the value does not take (a null union, an empty list, a
    defaulted field) and referenced later by name."""
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, names)
    elif isinstance(schema, dict):
        _named(schema, names)
        for field in schema.get("fields", []) if schema.get("type") == "record" else []:
            _named_types(field["type"], names)
        for key in ("items", "values"):
            if key in schema:
                _named_types(schema[key], names)
    return names


def _from(schema: Any, value: Any, pointer: str, names: dict[str, Any]) -> Any:
    schema = _named(schema, names)
    if isinstance(schema, list):
        return _from_union(schema, value, pointer, names)
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if logical == "decimal":
        return _decimal(schema, value, pointer)
    if logical == "timestamp-millis":
        return _timestamp(value, pointer)
    if kind == "record":
        return _record(schema, value, pointer, names)
    if kind == "array":
        if not isinstance(value, list):
            raise JsonFormError(pointer, f"expected a list, got {_kind(value)}")
        return [_from(schema["items"], v, f"{pointer}/{i}", names) for i, v in enumerate(value)]
    if kind == "enum":
        if value not in schema["symbols"]:
            raise JsonFormError(pointer, f"{value!r} is not one of {', '.join(schema['symbols'])}")
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise JsonFormError(pointer, f"expected a string, got {_kind(value)}")
        return value
    if kind in ("int", "long"):
        low, high = INT_RANGE if kind == "int" else LONG_RANGE
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise JsonFormError(
                pointer,
                f"expected {'an int' if kind == 'int' else 'a long'} integer, got {_kind(value)}",
            )
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise JsonFormError(pointer, f"expected true or false, got {_kind(value)}")
        return value
    if kind == "bytes":
        if not isinstance(value, str):
            raise JsonFormError(pointer, "expected bytes as a base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise JsonFormError(pointer, "not valid base64") from None
    if kind == "null":
        if value is not None:
            raise JsonFormError(pointer, "expected null")
        return None
    raise JsonFormError(pointer, f"unsupported schema type {kind}")


def _record(schema: Any, value: Any, pointer: str, names: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise JsonFormError(pointer, f"expected an object, got {_kind(value)}")
    fields = {f["name"]: f for f in schema["fields"]}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise JsonFormError(f"{pointer}/{_escape(unknown[0])}", "unknown field")
    result: dict[str, Any] = {}
    for name, field in fields.items():
        where = f"{pointer}/{_escape(name)}"
        if name in value:
            result[name] = _from(field["type"], value[name], where, names)
        elif "default" in field:
            result[name] = field["default"]
        else:
            raise JsonFormError(where, "required field is missing")
    return result


def _from_union(branches: list[Any], value: Any, pointer: str, names: dict[str, Any]) -> Any:
    if value is None and "null" in branches:
        return None
    errors: list[JsonFormError] = []
    for branch in branches:
        if branch == "null":
            continue
        try:
            return _from(branch, value, pointer, names)
        except JsonFormError as exc:
            errors.append(exc)
    # Our unions are all `null | T`: the error of T is the useful one.
    if len(errors) == 1:
        raise errors[0]
    raise JsonFormError(pointer, "matches no branch of the union")


def _decimal(schema: Mapping[str, Any], value: Any, pointer: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise JsonFormError(pointer, f"expected a decimal written as a string, got {_kind(value)}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise JsonFormError(pointer, f"{value!r} is not a decimal number") from None
    if not number.is_finite():
        raise JsonFormError(pointer, f"{value!r} is not a finite number")
    scale, precision = schema.get("scale", 0), schema["precision"]
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > scale:
        raise JsonFormError(pointer, f"{value} has more than {scale} decimal places")
    # Digits once written at the schema's scale: integer digits plus `scale` decimals.
    if number and number.adjusted() + 1 + scale > precision:
        raise JsonFormError(pointer, f"{value} has more than {precision} digits")
    return number


def _timestamp(value: Any, pointer: str) -> datetime:
    if not isinstance(value, str):
        raise JsonFormError(pointer, f"expected an ISO-8601 timestamp string, got {_kind(value)}")
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise JsonFormError(pointer, f"{value!r} is not an ISO-8601 timestamp") from None
    if instant.tzinfo is None:
        raise JsonFormError(pointer, f"{value!r} has no UTC offset (write Z or +hh:mm)")
    try:
        instant = instant.astimezone(UTC)
    except OverflowError:
        raise JsonFormError(pointer, f"{value!r} is out of range once in UTC") from None
    fraction = _FRACTION.search(value)
    if instant.microsecond % 1000 or (fraction and fraction.group(1)[3:].strip("0")):
        raise JsonFormError(pointer, f"{value!r} is finer than a millisecond")
    return instant


def _kind(value: Any) -> str:
    return {
        type(None): "null",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def format_timestamp(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _to(schema: Any, value: Any, names: dict[str, Any]) -> Any:
    schema = _named(schema, names)
    if isinstance(schema, list):
        if value is None:
            return None
        branch = next(b for b in schema if b != "null")
        return _to(branch, value, names)
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if logical == "decimal":
        # At the schema's scale whatever the Decimal's own exponent: from_json("5") gives
        # Decimal("5"), and the JSON form of money is "5.00" as on the wire.
        scale = schema.get("scale", 0)
        scaled = value.quantize(Decimal(1).scaleb(-scale))
        if scaled != value:
            raise ValueError(f"{value} has more than {scale} decimal places")
        return format(scaled, "f")
    if logical == "timestamp-millis":
        return format_timestamp(value)
    if kind == "record":
        return {f["name"]: _to(f["type"], value[f["name"]], names) for f in schema["fields"]}
    if kind == "array":
        return [_to(schema["items"], v, names) for v in value]
    if kind == "bytes":
        return base64.b64encode(value).decode("ascii")
    return value
