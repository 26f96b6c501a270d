"""The `filter` of ListBatchPredictionJobs, as the aiplatform SDK and the Vertex AI docs write it (AIP-160):

    state=JOB_STATE_SUCCEEDED AND display_name="nightly" AND labels.team="a" AND create_time>"2026-01-01T00:00:00Z"

Conditions on state (= !=), display_name (= !=), labels.KEY (= !=, and `labels.KEY:*` / `labels:KEY` for "is
set") and create_time (= != < <= > >=, an RFC 3339 time), joined by AND. camelCase names work too. Values may be
quoted. The result is a list of `Condition`s in the engine's terms, which the job store turns into SQL.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from batchline.api.vertex_schemas import ENGINE_STATES, VERTEX_STATES
from batchline.domain.jobs import Condition
from batchline.errors import InvalidArgument

_FIELDS = {"state": "state", "display_name": "display_name", "displayName": "display_name",
           "create_time": "create_time", "createTime": "create_time"}  # fmt: skip
_EQUALITY = ("=", "!=")
_CONDITION = re.compile(
    r"\s*(?P<field>[A-Za-z_][\w.\-]*)\s*(?P<op>!=|<=|>=|=|<|>|:)\s*"
    r'(?P<value>"(?:[^"\\]|\\.)*"|[^\s"()]+)\s*'
)
_AND = re.compile(r"AND\s+", re.IGNORECASE)
_HELP = (
    'supported: state=JOB_STATE_SUCCEEDED, display_name="x", labels.KEY="v", labels.KEY:*, '
    'create_time>"2026-01-01T00:00:00Z", joined by AND'
)


def parse_filter(text: str) -> tuple[Condition, ...]:
    """The conditions a filter string asks for (all must hold); InvalidArgument says what is not understood."""
    conditions: list[Condition] = []
    position, text = 0, text.strip()
    while position < len(text):
        if conditions:
            joiner = _AND.match(text, position)
            if joiner is None:
                raise InvalidArgument(f"unsupported filter {text!r} at {text[position:]!r}; {_HELP}")
            position = joiner.end()
        match = _CONDITION.match(text, position)
        if match is None:
            raise InvalidArgument(f"unsupported filter {text!r} at {text[position:]!r}; {_HELP}")
        conditions.append(_condition(match["field"], match["op"], _unquote(match["value"])))
        position = match.end()
    return tuple(conditions)


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _condition(field: str, op: str, value: str) -> Condition:
    if field == "labels" and op == ":":
        return Condition(f"labels.{value}", ":", "*")
    if field.startswith("labels.") and len(field) > len("labels."):
        if op == ":" and value == "*":
            return Condition(field, ":", "*")
        _check_op(field, op, _EQUALITY)
        return Condition(field, op, value)
    name = _FIELDS.get(field)
    if name is None:
        raise InvalidArgument(f"cannot filter on {field!r}; {_HELP}")
    if name == "create_time":
        _check_op(field, op, ("=", "!=", "<", "<=", ">", ">="))
        return Condition(name, op, _seconds(value))
    _check_op(field, op, _EQUALITY)
    if name == "state":
        if value not in VERTEX_STATES:
            raise InvalidArgument(f"unknown state {value!r}; states are {', '.join(VERTEX_STATES)}")
        # A state batchline never reaches (PAUSED, EXPIRED ...) is "" here: no job has it.
        state = ENGINE_STATES.get(value)
        return Condition(name, op, state.value if state else "")
    return Condition(name, op, value)


def _check_op(field: str, op: str, allowed: tuple[str, ...]) -> None:
    if op not in allowed:
        raise InvalidArgument(f"{field} takes {' '.join(allowed)} in a filter, not {op}")


def _seconds(value: str) -> float:
    """An RFC 3339 time (fractions to the nanosecond, Z or an offset) as epoch seconds."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip()).replace("z", "Z")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        example = "2026-01-01T00:00:00Z"
        raise InvalidArgument(f"create_time takes an RFC 3339 time like {example!r}, got {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
