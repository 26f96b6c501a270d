"""The shipped example detector, run as a user would run it: a real batch job over freshly generated scenes."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import shapes  # scripts/shapes.py, on sys.path through tests/conftest.py
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.examples.shipped import batch_predict, bucket

N_SCENES = 200


def test_shipped_detector_is_registered_and_reaches_map50_of_0_8(tmp_path: Path) -> None:
    # A seed neither the training nor the training script's evaluation uses: these scenes are new to the model.
    scenes = shapes.write_scenes(bucket(tmp_path) / "fresh", N_SCENES, seed=20261125)
    truth = {f"gs://b/fresh/{path.name}": (Image.open(path).size, objects) for path, objects in scenes}
    # A low threshold, so that the precision-recall curve is complete.
    lines = batch_predict(tmp_path, "shapes-detector", list(truth), {"score_threshold": "0.05"})
    map50 = coco_map50(truth, lines)
    assert map50 >= 0.8, f"mAP@0.5 {map50:.3f} on fresh scenes"


def coco_map50(truth: dict[str, tuple[tuple[int, int], list]], lines: list[dict]) -> float:
    """pycocotools mAP@0.5 of the result lines against the generated boxes, in pixels of each scene."""
    ids = {uri: i for i, uri in enumerate(truth, start=1)}
    images, annotations, detections = [], [], []
    for uri, ((width, height), objects) in truth.items():
        images.append({"id": ids[uri], "width": width, "height": height})
        for label, (x0, y0, x1, y1) in objects:
            annotations.append(_coco_box(ids[uri], label, x0, y0, x1, y1, id=len(annotations) + 1, iscrowd=0))
    for line in lines:
        width, height = truth[line["ID"]][0]
        for a in line["annotations"]:
            detection = a["image_object_detection"]
            top_left, bottom_right = detection["bounding_box"]["normalized_vertices"]
            x0, y0 = top_left.get("x", 0.0) * width, top_left.get("y", 0.0) * height  # JSON may omit zeros
            x1, y1 = bottom_right.get("x", 0.0) * width, bottom_right.get("y", 0.0) * height
            detections.append(_coco_box(ids[line["ID"]], a["display_name"], x0, y0, x1, y1, score=detection["score"]))
    categories = [{"id": i + 1, "name": label} for i, label in enumerate(shapes.LABELS)]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco = COCO()
        coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[1])  # AP at IoU 0.5, all areas, 100 detections


def _coco_box(image_id: int, label: str, x0: float, y0: float, x1: float, y1: float, **extra) -> dict:
    w, h = x1 - x0, y1 - y0
    category = shapes.LABELS.index(label) + 1
    return {"image_id": image_id, "category_id": category, "bbox": [x0, y0, w, h], "area": w * h, **extra}
