"""What a problem predicts for one input, before any surface encodes it: one type per kind of answer.

Surfaces encode a prediction by its type (functools.singledispatch), so no code asks which problem made it.
"""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[float, float, float, float]  # x_min, y_min, x_max, y_max, relative to the original picture (0..1)


@dataclass(frozen=True)
class Label:
    label: str
    score: float


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: Box


@dataclass(frozen=True)
class Classification:
    """An image's labels, best first."""

    labels: tuple[Label, ...]


@dataclass(frozen=True)
class Detections:
    """An image's boxes, best first."""

    boxes: tuple[Detection, ...]


@dataclass(frozen=True)
class SegmentLabel:
    """A label of a stretch of video: the whole segment asked for, a shot, or one second of it."""

    kind: str  # "segment" | "shot" | "1s_interval"
    start: float  # seconds from the video's start
    end: float
    label: str
    score: float


@dataclass(frozen=True)
class VideoLabels:
    """A video segment's labels, by kind, then best first."""

    labels: tuple[SegmentLabel, ...]


@dataclass(frozen=True)
class TrackedBox:
    time: float  # seconds from the video's start
    box: Box
    score: float


@dataclass(frozen=True)
class Track:
    """One object followed across frames: its instance id is unique within the video."""

    id: int
    label: str
    score: float  # the mean of its boxes' scores
    boxes: tuple[TrackedBox, ...]  # in time order

    @property
    def start(self) -> float:
        return self.boxes[0].time

    @property
    def end(self) -> float:
        return self.boxes[-1].time


@dataclass(frozen=True)
class VideoTracks:
    """A video segment's tracks, in the order they start."""

    tracks: tuple[Track, ...]


Prediction = Classification | Detections | VideoLabels | VideoTracks
