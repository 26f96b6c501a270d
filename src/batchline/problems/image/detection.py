"""AutoML Vision image object detection: labelled, scored boxes relative to the original image, best first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from batchline.domain.predictions import Detection, Detections
from batchline.models.manifest import Manifest
from batchline.problems.base import Params, Problem, Reducer
from batchline.problems.image.decode import ImagePreprocessor
from batchline.problems.image.detector import Candidates, DetectorPostprocessor


class DetectionParams(Params):
    score_threshold: float = Field(0.5, ge=0, le=1)
    max_bounding_box_count: int = Field(100, ge=1)

    def candidates(self) -> tuple[float, int]:
        """What the postprocessor keeps: the final boxes already."""
        return self.score_threshold, self.max_bounding_box_count


class DetectionsOf(Reducer):
    """An image's candidates, already filtered, as its prediction."""

    def __init__(self, labels: Sequence[str]):
        self.labels = labels

    def reduce(self, facts: Any, items: Sequence[Candidates], params: DetectionParams) -> Detections:
        (found,) = items
        rows = zip(found.classes.tolist(), found.scores.tolist(), found.boxes.tolist(), strict=True)
        return Detections(tuple(Detection(self.labels[c], score, tuple(box)) for c, score, box in rows))


class ImageObjectDetection(Problem):
    name = "image_object_detection"
    Params = DetectionParams

    def __init__(self, manifest: Manifest):
        super().__init__(manifest)
        self.preprocessor = ImagePreprocessor(manifest)
        self.postprocessor = DetectorPostprocessor(manifest)
        self.reducer = DetectionsOf(manifest.labels)
