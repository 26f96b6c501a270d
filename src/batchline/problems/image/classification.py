"""AutoML Vision image classification: every label scoring at least the threshold, best first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field

from batchline.domain.predictions import Classification, Label
from batchline.models.manifest import Manifest
from batchline.problems.base import Params, Problem, Reducer
from batchline.problems.image.decode import ImagePreprocessor
from batchline.problems.image.scores import ScoresPostprocessor, top_labels


class ClassificationParams(Params):
    score_threshold: float = Field(0.5, ge=0, le=1)
    max_predictions: int | None = Field(None, ge=1)  # labels per image, best first; None: every one that passes


class TopLabels(Reducer):
    def __init__(self, labels: Sequence[str]):
        self.labels = labels

    def reduce(self, facts: Any, items: Sequence[np.ndarray], params: ClassificationParams) -> Classification:
        (scores,) = items
        kept = top_labels(scores, params.score_threshold, params.max_predictions)
        return Classification(tuple(Label(self.labels[i], float(scores[i])) for i in kept))


class ImageClassification(Problem):
    name = "image_classification"
    Params = ClassificationParams

    def __init__(self, manifest: Manifest):
        super().__init__(manifest)
        self.preprocessor = ImagePreprocessor(manifest)
        self.postprocessor = ScoresPostprocessor(manifest)
        self.reducer = TopLabels(manifest.labels)
