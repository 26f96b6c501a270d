"""AutoML Video Intelligence object tracking: an image detector run on frames sampled from a video segment, its
boxes followed across frames (problems/video/tracker.py) so that each object keeps one instance id. The params
filter after tracking has seen every box: a low-score box still carries its track through a hard frame."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from operator import attrgetter

import numpy as np
from pydantic import Field

from batchline.domain.predictions import Track, TrackedBox, VideoTracks
from batchline.models.manifest import Manifest
from batchline.problems.base import Params, Problem, Reducer, WithFacts
from batchline.problems.image.detector import Candidates, DetectorPostprocessor
from batchline.problems.video.frames import FrameFacts, VideoFacts, VideoPreprocessor
from batchline.problems.video.labels import shot_starts
from batchline.problems.video.tracker import TrackedObject, TrackerSettings, track

_TRACKER = TrackerSettings()
_CANDIDATES_PER_FRAME = 300  # boxes a frame hands the tracker, at most, best first


class ObjectTrackingParams(Params):
    score_threshold: float = Field(0.5, ge=0, le=1)  # of a track: the mean score of its boxes
    max_bounding_box_count: int = Field(100, ge=1)  # boxes per frame, best first
    min_bounding_box_size: float = Field(0.0, ge=0, le=1)  # a box's shortest edge, relative to the frame's
    frame_rate: float | None = Field(None, gt=0, le=120)  # frames sampled per second; None: the manifest's

    def candidates(self) -> tuple[float, int]:
        """What the postprocessor keeps: the low-score boxes too, which the tracker's second stage matches."""
        return min(self.score_threshold, _TRACKER.low), _CANDIDATES_PER_FRAME


class TrackedObjects(Reducer):
    def __init__(self, labels: Sequence[str]):
        self.labels = labels

    def reduce(
        self, facts: VideoFacts, items: Sequence[tuple[FrameFacts, Candidates]], params: ObjectTrackingParams
    ) -> VideoTracks:
        kept = _filtered(_tracked_by_shot(items), params)
        return VideoTracks(tuple(self._track(tracked, boxes) for tracked, boxes in kept if boxes))

    def _track(self, tracked: TrackedObject, boxes: list[TrackedBox]) -> Track:
        return Track(tracked.id, self.labels[tracked.class_index], _mean_score(boxes), tuple(boxes))


def _tracked_by_shot(items: Sequence[tuple[FrameFacts, Candidates]]) -> list[TrackedObject]:
    """Tracks within each shot: no object goes on across a hard cut (the boxes after it are other objects, even
    where they overlap). Ids run on from one shot to the next."""
    if not items:
        return []
    starts = shot_starts(
        np.array([frame.time for frame, _ in items]), np.stack([frame.histogram for frame, _ in items])
    )
    found: list[TrackedObject] = []
    for begin, end in zip(starts, [*starts[1:], len(items)], strict=True):
        frames = ((frame.time, c.boxes, c.scores, c.classes) for frame, c in items[begin:end])
        found += [replace(t, id=t.id + len(found)) for t in track(frames, _TRACKER)]
    return found


def _mean_score(boxes: Sequence[TrackedBox]) -> float:
    return sum(b.score for b in boxes) / len(boxes)


def _filtered(found: list[TrackedObject], params: ObjectTrackingParams) -> list[tuple[TrackedObject, list[TrackedBox]]]:
    """Boxes under min_bounding_box_size go, then tracks scoring under score_threshold, then each frame's boxes past
    max_bounding_box_count (the best tracks' boxes stay)."""
    sized = []
    for tracked in found:
        boxes = [TrackedBox(t, box, score) for t, box, score in tracked.frames if _big_enough(box, params)]
        if boxes and _mean_score(boxes) >= params.score_threshold:
            sized.append((tracked, boxes))
    per_frame: dict[float, list[tuple[float, int]]] = {}
    for position, (_, boxes) in enumerate(sized):
        for box in boxes:
            per_frame.setdefault(box.time, []).append((box.score, position))
    dropped = set()
    for time, entries in per_frame.items():
        for _, position in sorted(entries, reverse=True)[params.max_bounding_box_count :]:
            dropped.add((time, position))
    return [
        (tracked, [b for b in boxes if (b.time, position) not in dropped])
        for position, (tracked, boxes) in enumerate(sized)
    ]


def _big_enough(box: tuple[float, float, float, float], params: ObjectTrackingParams) -> bool:
    x_min, y_min, x_max, y_max = box
    return min(x_max - x_min, y_max - y_min) >= params.min_bounding_box_size


class VideoObjectTracking(Problem):
    name = "video_object_tracking"
    Params = ObjectTrackingParams
    batch_only = True

    def __init__(self, manifest: Manifest):
        super().__init__(manifest)
        self.preprocessor = VideoPreprocessor(manifest)
        self.postprocessor = WithFacts(DetectorPostprocessor(manifest), attrgetter("geometry"))
        self.reducer = TrackedObjects(manifest.labels)
