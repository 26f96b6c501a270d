"""Vertex output: modelParameters mapped per problem, line encoding, and the predictions_00001.jsonl layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchline.config import Settings
from batchline.domain.jobs import ShardRecord
from batchline.domain.predictions import Classification, Detection, Detections, Label
from batchline.errors import InvalidArgument
from batchline.models.manifest import Manifest
from batchline.problems import problem_for
from batchline.storage import Storage
from batchline.surfaces import vertex
from batchline.surfaces.vertex import VertexEncoder
from batchline.writers.automl import AutomlWriter
from batchline.writers.vertex import VertexWriter
from tests.support import IdLines

INSTANCE = '{"instance":{"content":"gs://b/a.jpg","mimeType":"image/jpeg"}}'
FOUND = Classification((Label("red", 0.9), Label("green", 0.07)))
BOXES = Detections((Detection("star", 0.97, (0.1, 0.2, 0.5, 0.6)), Detection("circle", 0.6, (0.0, 0.0, 0.3, 0.4))))


AS_ID = IdLines()


def problem(name: str):
    output = {"format": "yolo"} if name == "image_object_detection" else {}
    return problem_for(
        Manifest(id="m", display_name="m", problem=name, labels=["a"], input={"size": [8, 8]}, output=output)
    )


def test_model_parameters_map_to_each_problems_params() -> None:
    classifier, detector = problem("image_classification"), problem("image_object_detection")
    assert vertex.params(classifier, None).model_dump() == {"score_threshold": 0.0, "max_predictions": 10}
    given = {"confidenceThreshold": 0.25, "maxPredictions": 2}
    assert vertex.params(classifier, given).model_dump() == {"score_threshold": 0.25, "max_predictions": 2}
    typed = vertex.params(detector, {"confidence_threshold": 1, "max_predictions": 5.0})
    assert typed.model_dump() == {"score_threshold": 1.0, "max_bounding_box_count": 5}


@pytest.mark.parametrize(
    "given", [{"confidenceThreshold": True}, {"maxPredictions": "3"}, {"maxPredictions": 0}, {"topK": 1}, "0.5"]
)
def test_model_parameters_of_the_wrong_type_are_invalid(given: object) -> None:
    with pytest.raises(InvalidArgument):
        vertex.params(problem("image_classification"), given)


def test_classification_line_keeps_the_instance_and_the_predictions() -> None:
    line = json.loads(VertexEncoder().result_line(INSTANCE, FOUND))

    assert line == {
        "instance": {"content": "gs://b/a.jpg", "mimeType": "image/jpeg"},
        "prediction": {"ids": ["red", "green"], "displayNames": ["red", "green"], "confidences": [0.9, 0.07]},
    }


def test_detection_line_has_bboxes_as_xmin_xmax_ymin_ymax_and_a_key() -> None:
    encoder = VertexEncoder()

    line = json.loads(encoder.result_line('{"key":"k1"}', BOXES))
    empty = json.loads(encoder.result_line('{"key":"k2"}', Detections(())))

    assert line["key"] == "k1" and "instance" not in line
    assert line["prediction"]["bboxes"] == [[0.1, 0.5, 0.2, 0.6], [0.0, 0.3, 0.0, 0.4]]
    assert line["prediction"]["displayNames"] == ["star", "circle"]
    assert empty["prediction"] == {"ids": [], "displayNames": [], "confidences": [], "bboxes": []}


def test_error_line_and_failure_message() -> None:
    status = {"code": 5, "message": "gs://b/a.jpg does not exist"}

    encoder = VertexEncoder()

    line = json.loads(encoder.error_line(INSTANCE, status))

    assert line == {"instance": {"content": "gs://b/a.jpg", "mimeType": "image/jpeg"}, "error": status}
    assert encoder.failure_message(INSTANCE, status) == f"{INSTANCE}: gs://b/a.jpg does not exist"
    long_id = json.dumps({"instance": {"content": "A" * 5000}})
    assert len(encoder.failure_message(long_id, status)) < 300


def test_vertex_files_are_numbered_with_five_digits_without_gaps(settings: Settings, data_dir: Path) -> None:
    storage = Storage(settings)
    writer = VertexWriter(storage, "gs://b/out/prediction-colors-2026-01-01T00:00:00.000Z", AS_ID)
    writer.stage(0, "w", [(0, "r0", FOUND)], [])
    writer.stage(1, "w", [], [(1, "e1", {})])
    writer.stage(2, "w", [(2, "r2", FOUND)], [(3, "e2", {})])

    writer.finalize([ShardRecord(0, 1, 0, "w"), ShardRecord(1, 0, 1, "w"), ShardRecord(2, 1, 1, "w")])

    folder = data_dir / "buckets" / "b" / "out" / "prediction-colors-2026-01-01T00:00:00.000Z"
    files = {p.name: p.read_text() for p in folder.iterdir()}
    assert files == {
        "predictions_00001.jsonl": "r0\n",
        "predictions_00002.jsonl": "r2\n",
        "errors_00001.jsonl": "e1\n",
        "errors_00002.jsonl": "e2\n",
    }


def test_automl_files_keep_their_unpadded_names(settings: Settings, data_dir: Path) -> None:
    writer = AutomlWriter(Storage(settings), "gs://b/out/x", AS_ID, "image_classification")
    writer.stage(0, "w", [(0, "r0", FOUND)], [(1, "e0", {})])
    writer.finalize([ShardRecord(0, 1, 1, "w")])
    assert sorted(p.name for p in (data_dir / "buckets" / "b" / "out" / "x").iterdir()) == [
        "errors_1.jsonl",
        "image_classification_1.jsonl",
    ]
