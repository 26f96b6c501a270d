"""What a scenario says about one input, before any surface encodes it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Annotation:
    label: str
    score: float
