"""What a scenario says about one input, before any surface encodes it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Annotation:
    label: str
    score: float


def sort_and_filter(annotations: list[Annotation], score_threshold: float) -> list[Annotation]:
    """Keep annotations with score >= threshold, highest score first."""
    kept = [a for a in annotations if a.score >= score_threshold]
    return sorted(kept, key=lambda a: a.score, reverse=True)
