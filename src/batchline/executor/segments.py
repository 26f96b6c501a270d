"""Time segments of video inputs, as both surfaces write them: AutoML CSV rows `GCS_FILE_PATH,START,END` (seconds,
fractions to the microsecond, `inf`), and Vertex instances' `timeSegmentStart` / `timeSegmentEnd` (durations such
as "0.0s", "2.366667s", "1.5m", "inf" or "Infinity")."""

from __future__ import annotations

import csv
import io
import math
import re
from typing import Any

from batchline.errors import InvalidArgument
from batchline.executor.inputs import Input, RowFormat

_INFINITY = ("inf", "infinity", "+inf")
_DURATION = re.compile(r"(?P<number>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)(?P<unit>[smh]?)")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
VIDEO_COLUMNS = "GCS_FILE_PATH,TIME_SEGMENT_START,TIME_SEGMENT_END"


def seconds(text: str, name: str, units: bool = False) -> float:
    """A time offset in seconds (>= 0, `inf` allowed); with `units`, as a duration with an s, m or h suffix.
    ValueError says what is wrong and what to write."""
    value = text.strip()
    if value.lower() in _INFINITY:
        return math.inf
    match = _DURATION.fullmatch(value)
    if match is None or (match["unit"] and not units):
        example = '"2.5s", "1.5m" or "inf"' if units else "2.5 or inf"
        raise ValueError(f"{name} {text!r} is not a time in seconds >= 0; write e.g. {example}")
    return float(match["number"]) * _UNITS[match["unit"]]


def segment(start: float, end: float) -> dict[str, float]:
    """The args of a video input; ValueError if the segment is empty."""
    if math.isinf(start):
        raise ValueError("TIME_SEGMENT_START cannot be inf")
    if end <= start:
        raise ValueError(f"TIME_SEGMENT_END ({end:g}) must be after TIME_SEGMENT_START ({start:g})")
    return {"start": start, "end": end}


def _video_row(fields: list[str]) -> Input:
    if len(fields) != 3:
        raise ValueError(f"has {len(fields)} columns; expected three: {VIDEO_COLUMNS}")
    path, start, end = (field.strip() for field in fields)
    args = segment(seconds(start, "TIME_SEGMENT_START"), seconds(end, "TIME_SEGMENT_END"))
    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow([path, start, end])  # the ID: the line as written
    return Input(line.getvalue(), uri=path, args=args)


VIDEO_SEGMENTS = RowFormat(VIDEO_COLUMNS, _video_row)


def instance_segment(fields: dict[str, Any]) -> dict[str, float]:
    """A Vertex video instance's segment: timeSegmentStart (default 0) and timeSegmentEnd (default inf)."""
    try:
        start = _duration(fields.get("timeSegmentStart", "0s"), "timeSegmentStart")
        end = _duration(fields.get("timeSegmentEnd", "inf"), "timeSegmentEnd")
        return segment(start, end)
    except ValueError as exc:
        message = str(exc).replace("TIME_SEGMENT_START", "timeSegmentStart")
        raise InvalidArgument(message.replace("TIME_SEGMENT_END", "timeSegmentEnd")) from None


def _duration(value: Any, name: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{name} {value!r} is not a time in seconds >= 0")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f'{name} must be a duration string such as "2.5s" or "inf", got {value!r}')
    return seconds(value, name, units=True)
