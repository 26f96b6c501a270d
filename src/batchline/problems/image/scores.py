"""A classifier's output: one score per label, activated, per item."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from batchline.errors import Internal
from batchline.problems.base import Params, Postprocessor


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


_ACTIVATIONS = {"softmax": _softmax, "sigmoid": _sigmoid, "none": lambda x: x}


class ScoresPostprocessor(Postprocessor):
    """output.format scores -> each item's scores, one per label (float64), unfiltered."""

    def decode(self, outputs: dict[str, np.ndarray], facts: Sequence[Any], params: Params) -> list[np.ndarray]:
        name = self.manifest.output.scores or next(iter(outputs))
        raw = outputs[name].reshape(len(outputs[name]), -1).astype(np.float64)
        labels = self.manifest.labels
        if raw.shape[1] != len(labels):
            raise Internal(
                f"model output {name!r} has {raw.shape[1]} scores, but model.yaml lists {len(labels)} labels"
            )
        return list(_ACTIVATIONS[self.manifest.output.activation](raw))


def top_labels(scores: np.ndarray, threshold: float, limit: int | None) -> np.ndarray:
    """Indices of the labels scoring >= threshold, best first, at most `limit` (filtered in numpy: models may have
    thousands of labels)."""
    kept = np.flatnonzero(scores >= threshold)
    if limit is not None and kept.size > limit:
        kept = kept[np.argpartition(-scores[kept], limit - 1)[:limit]]
    return kept[np.argsort(-scores[kept], kind="stable")]
