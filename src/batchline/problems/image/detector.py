"""Detector output conventions -> candidate boxes per item, relative to the original picture.

Exports disagree on how detections leave the graph. model.yaml's `output.format` names the convention:
  boxes  post-NMS tensors (torchvision, TensorFlow): boxes / scores / classes [/ count], with or without a batch
         axis, xyxy or yxyx, pixels or normalized
  yolo   a raw YOLO head, [batch, 4 + classes, anchors] of cx, cy, w, h and class scores; NMS happens here
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from batchline.errors import Internal
from batchline.models.manifest import BoxesOutput, Manifest, YoloOutput
from batchline.problems.base import Params, Postprocessor
from batchline.problems.image.decode import Geometry

_MAX_NMS_CANDIDATES = 30_000  # bounds NMS work on a degenerate head that scores everything high


_DIGITS = 6  # of a normalized coordinate: finer than a pixel of any image that fits the 30 MB cap


@dataclass
class Candidates:
    """One item's boxes: xyxy [k, 4] (in model input pixels, or relative to the original picture once mapped
    back), scores [k], class indices into labels [k]."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


class DetectorPostprocessor(Postprocessor):
    """output.format boxes or yolo -> each item's boxes scoring at least the params' candidate threshold, relative to
    the original picture and clamped to it, best first; boxes left with no area are dropped. `params.candidates()`
    says how low to go and how many to keep: an image wants its final boxes, a tracker the low-score ones too."""

    def decode(self, outputs: dict[str, np.ndarray], facts: Sequence[Geometry], params: Params) -> list[Candidates]:
        threshold, limit = params.candidates()
        found = read_candidates(self.manifest, outputs, list(facts), threshold, limit)
        return [_to_original(c, geometry, threshold, limit) for c, geometry in zip(found, facts, strict=True)]


