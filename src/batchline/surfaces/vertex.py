"""The Vertex AI surface: what a batchPredictionJob asks of each problem, in one catalog row per problem (data,
not branches): its modelParameters (the problem's ...PredictionParams schema, with Vertex's own defaults), what its
instances hold, and how its predictions are written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import singledispatch
from typing import Any

from batchline.domain.predictions import Classification, Detections, Prediction, VideoLabels, VideoTracks
from batchline.errors import InvalidArgument
from batchline.executor.vertex_inputs import IMAGE, VIDEO, Media
from batchline.problems import params as wire
from batchline.problems.base import Params, Problem
from batchline.surfaces.automl import duration

_FAILURE_ID_CHARS = 200  # of an instance quoted in partialFailures: inline images would make it megabytes


@dataclass(frozen=True)
class VertexSpec:
    params: Mapping[str, str]  # modelParameters key -> the problem's Params field
    defaults: Mapping[str, Any] = field(default_factory=dict)  # Params values where Vertex's defaults differ
    media: Media = IMAGE


# Image classification and object detection both take confidenceThreshold (0..1, default 0.0) and maxPredictions
# (default 10): a classifier's labels, a detector's boxes per instance.
CATALOG: dict[str, VertexSpec] = {
    "image_classification": VertexSpec(
        {"confidenceThreshold": "score_threshold", "maxPredictions": "max_predictions"},
        {"score_threshold": 0.0, "max_predictions": 10},
    ),
    "image_object_detection": VertexSpec(
        {"confidenceThreshold": "score_threshold", "maxPredictions": "max_bounding_box_count"},
        {"score_threshold": 0.0, "max_bounding_box_count": 10},
    ),
    # Video: maxPredictions counts per kind of stretch (classification) or per frame (tracking). frameRate is
    # batchline's own: frames sampled per second, the manifest's by default.
    "video_classification": VertexSpec(
        {
            "confidenceThreshold": "score_threshold",
            "maxPredictions": "max_predictions",
            "segmentClassification": "segment_classification",
            "shotClassification": "shot_classification",
            "oneSecIntervalClassification": "one_sec_interval_classification",
            "frameRate": "frame_rate",
        },
        {"score_threshold": 0.0, "max_predictions": 10000},
        VIDEO,
    ),
    "video_object_tracking": VertexSpec(
        {
            "confidenceThreshold": "score_threshold",
            "maxPredictions": "max_bounding_box_count",
            "minBoundingBoxSize": "min_bounding_box_size",
            "frameRate": "frame_rate",
        },
        {"score_threshold": 0.0, "max_bounding_box_count": 50},
        VIDEO,
    ),
}


def spec(problem: Problem) -> VertexSpec:
    if problem.name not in CATALOG:
        raise InvalidArgument(f"Vertex AI batch prediction does not serve {problem.name} models")
    return CATALOG[problem.name]


def params(problem: Problem, model_parameters: Any) -> Params:
    """A job's modelParameters as the problem's typed params; INVALID_ARGUMENT says which field is wrong."""
    row = spec(problem)
    given = {} if model_parameters is None else model_parameters
    if not isinstance(given, dict):
        example = ", ".join(f'"{key}": ...' for key in row.params)
        raise InvalidArgument(f"modelParameters must be an object, e.g. {{{example}}}, got {model_parameters!r}")
    given = {_known(key, row.params): value for key, value in given.items()}
    values = wire.from_json(problem.Params, given, row.params, "modelParameters")
    return wire.build(problem.Params, {**row.defaults, **values}, "modelParameters")


def _known(key: str, known: Mapping[str, str]) -> str:
    """A key as the catalog names it: confidence_threshold is confidenceThreshold, as some clients write it."""
    head, *rest = key.split("_")
    camel = head + "".join(part.title() for part in rest)
    return camel if key not in known and camel in known else key


# -- encoding: one function per prediction type


@singledispatch
def prediction_of(prediction: Prediction) -> Any:
    """A prediction as Vertex AI writes it in predictions_*.jsonl."""
    raise TypeError(f"the Vertex AI surface cannot write {type(prediction).__name__}")


@prediction_of.register
def _(prediction: Classification) -> dict[str, Any]:
    # Ids are the labels: batchline's annotation spec ids, as its AutoML surface writes them too.
    labels = [label.label for label in prediction.labels]
    return {"ids": labels, "displayNames": labels, "confidences": [label.score for label in prediction.labels]}


@prediction_of.register
def _(prediction: Detections) -> dict[str, Any]:
    labels = [found.label for found in prediction.boxes]
    return {
        "ids": labels,
        "displayNames": labels,
        "confidences": [found.score for found in prediction.boxes],
        "bboxes": [[x_min, x_max, y_min, y_max] for x_min, y_min, x_max, y_max in (f.box for f in prediction.boxes)],
    }


_VIDEO_KINDS = {"segment": "segment-classification", "shot": "shot-classification",
                "1s_interval": "one-sec-interval-classification"}  # fmt: skip


@prediction_of.register
def _(prediction: VideoLabels) -> list[dict[str, Any]]:
    """Confidence first within each kind of stretch; a second's label has its start as its end, as Vertex writes it."""
    found = sorted(prediction.labels, key=lambda s: (list(_VIDEO_KINDS).index(s.kind), -s.score, s.start))
    return [
        {
            "id": s.label,
            "displayName": s.label,
            "type": _VIDEO_KINDS[s.kind],
            "timeSegmentStart": duration(s.start),
            "timeSegmentEnd": duration(s.start if s.kind == "1s_interval" else s.end),
            "confidence": s.score,
        }
        for s in found
    ]


@prediction_of.register
def _(prediction: VideoTracks) -> list[dict[str, Any]]:
    """One entry per track with its frames, as seed 004 shows it."""
    return [
        {
            "id": track.label,
            "displayName": track.label,
            "timeSegmentStart": duration(track.start),
            "timeSegmentEnd": duration(track.end),
            "confidence": track.score,
            "frames": [
                {"timeOffset": duration(b.time), "xMin": b.box[0], "xMax": b.box[2], "yMin": b.box[1], "yMax": b.box[3]}
                for b in track.boxes
            ],
        }
        for track in prediction.tracks
    ]


class VertexEncoder:
    """The output lines of a job. An input's id is the JSON text of its line's head, `{"instance": ...}` or
    `{"key": ...}` (executor/vertex_inputs.py)."""

    def result_line(self, input_id: str, prediction: Prediction) -> str:
        return json.dumps({**json.loads(input_id), "prediction": prediction_of(prediction)})

    def error_line(self, input_id: str, status: dict[str, Any]) -> str:
        return json.dumps({**json.loads(input_id), "error": {"code": status["code"], "message": status["message"]}})

    def failure_message(self, input_id: str, status: dict[str, Any]) -> str:
        """A partialFailures message: which instance (cut short) and what went wrong."""
        head = input_id if len(input_id) <= _FAILURE_ID_CHARS else input_id[:_FAILURE_ID_CHARS] + "...}"
        return f"{head}: {status['message']}"
