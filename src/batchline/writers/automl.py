"""The AutoML v1 batch output layout.

Shards are staged under OUTPUT_DIR/.staging/ as they commit, named by shard index and by the worker that wrote
them, so a worker that lost its lease cannot overwrite a shard its successor committed; `finalize` renames the
committed ones to <stem>_1.jsonl ... and errors_1.jsonl ... numbered
without gaps, and removes the staging folder. Each rename publishes a whole file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from batchline.domain.annotations import Annotation, Box
from batchline.domain.jobs import ShardRecord
from batchline.storage import Storage, join

STAGING = ".staging"


def output_dir_name(display_name: str, when: float) -> str:
    stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return f"prediction-{display_name}-{stamp}"


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


def result_line(item_id: str, annotations: Sequence[Annotation]) -> str:
    return json.dumps({"ID": item_id, "annotations": [annotation_line(a) for a in annotations]})


def error_line(item_id: str, status: dict[str, Any]) -> str:
    return json.dumps({"ID": item_id, "error": {"code": status["code"], "message": status["message"]}})


class AutomlWriter:
    def __init__(self, storage: Storage, output_dir: str, stem: str):
        self.storage = storage
        self.output_dir = output_dir
        self.stem = stem

    def _staged(self, index: int, writer: str, kind: str) -> str:
        return join(self.output_dir, f"{STAGING}/shard-{index:06d}.{writer}.{kind}.jsonl")

    def write_shard(self, index: int, writer: str, results: list[str], errors: list[str]) -> None:
        """Publish one shard's lines (already encoded, in input order)."""
        for kind, lines in (("results", results), ("errors", errors)):
            if lines:
                self.storage.publish(self._staged(index, writer, kind), ("\n".join(lines) + "\n").encode())

    def finalize(self, committed: list[ShardRecord]) -> None:
        """Rename staged shards to their final, gap-free names; safe to run again after a crash."""
        numbered = {"results": 0, "errors": 0}
        for shard in sorted(committed, key=lambda s: s.index):
            for kind, count in (("results", shard.succeeded), ("errors", shard.failed)):
                if not count:
                    continue
                numbered[kind] += 1
                stem = self.stem if kind == "results" else "errors"
                final = join(self.output_dir, f"{stem}_{numbered[kind]}.jsonl")
                staged = self._staged(shard.index, shard.writer, kind)
                if self.storage.exists(staged):
                    self.storage.move(staged, final)
        self.storage.delete_tree(join(self.output_dir, STAGING))
