"""The AutoML v1 surface: what batchPredict and predict ask of each problem, in one catalog row per problem (data,
not branches), and how predictions are written: snake_case in batch files, camelCase in online replies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import singledispatch
from typing import Any

from batchline.domain.predictions import Box, Classification, Detections, Prediction, VideoLabels, VideoTracks
from batchline.errors import InvalidArgument
from batchline.executor.inputs import PATHS, RowFormat
from batchline.executor.segments import VIDEO_SEGMENTS
from batchline.problems import params as wire
from batchline.problems.base import Params, Problem
from batchline.storage import Storage
from batchline.writers.automl import AutomlWriter
from batchline.writers.indexed import IndexedJsonWriter
from batchline.writers.staged import ShardWriter


@dataclass(frozen=True)
class AutomlSpec:
    results_stem: str  # batch result files are <stem>_N.jsonl (video: the index <stem>.csv)
    metadata_key: str  # the Model resource's *ModelMetadata field
    params: Mapping[str, str]  # `params` key -> the problem's Params field
    rows: RowFormat = PATHS  # how a row of the input CSV names an input
    result_metadata: tuple[str, ...] = ()  # params echoed, as strings, in BatchPredictResult / PredictResponse metadata
    json_stem: str | None = None  # video: one JSON per input line, <json_stem>_N.json, beside the index

    def writer(self, storage: Storage, output_dir: str) -> ShardWriter:
        if self.json_stem is None:
            return AutomlWriter(storage, output_dir, AutomlEncoder(), self.results_stem)
        return IndexedJsonWriter(storage, output_dir, VideoEncoder(), f"{self.results_stem}.csv", self.json_stem)


_FRAME_RATE = {"frame_rate": "frame_rate"}  # batchline's own: frames sampled per second, the manifest's by default


CATALOG: dict[str, AutomlSpec] = {
    "image_classification": AutomlSpec(
        "image_classification", "imageClassificationModelMetadata", {"score_threshold": "score_threshold"}
    ),
    "image_object_detection": AutomlSpec(
        "image_object_detection",
        "imageObjectDetectionModelMetadata",
        {"score_threshold": "score_threshold", "max_bounding_box_count": "max_bounding_box_count"},
        result_metadata=("max_bounding_box_count",),
    ),
    "video_classification": AutomlSpec(
        "video_classification",
        "videoClassificationModelMetadata",
        {
            "score_threshold": "score_threshold",
            "segment_classification": "segment_classification",
            "shot_classification": "shot_classification",
            "1s_interval_classification": "one_sec_interval_classification",
            **_FRAME_RATE,
        },
        rows=VIDEO_SEGMENTS,
        json_stem="video_classification",
    ),
    "video_object_tracking": AutomlSpec(
        "video_object_tracking",
        "videoObjectTrackingModelMetadata",
        {
            "score_threshold": "score_threshold",
            "max_bounding_box_count": "max_bounding_box_count",
            "min_bounding_box_size": "min_bounding_box_size",
            **_FRAME_RATE,
        },
        rows=VIDEO_SEGMENTS,
        json_stem="video_object_trackinng",  # sic: the documented name (AutoML batch prediction docs)
    ),
}


def spec(problem: Problem) -> AutomlSpec:
    if problem.name not in CATALOG:
        raise InvalidArgument(f"the AutoML API does not serve {problem.name} models")
    return CATALOG[problem.name]


def params(problem: Problem, given: Mapping[str, str]) -> Params:
    """A request's `params` (strings) as the problem's typed params; INVALID_ARGUMENT names the bad key."""
    return wire.build(
        problem.Params, wire.from_strings(problem.Params, given, spec(problem).params, "params"), "params"
    )


def result_metadata(problem: Problem, typed: Params) -> dict[str, str]:
    return {name: str(getattr(typed, name)) for name in spec(problem).result_metadata}


def model_metadata_key(problem_name: str) -> str | None:
    row = CATALOG.get(problem_name)
    return row.metadata_key if row else None


# -- encoding: one function per prediction type, in either casing


@singledispatch
def annotations(prediction: Prediction, camel: bool) -> list[dict[str, Any]]:
    """A prediction as AnnotationPayloads, best first."""
    raise TypeError(f"the AutoML surface cannot write {type(prediction).__name__}")


@annotations.register
def _(prediction: Classification, camel: bool) -> list[dict[str, Any]]:
    return [_payload(label.label, "classification", {"score": label.score}, camel) for label in prediction.labels]


@annotations.register
def _(prediction: Detections, camel: bool) -> list[dict[str, Any]]:
    return [
        _payload(
            found.label,
            "image_object_detection",
            {"bounding_box": {"normalized_vertices": box_vertices(found.box)}, "score": found.score},
            camel,
        )
        for found in prediction.boxes
    ]


@annotations.register
def _(prediction: VideoLabels, camel: bool) -> list[dict[str, Any]]:
    return [
        _payload(
            found.label,
            "video_classification",
            {
                "type": found.kind,
                "classification_annotation": {"score": found.score},
                "time_segment": {"start_time_offset": duration(found.start), "end_time_offset": duration(found.end)},
            },
            camel,
        )
        for found in prediction.labels
    ]


@annotations.register
def _(prediction: VideoTracks, camel: bool) -> list[dict[str, Any]]:
    """One payload per box per frame, in time order."""
    boxes = sorted(
        ((box.time, track.id, track, box) for track in prediction.tracks for box in track.boxes), key=lambda b: b[:2]
    )
    return [
        _payload(
            track.label,
            "video_object_tracking",
            {
                "instance_id": str(track.id),
                "time_offset": duration(time),
                "bounding_box": {"normalized_vertices": box_vertices(box.box)},
                "score": box.score,
            },
            camel,
        )
        for time, _, track, box in boxes
    ]


def duration(seconds: float) -> str:
    """A google.protobuf.Duration as proto3 JSON writes it: "0s", "47s", "35.300s", "0.066666s"."""
    micros = round(seconds * 1_000_000)
    whole, fraction = divmod(micros, 1_000_000)
    if not fraction:
        return f"{whole}s"
    text = f"{fraction:06d}"
    return f"{whole}.{text[:3]}s" if text.endswith("000") else f"{whole}.{text}s"


def _payload(label: str, kind: str, detail: dict[str, Any], camel: bool) -> dict[str, Any]:
    # The documented batch lines list their keys alphabetically; online replies are camelCase.
    payload = {"annotation_spec_id": label, "display_name": label, kind: detail}
    return _camel(payload) if camel else dict(sorted(payload.items()))


def _camel(value: Any) -> Any:
    if isinstance(value, dict):
        return {re.sub(r"_(\w)", lambda m: m.group(1).upper(), k): _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def box_vertices(box: Box) -> list[dict[str, float]]:
    """Top-left and bottom-right, as AutoML writes a bounding box."""
    x_min, y_min, x_max, y_max = box
    return [{"x": x_min, "y": y_min}, {"x": x_max, "y": y_max}]


class AutomlEncoder:
    """The lines of an AutoML job: an input's id is what its CSV row names."""

    def result_line(self, input_id: str, prediction: Prediction) -> str:
        return json.dumps({"ID": input_id, "annotations": annotations(prediction, camel=False)})

    def error_line(self, input_id: str, status: dict[str, Any]) -> str:
        return json.dumps({"ID": input_id, "error": {"code": status["code"], "message": status["message"]}})

    def failure_message(self, input_id: str, status: dict[str, Any]) -> str:
        return f"{input_id}: {status['message']}"


class VideoEncoder(AutomlEncoder):
    """An AutoML video job's per-input JSON file: its AnnotationPayload list, snake_case like the image lines."""

    def result_json(self, prediction: Prediction) -> str:
        return json.dumps(annotations(prediction, camel=False))


def online_payload(prediction: Prediction) -> Sequence[dict[str, Any]]:
    return annotations(prediction, camel=True)
