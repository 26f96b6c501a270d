"""AutoML Vision image object detection: labelled, scored boxes relative to the original image."""

from __future__ import annotations

from typing import Any

import numpy as np

from batchline.domain.annotations import Annotation
from batchline.problems.base import parse_positive_int, parse_unit_interval
from batchline.problems.detector_outputs import Candidates, read_candidates
from batchline.problems.images import Geometry, ImageProblem

_DIGITS = 6  # of a normalized coordinate: finer than a pixel of any image that fits the 30 MB cap


class ImageObjectDetection(ImageProblem):
    name = "image_object_detection"
    output_stem = "image_object_detection"
    model_metadata_key = "imageObjectDetectionModelMetadata"
    params_defaults = {"score_threshold": "0.5", "max_bounding_box_count": "100"}

    def parse_param(self, key: str, value: str) -> Any:
        if key == "max_bounding_box_count":
            return parse_positive_int(key, value)
        return parse_unit_interval(key, value)

    def postprocess(
        self, outputs: dict[str, np.ndarray], facts: list[Geometry], params: dict[str, Any]
    ) -> list[list[Annotation]]:
        threshold, limit = params["score_threshold"], params["max_bounding_box_count"]
        found = read_candidates(self.manifest, outputs, facts, threshold, limit)
        return [self._annotations(c, geometry, threshold, limit) for c, geometry in zip(found, facts, strict=True)]

    def result_metadata(self, params: dict[str, Any]) -> dict[str, str]:
        return {"max_bounding_box_count": str(params["max_bounding_box_count"])}

    def _annotations(self, found: Candidates, geometry: Geometry, threshold: float, limit: int) -> list[Annotation]:
        """Boxes mapped to the original image and clamped to it; those left with no area are dropped."""
        boxes = _to_original(found.boxes, geometry)
        kept = np.flatnonzero((found.scores >= threshold) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
        kept = kept[np.argsort(-found.scores[kept], kind="stable")][:limit]
        labels = self.manifest.labels
        classes, scores, boxes = found.classes[kept].tolist(), found.scores[kept].tolist(), boxes[kept].round(_DIGITS)
        rows = zip(classes, scores, boxes.tolist(), strict=True)
        return [Annotation(labels[label], score, tuple(box)) for label, score, box in rows]


def _to_original(boxes: np.ndarray, geometry: Geometry) -> np.ndarray:
    """xyxy in model input pixels -> xyxy relative to the original image, clamped to 0..1."""
    if not len(boxes):
        return boxes.reshape(0, 4)
    scale = np.array([geometry.scale_x, geometry.scale_y] * 2)
    pad = np.array([geometry.pad_x, geometry.pad_y] * 2)
    size = np.array([geometry.width, geometry.height] * 2)
    return ((boxes - pad) / scale / size).clip(0.0, 1.0)
