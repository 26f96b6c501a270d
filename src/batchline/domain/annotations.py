"""What a scenario says about one input, before any surface encodes it."""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[float, float, float, float]  # x_min, y_min, x_max, y_max, relative to the original image (0..1)


@dataclass(frozen=True)
class Annotation:
    label: str
    score: float
    box: Box | None = None  # set by detection scenarios
