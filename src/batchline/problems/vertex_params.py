"""Vertex AI `modelParameters` (the scenario's ...PredictionParams schema) -> the scenario's own params.

Image classification and image object detection both take `confidenceThreshold` (0..1, default 0.0) and
`maxPredictions` (a whole number >= 1, default 10), as Vertex AI documents them. The threshold is the scenario's
`score_threshold`; a detector's `maxPredictions` is its `max_bounding_box_count`, and for both scenarios the
output keeps at most that many predictions per instance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from batchline.errors import InvalidArgument

DEFAULT_CONFIDENCE_THRESHOLD = 0.0
DEFAULT_MAX_PREDICTIONS = 10
SCENARIOS = ("image_classification", "image_object_detection")
_NAMES = {"confidenceThreshold": "confidenceThreshold", "confidence_threshold": "confidenceThreshold",
          "maxPredictions": "maxPredictions", "max_predictions": "maxPredictions"}  # fmt: skip


@dataclass(frozen=True)
class VertexParams:
    params: dict[str, str]  # the scenario's params, as its Problem.parse_params takes them
    max_predictions: int  # predictions per instance in the output, best first


def vertex_params(problem_name: str, model_parameters: Any) -> VertexParams:
    """Check a job's modelParameters and map them; InvalidArgument says which field is wrong and what it takes."""
    if problem_name not in SCENARIOS:
        raise InvalidArgument(f"Vertex AI batch prediction does not serve {problem_name} models")
    given = {} if model_parameters is None else model_parameters
    if not isinstance(given, dict):
        raise InvalidArgument(
            'modelParameters must be an object, e.g. {"confidenceThreshold": 0.5, "maxPredictions": 10}, '
            f"got {model_parameters!r}"
        )
    unknown = sorted(set(given) - set(_NAMES))
    if unknown:
        raise InvalidArgument(
            f"unknown modelParameters {unknown} for {problem_name}; allowed: confidenceThreshold, maxPredictions"
        )
    values = {_NAMES[key]: value for key, value in given.items()}
    threshold = _threshold(values.get("confidenceThreshold", DEFAULT_CONFIDENCE_THRESHOLD))
    limit = _max_predictions(values.get("maxPredictions", DEFAULT_MAX_PREDICTIONS))
    params = {"score_threshold": repr(threshold)}
    if problem_name == "image_object_detection":
        params["max_bounding_box_count"] = str(limit)
    return VertexParams(params, limit)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _threshold(value: Any) -> float:
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise InvalidArgument(
            f"modelParameters.confidenceThreshold must be a number between 0 and 1 (not a string), got {value!r}"
        )
    return float(value)


def _max_predictions(value: Any) -> int:
    # google.protobuf.Value holds numbers as doubles: 10.0 is 10.
    if not _is_number(value) or not math.isfinite(value) or value != int(value) or value < 1:
        raise InvalidArgument(
            f"modelParameters.maxPredictions must be a whole number >= 1 (not a string), got {value!r}"
        )
    return int(value)
