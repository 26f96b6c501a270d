"""AutoML Vision image classification: one label per class, scored."""

from __future__ import annotations

from typing import Any

import numpy as np

from batchline.domain.annotations import Annotation
from batchline.errors import Internal
from batchline.problems.base import parse_unit_interval
from batchline.problems.images import Geometry, ImageProblem


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


_ACTIVATIONS = {"softmax": _softmax, "sigmoid": _sigmoid, "none": lambda x: x}


class ImageClassification(ImageProblem):
    name = "image_classification"
    output_stem = "image_classification"
    model_metadata_key = "imageClassificationModelMetadata"
    params_defaults = {"score_threshold": "0.5"}

    def parse_param(self, key: str, value: str) -> Any:
        return parse_unit_interval(key, value)

    def postprocess(
        self, outputs: dict[str, np.ndarray], facts: list[Geometry], params: dict[str, Any]
    ) -> list[list[Annotation]]:
        name = self.manifest.output.scores or next(iter(outputs))
        raw = outputs[name].reshape(len(outputs[name]), -1).astype(np.float64)
        labels = self.manifest.labels
        if raw.shape[1] != len(labels):
            raise Internal(
                f"model output {name!r} has {raw.shape[1]} scores, but model.yaml lists {len(labels)} labels"
            )
        scores = _ACTIVATIONS[self.manifest.output.activation](raw)
        return [self._annotations(row, labels, params["score_threshold"]) for row in scores]

    @staticmethod
    def _annotations(scores: np.ndarray, labels: list[str], threshold: float) -> list[Annotation]:
        """Labels scoring >= threshold, highest first (filtered in numpy: models may have thousands of labels)."""
        kept = np.flatnonzero(scores >= threshold)
        kept = kept[np.argsort(-scores[kept], kind="stable")]
        return [Annotation(labels[i], float(scores[i])) for i in kept]
