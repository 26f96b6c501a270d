"""The Vertex AI batch output layout: OUTPUT_PREFIX/prediction-<model display name>-<timestamp>/ holding
predictions_00001.jsonl ... and errors_00001.jsonl ..., staged and published like AutoML's files.

A Vertex input's id is the JSON text of the head of its output line, `{"instance": <as given>}` or `{"key": <the
keyField's value>}`, so a line is that object with its `prediction` (or `error`) added.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from batchline.domain.annotations import Annotation
from batchline.storage import Storage
from batchline.writers.staged import StagedShardWriter, output_dir_name

__all__ = ["VertexEncoder", "VertexWriter", "output_dir_name"]

RESULTS_STEM = "predictions"
_FAILURE_ID_CHARS = 200  # of an instance quoted in partialFailures: inline images would make it megabytes


class VertexWriter(StagedShardWriter):
    """predictions_00001.jsonl ... and errors_00001.jsonl ..., five digits as Vertex AI names them."""

    def __init__(self, storage: Storage, output_dir: str):
        super().__init__(storage, output_dir, RESULTS_STEM, "{:05d}".format)


@dataclass(frozen=True)
class VertexEncoder:
    """The output lines of one job. A detection scenario writes `bboxes` (empty when nothing was found); at most
    `max_predictions` predictions per instance, best first."""

    with_boxes: bool
    max_predictions: int

    @classmethod
    def for_problem(cls, problem_name: str, max_predictions: int) -> VertexEncoder:
        return cls(problem_name == "image_object_detection", max_predictions)

    def prediction(self, annotations: Sequence[Annotation]) -> dict[str, Any]:
        kept = annotations[: self.max_predictions]
        labels = [a.label for a in kept]
        # Ids are the labels: batchline's annotation spec ids, as its AutoML surface writes them too.
        prediction: dict[str, Any] = {"ids": labels, "displayNames": labels, "confidences": [a.score for a in kept]}
        if self.with_boxes:
            prediction["bboxes"] = [_bbox(a) for a in kept]
        return prediction

    def result_line(self, input_id: str, annotations: Sequence[Annotation]) -> str:
        return json.dumps({**json.loads(input_id), "prediction": self.prediction(annotations)})

    def error_line(self, input_id: str, status: dict[str, Any]) -> str:
        return json.dumps({**json.loads(input_id), "error": {"code": status["code"], "message": status["message"]}})

    def failure_message(self, input_id: str, status: dict[str, Any]) -> str:
        """A partialFailures message: which instance (cut short) and what went wrong."""
        head = input_id if len(input_id) <= _FAILURE_ID_CHARS else input_id[:_FAILURE_ID_CHARS] + "...}"
        return f"{head}: {status['message']}"


def _bbox(annotation: Annotation) -> list[float]:
    """[xMin, xMax, yMin, yMax], relative to the image, as Vertex AI writes a box."""
    assert annotation.box is not None, "a detection scenario's annotations carry boxes"
    x_min, y_min, x_max, y_max = annotation.box
    return [x_min, x_max, y_min, y_max]