def _to_original(found: Candidates, geometry: Geometry, threshold: float, limit: int) -> Candidates:
    boxes = _mapped_back(found.boxes, geometry)
    kept = np.flatnonzero((found.scores >= threshold) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
    kept = kept[np.argsort(-found.scores[kept], kind="stable")][:limit]
    return Candidates(boxes[kept].round(_DIGITS), found.scores[kept], found.classes[kept])


def _mapped_back(boxes: np.ndarray, geometry: Geometry) -> np.ndarray:
    """xyxy in model input pixels -> xyxy relative to the original picture, clamped to 0..1."""
    if not len(boxes):
        return boxes.reshape(0, 4)
    scale = np.array([geometry.scale_x, geometry.scale_y] * 2)
    pad = np.array([geometry.pad_x, geometry.pad_y] * 2)
    size = np.array([geometry.width, geometry.height] * 2)
    return ((boxes - pad) / scale / size).clip(0.0, 1.0)


def read_candidates(
    manifest: Manifest, outputs: dict[str, np.ndarray], geometries: list[Geometry], threshold: float, limit: int
) -> list[Candidates]:
    """Each image's candidate boxes scoring >= threshold; a raw head is also rid of boxes off the picture and
    NMS-ed down to `limit` here (the caller then clamps, sorts and cuts both conventions alike)."""
    spec = manifest.output
    batch = len(geometries)
    if isinstance(spec, YoloOutput):
        head = _yolo_head(spec, outputs, batch, len(manifest.labels))
        return [_from_yolo(image, spec, threshold, limit, g.window) for image, g in zip(head, geometries, strict=True)]
    if isinstance(spec, BoxesOutput):
        return _from_boxes(spec, outputs, batch, manifest, threshold)
    raise Internal(f"output.format {spec.format!r} is not a detector's")


# -- post-NMS tensors


def _from_boxes(
    spec: BoxesOutput, outputs: dict[str, np.ndarray], batch: int, manifest: Manifest, threshold: float
) -> list[Candidates]:
    boxes, scores, classes = (outputs[name] for name in (spec.boxes, spec.scores, spec.classes))
    if boxes.ndim == 2:  # [detections, 4]: an export without a batch axis (torchvision's) takes one image a time
        if batch != 1:
            raise Internal(
                f"model output {spec.boxes!r} has shape {boxes.shape}, no batch axis for a batch of {batch}; "
                "set batch_size: 1 in model.yaml for a model that takes one image at a time"
            )
        boxes, scores, classes = boxes[None], scores.reshape(1, -1), classes.reshape(1, -1)
    if boxes.ndim != 3 or boxes.shape[0] != batch or boxes.shape[-1] != 4:
        raise Internal(f"model output {spec.boxes!r} has shape {boxes.shape}; expected [{batch}, detections, 4]")
    counts = outputs[spec.count].reshape(batch).astype(int) if spec.count else [boxes.shape[1]] * batch
    height, width = manifest.input.size
    size = np.array([width, height, width, height], dtype=np.float64)
    found = []
    for i in range(batch):
        image_scores = scores.reshape(batch, -1)[i, : counts[i]].astype(np.float64)
        kept = np.flatnonzero(image_scores >= threshold)  # padding rows (score 0, class 0) are no detections
        rows = boxes[i, kept].astype(np.float64)
        if spec.box_order == "yxyx":
            rows = rows[:, [1, 0, 3, 2]]
        if spec.box_units == "normalized":
            rows = rows * size
        labels = classes.reshape(batch, -1)[i, kept].astype(np.int64) - spec.class_offset
        _check_classes(labels, len(manifest.labels), spec.classes)
        found.append(Candidates(rows, image_scores[kept], labels))
    return found


def _check_classes(labels: np.ndarray, count: int, name: str) -> None:
    bad = labels[(labels < 0) | (labels >= count)]
    if bad.size:
        raise Internal(
            f"model output {name!r} gives class index {int(bad[0])}, outside the {count} labels of model.yaml; "
            "check labels and output.class_offset"
        )


# -- raw YOLO head


def _yolo_head(spec: YoloOutput, outputs: dict[str, np.ndarray], batch: int, classes: int) -> np.ndarray:
    """[batch, 4 + classes, anchors]; the transposed [batch, anchors, 4 + classes] of some exports is accepted."""
    name = spec.predictions or next(iter(outputs))
    head = outputs[name]
    if head.ndim == 3 and head.shape[0] == batch:
        if head.shape[1] == 4 + classes:
            return head
        if head.shape[2] == 4 + classes:
            return head.transpose(0, 2, 1)
    raise Internal(
        f"model output {name!r} has shape {head.shape}; a YOLO head for {classes} labels is "
        f"[{batch}, {4 + classes}, anchors]"
    )


def _from_yolo(
    head: np.ndarray, spec: YoloOutput, threshold: float, limit: int, window: tuple[int, int, int, int]
) -> Candidates:
    scores_by_class = head[4:]
    # Each anchor proposes its best class. The max runs along contiguous rows (an argmax over the class axis of
    # every anchor costs 5x more), and the sigmoid, being monotonic, only needs the best score of each anchor.
    scores = scores_by_class.max(axis=0)
    if spec.activation == "sigmoid":
        scores = 1.0 / (1.0 + np.exp(-scores))
    kept = np.flatnonzero(scores >= threshold)
    if kept.size > _MAX_NMS_CANDIDATES:
        kept = kept[np.argpartition(-scores[kept], _MAX_NMS_CANDIDATES)[:_MAX_NMS_CANDIDATES]]
    classes = scores_by_class[:, kept].argmax(axis=0)
    cx, cy, w, h = head[:4, kept].astype(np.float64)
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    scores = scores[kept].astype(np.float64)
    # A box that does not overlap the picture (e.g. all in the letterbox padding) is no detection: dropped before
    # NMS, so that it neither takes one of the `limit` places nor suppresses a real box.
    left, top, right, bottom = window
    x1, y1, x2, y2 = boxes.T
    on_picture = (np.minimum(x2, right) > np.maximum(x1, left)) & (np.minimum(y2, bottom) > np.maximum(y1, top))
    boxes, scores, classes = boxes[on_picture], scores[on_picture], classes[on_picture]
    chosen = nms(boxes, scores, classes, spec.iou_threshold, limit)
    return Candidates(boxes[chosen], scores[chosen], classes[chosen])


_NMS_MATRIX_MAX = 1024  # candidates for which all pairwise IoUs are computed at once (8 MB a matrix)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float, limit: int) -> np.ndarray:
    """Class-aware greedy non-maximum suppression; indices of the kept boxes, best first, at most `limit`.

    Shifting each class's boxes to their own region makes boxes of different classes never overlap, so one pass
    suppresses within classes only. Up to _NMS_MATRIX_MAX candidates (every real image), the IoUs of all pairs
    come from one vectorised step and the greedy pass only reads them; beyond, each kept box's IoUs are computed
    as it is kept, in memory linear in the candidates.
    """
    if not len(boxes):
        return np.empty(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    shifted = boxes[order] + (classes[order] * (np.abs(boxes).max() * 2 + 1))[:, None]
    if len(order) <= _NMS_MATRIX_MAX:
        matrix = _iou(shifted[:, None], shifted[None, :]) > iou_threshold

        def suppressed(best: int, rest: np.ndarray) -> np.ndarray:
            return matrix[best, rest]
    else:

        def suppressed(best: int, rest: np.ndarray) -> np.ndarray:
            return _iou(shifted[best], shifted[rest]) > iou_threshold

    keep: list[int] = []
    alive = np.arange(len(order))  # positions in score order, neither kept nor suppressed yet
    while alive.size and len(keep) < limit:
        best, rest = int(alive[0]), alive[1:]
        keep.append(best)
        alive = rest[~suppressed(best, rest)]
    return order[keep]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of xyxy boxes, broadcast over the leading axes of `a` and `b`."""
    overlap_w = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(0)
    overlap_h = (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(0)
    overlap = overlap_w * overlap_h
    area_a = (a[..., 2] - a[..., 0]).clip(0) * (a[..., 3] - a[..., 1]).clip(0)
    area_b = (b[..., 2] - b[..., 0]).clip(0) * (b[..., 3] - b[..., 1]).clip(0)
    return overlap / np.maximum(area_a + area_b - overlap, 1e-12)
