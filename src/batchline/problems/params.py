"""Typed params from wire values: the checks and messages every surface shares.

A surface names, for each of its wire keys, the Params field it sets; values are converted by the field's type
(a bool, a whole number, a number) and checked against the field's bounds, with a message that says what to send.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from annotated_types import Ge, Gt, Le
from pydantic import ValidationError

from batchline.errors import InvalidArgument
from batchline.problems.base import Params


def from_strings(model: type[Params], values: Mapping[str, str], keys: Mapping[str, str], where: str) -> dict[str, Any]:
    """AutoML's map<string, string> as Params fields: each wire key in `keys` names a field; `where` prefixes
    messages."""
    _check_known(values, keys, where)
    return {keys[key]: _from_string(model, keys[key], f"{where}.{key}", str(value)) for key, value in values.items()}


def from_json(model: type[Params], values: Mapping[str, Any], keys: Mapping[str, str], where: str) -> dict[str, Any]:
    """JSON values (Vertex modelParameters) as Params fields: numbers as numbers (10.0 is 10), bools as bools,
    never strings."""
    _check_known(values, keys, where)
    return {keys[key]: _from_json(model, keys[key], f"{where}.{key}", value) for key, value in values.items()}


def _check_known(values: Mapping[str, Any], keys: Mapping[str, str], where: str) -> None:
    unknown = sorted(set(values) - set(keys))
    if unknown:
        raise InvalidArgument(f"unknown {where} {unknown}; allowed: {', '.join(sorted(keys))}")


def build(model: type[Params], values: dict[str, Any], where: str) -> Params:
    """The typed params, defaults filled in."""
    try:
        return model(**values)
    except ValidationError as exc:  # a bound the converters did not check: still the user's error
        problems = "; ".join(f"{where}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidArgument(problems) from None


def _from_string(model: type[Params], field: str, name: str, text: str) -> Any:
    kind = _kind(model, field)
    if kind is bool:
        if text.strip().lower() not in ("true", "false"):
            raise InvalidArgument(f"{name} must be true or false, got {text!r}")
        return text.strip().lower() == "true"
    try:
        number = int(text) if kind is int else float(text)
    except ValueError:
        raise InvalidArgument(f"{name} must be {_what(model, field)}, got {text!r}") from None
    return _bounded(model, field, name, number, text)


def _from_json(model: type[Params], field: str, name: str, value: Any) -> Any:
    kind = _kind(model, field)
    if kind is bool:
        if not isinstance(value, bool):
            raise InvalidArgument(f"{name} must be true or false (not a string), got {value!r}")
        return value
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidArgument(f"{name} must be {_what(model, field)} (not a string), got {value!r}")
    if kind is int:
        if value != int(value):
            raise InvalidArgument(f"{name} must be {_what(model, field)} (not a string), got {value!r}")
        value = int(value)
    return _bounded(model, field, name, float(value) if kind is float else value, value)


def _bounded(model: type[Params], field: str, name: str, number: float, given: Any) -> float:
    low, high, above = _bounds(model, field)
    if (
        (low is not None and number < low)
        or (high is not None and number > high)
        or (above is not None and number <= above)
    ):
        raise InvalidArgument(f"{name} must be {_what(model, field)}, got {given!r}")
    return number


def _kind(model: type[Params], field: str) -> type:
    annotation = model.model_fields[field].annotation
    for kind in (bool, int, float):
        if annotation is kind or kind in getattr(annotation, "__args__", ()):
            return kind
    raise TypeError(f"{model.__name__}.{field} is not a bool, int or float")


def _bounds(model: type[Params], field: str) -> tuple[float | None, float | None, float | None]:
    low = high = above = None
    for item in model.model_fields[field].metadata:
        if isinstance(item, Ge):
            low = item.ge
        elif isinstance(item, Le):
            high = item.le
        elif isinstance(item, Gt):
            above = item.gt
    return low, high, above


def _what(model: type[Params], field: str) -> str:
    """How a field's values read, for messages: 'a number between 0 and 1', 'a whole number >= 1'."""
    kind, (low, high, above) = _kind(model, field), _bounds(model, field)
    noun = "a whole number" if kind is int else "a number"
    if low is not None and high is not None:
        return f"{noun} between {low:g} and {high:g}"
    if low is not None:
        return f"{noun} >= {low:g}"
    if above is not None:
        return f"{noun} > {above:g}"
    return noun
