"""The AutoML v1 batch output layout: <stem>_N.jsonl and errors_N.jsonl lines, staged and published by
`StagedShardWriter`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from batchline.domain.annotations import Annotation, Box
from batchline.storage import Storage
from batchline.writers.staged import StagedShardWriter, output_dir_name

__all__ = ["AutomlEncoder", "AutomlWriter", "annotation_line", "box_vertices", "output_dir_name"]


def annotation_line(annotation: Annotation) -> dict[str, Any]:
    if annotation.box is None:
        payload = {"classification": {"score": annotation.score}}
    else:
        vertices = box_vertices(annotation.box)
        payload = {
            "image_object_detection": {"bounding_box": {"normalized_vertices": vertices}, "score": annotation.score}
        }
    # The documented lines list their keys alphabetically.
    return dict(sorted({"annotation_spec_id": annotation.label, "display_name": annotation.label, **payload}.items()))


def box_vertices(box: Box) -> list[dict[str, float]]:
    """Top-left and bottom-right, as AutoML writes a bounding box."""
    x_min, y_min, x_max, y_max = box
    return [{"x": x_min, "y": y_min}, {"x": x_max, "y": y_max}]


class AutomlEncoder:
    """The lines of an AutoML job: an input's id is the URI its CSV row lists."""

    def result_line(self, item_id: str, annotations: Sequence[Annotation]) -> str:
        return json.dumps({"ID": item_id, "annotations": [annotation_line(a) for a in annotations]})

    def error_line(self, item_id: str, status: dict[str, Any]) -> str:
        return json.dumps({"ID": item_id, "error": {"code": status["code"], "message": status["message"]}})

    def failure_message(self, item_id: str, status: dict[str, Any]) -> str:
        return f"{item_id}: {status['message']}"


class AutomlWriter(StagedShardWriter):
    """<stem>_1.jsonl ... and errors_1.jsonl ..., numbered from 1 without padding."""

    def __init__(self, storage: Storage, output_dir: str, stem: str):
        super().__init__(storage, output_dir, stem)
