"""Multi-object tracking by detection: ByteTrack's association (Zhang et al. 2022) on numpy and scipy.

Each frame, every live track's box is predicted to the frame's time by a constant-velocity Kalman filter, then matched
to the frame's detections on 1 - IoU with the Hungarian method (`scipy.optimize.linear_sum_assignment`), in stages:

1. confirmed tracks (those matched on the previous frame and lost ones) against the high-score detections;
2. the confirmed tracks that stage 1 left over, against the low-score detections, under a stricter IoU: ByteTrack's
   idea, a true object whose score drops (blur, partial occlusion) keeps its track, while low-score clutter, which
   never starts a track, is dropped. ByteTrack takes only the tracks matched on the previous frame here; at the frame
   rates video is sampled at (a few a second) one missed frame then threw away the rest of a faint stretch, so lost
   tracks take part too (the 0.5 IoU gate keeps clutter off them);
3. tentative tracks (fewer than `min_frames` matches) against the high-score detections left over; a tentative track
   that finds none is dropped, and every high-score detection still left over starts a tentative track.

A confirmed track that stays unmatched for more than `lost_seconds` ends. Boxes of one class never continue a track of
another. Only ended or still-live confirmed tracks are kept, so memory grows with the output, not with the video.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

Box = tuple[float, float, float, float]

# The Kalman filter's noise, in units of the box's own size (its width for cx and w, its height for cy and h) and of
# seconds, so that it does not depend on the frame rate. Close to ByteTrack's per-frame values taken to 30 fps.
_MEASURE_STD = 0.05  # a detection's error on each coordinate
_POSITION_NOISE = 0.3  # random walk of the position, per sqrt(s)
_ACCELERATION_NOISE = 1.0  # random walk of the velocity (white acceleration), per s ** 1.5
_INIT_VELOCITY_STD = 1.0  # a new track's velocity is unknown: 0 +- one box size per second
_MIN_SIZE = 1e-3  # widths and heights are kept above this, so that a box never turns inside out
_TIME_SLACK = 1e-9  # timestamps like 0.2 * 5 are not exactly 1.0
_GATED = 1e6  # the cost of a pair under the IoU gate: the assignment takes such a pair only when it must, then drops it


@dataclass(frozen=True)
class TrackerSettings:
    high: float = 0.5  # detections at or above: first association, and may start tracks
    low: float = 0.1  # detections in [low, high): second association only (ByteTrack's key idea)
    match_iou: float = 0.2  # minimum IoU of a match with a high-score detection (stages 1 and 3; ByteTrack's 1st)
    lost_seconds: float = 1.0  # a track unmatched for longer is ended (time-based: frames may be sampled at any rate)
    min_frames: int = 2  # a track is kept only if matched on this many frames (the first ones consecutive)
    low_match_iou: float = 0.5  # minimum IoU of a match with a low-score detection (stage 2; ByteTrack's 0.5)

    def __post_init__(self):
        if not 0 <= self.low <= self.high <= 1:
            raise ValueError(f"need 0 <= low <= high <= 1, got low={self.low}, high={self.high}")
        if not (0 < self.match_iou <= 1 and 0 < self.low_match_iou <= 1):
            raise ValueError("match_iou and low_match_iou must be in (0, 1]")
        if self.lost_seconds < 0 or self.min_frames < 1:
            raise ValueError("need lost_seconds >= 0 and min_frames >= 1")


@dataclass(frozen=True)
class TrackedObject:
    id: int  # 1, 2, ... unique within one call of track(), in the order of first appearance
    class_index: int
    frames: tuple[tuple[float, Box, float], ...]  # (time s, box xyxy normalized, score) of each matched detection


@dataclass
class _Track:
    class_index: int
    frames: list[tuple[float, Box, float]]
    seq: int  # creation order, which breaks ties in the output order
    confirmed: bool = False
    matched_last: bool = True  # matched on the previous frame ("tracked" in ByteTrack), else lost


def _xyxy_to_state(boxes: np.ndarray) -> np.ndarray:
    size = np.maximum(boxes[:, 2:] - boxes[:, :2], _MIN_SIZE)
    return np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, size], axis=1)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of a [n, 4] with every box of b [m, 4], both xyxy: [n, m]."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


class _KalmanBoxes:
    """Constant-velocity Kalman filters of many boxes on (cx, cy, w, h), one row a box.

    With noise independent per coordinate, the usual 8-state filter's covariance stays block-diagonal, so it is kept as
    four 2-state (position, velocity) filters a box: position x, velocity v and covariance entries p00, p01, p11.
    """

    def __init__(self):
        self.x, self.v, self.p00, self.p01, self.p11 = (np.zeros((0, 4)) for _ in range(5))

    def _scale(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x[:, [2, 3, 2, 3]], _MIN_SIZE) ** 2  # squared width for cx and w, height for cy and h

    def add(self, boxes: np.ndarray) -> None:
        x = _xyxy_to_state(boxes)
        scale = self._scale(x)
        new = (x, np.zeros_like(x), (2 * _MEASURE_STD) ** 2 * scale, np.zeros_like(x), _INIT_VELOCITY_STD**2 * scale)
        self.x, self.v, self.p00, self.p01, self.p11 = (
            np.concatenate([old, n]) for old, n in zip(self._all(), new, strict=True)
        )

    def keep(self, rows: np.ndarray) -> None:
        self.x, self.v, self.p00, self.p01, self.p11 = (a[rows] for a in self._all())

    def _all(self):
        return self.x, self.v, self.p00, self.p01, self.p11

    def predict(self, dt: float, lost: np.ndarray) -> None:
        self.v[lost, 2:] = 0  # a lost box keeps its size (as ByteTrack does)
        q_pos = _POSITION_NOISE**2 * self._scale(self.x)
        q_acc = _ACCELERATION_NOISE**2 * self._scale(self.x)
        self.x = self.x + self.v * dt
        self.p00 = self.p00 + 2 * dt * self.p01 + dt * dt * self.p11 + q_pos * dt + q_acc * dt**3 / 3
        self.p01 = self.p01 + dt * self.p11 + q_acc * dt**2 / 2
        self.p11 = self.p11 + q_acc * dt
        self.x[:, 2:] = np.maximum(self.x[:, 2:], _MIN_SIZE)

    def update(self, rows: np.ndarray, boxes: np.ndarray) -> None:
        x, p00, p01 = self.x[rows], self.p00[rows], self.p01[rows]
        s = p00 + _MEASURE_STD**2 * self._scale(x)
        k0, k1 = p00 / s, p01 / s
        innovation = _xyxy_to_state(boxes) - x
        self.x[rows] = x + k0 * innovation
        self.v[rows] += k1 * innovation
        self.p11[rows] -= k1 * p01
        self.p00[rows] = (1 - k0) * p00
        self.p01[rows] = (1 - k0) * p01

    def boxes(self) -> np.ndarray:
        half = self.x[:, 2:] / 2
        return np.concatenate([self.x[:, :2] - half, self.x[:, :2] + half], axis=1)


class _Tracker:
    def __init__(self, settings: TrackerSettings):
        self.settings = settings
        self.filters = _KalmanBoxes()
        self.tracks: list[_Track] = []  # row i of the filters is tracks[i]
        self.ended: list[_Track] = []
        self.time: float | None = None
        self.seq = 0

    def step(self, time: float, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> None:
        self._advance(time)
        s = self.settings
        high = np.flatnonzero(scores >= s.high)
        low = np.flatnonzero((scores >= s.low) & (scores < s.high))
        predicted = self.filters.boxes()
        match = _Matcher(predicted, np.array([t.class_index for t in self.tracks], dtype=int), boxes, classes)
        confirmed = [i for i, t in enumerate(self.tracks) if t.confirmed]
        first, left, high_left = match(confirmed, high, s.match_iou)
        second, _, _ = match(left, low, s.low_match_iou)
        third, _, new = match([i for i, t in enumerate(self.tracks) if not t.confirmed], high_left, s.match_iou)
        self._update(first + second + third, time, boxes, scores)
        self._start(new, time, boxes, scores, classes)

    def _advance(self, time: float) -> None:
        if self.time is not None and time < self.time:
            raise ValueError(f"frames must come in time order: {time} after {self.time}")
        dt = 0.0 if self.time is None else time - self.time
        self.time = time
        alive = [
            not t.confirmed or time - t.frames[-1][0] <= self.settings.lost_seconds + _TIME_SLACK for t in self.tracks
        ]
        self.ended += [t for t, a in zip(self.tracks, alive, strict=True) if not a]
        self._keep(alive)
        self.filters.predict(dt, np.array([not t.matched_last for t in self.tracks], dtype=bool))

    def _keep(self, keep: list[bool]) -> None:
        self.tracks = [t for t, k in zip(self.tracks, keep, strict=True) if k]
        self.filters.keep(np.array(keep, dtype=bool))

    def _update(self, matches: list[tuple[int, int]], time: float, boxes: np.ndarray, scores: np.ndarray) -> None:
        matched = [False] * len(self.tracks)
        for row, det in matches:
            track = self.tracks[row]
            track.frames.append((time, tuple(float(c) for c in boxes[det]), float(scores[det])))
            track.confirmed = len(track.frames) >= self.settings.min_frames
            matched[row] = True
        if matches:
            rows, dets = (np.array(a) for a in zip(*matches, strict=True))
            self.filters.update(rows, boxes[dets])
        for track, m in zip(self.tracks, matched, strict=True):
            track.matched_last = m
        # an unmatched tentative track is dropped
        self._keep([t.confirmed or m for t, m in zip(self.tracks, matched, strict=True)])

    def _start(self, dets: np.ndarray, time: float, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> None:
        for det in dets:
            frame = (time, tuple(float(c) for c in boxes[det]), float(scores[det]))
            self.tracks.append(_Track(int(classes[det]), [frame], self.seq, self.settings.min_frames <= 1))
            self.seq += 1
        self.filters.add(boxes[dets])

    def finish(self) -> list[TrackedObject]:
        kept = sorted((t for t in self.ended + self.tracks if t.confirmed), key=lambda t: (t.frames[0][0], t.seq))
        return [TrackedObject(i, t.class_index, tuple(t.frames)) for i, t in enumerate(kept, start=1)]


class _Matcher:
    """One frame's assignments of track rows to detection indices, on 1 - IoU, gated by IoU and class."""

    def __init__(self, predicted: np.ndarray, track_classes: np.ndarray, boxes: np.ndarray, classes: np.ndarray):
        self.predicted, self.track_classes, self.boxes, self.classes = predicted, track_classes, boxes, classes

    def __call__(self, rows: list[int], dets: np.ndarray, gate: float):
        """Matched (row, detection) pairs, the rows left over and the detections left over."""
        if not rows or not len(dets):
            return [], rows, dets
        overlap = iou(self.predicted[rows], self.boxes[dets])
        overlap[self.track_classes[rows][:, None] != self.classes[dets][None, :]] = 0
        valid = overlap >= gate
        r, c = linear_sum_assignment(np.where(valid, 1 - overlap, _GATED))
        keep = valid[r, c]
        r, c = r[keep], c[keep]
        left_rows = np.ones(len(rows), dtype=bool)
        left_rows[r] = False
        left_dets = np.ones(len(dets), dtype=bool)
        left_dets[c] = False
        pairs = [(rows[i], int(dets[j])) for i, j in zip(r, c, strict=True)]
        return pairs, [row for row, left in zip(rows, left_rows, strict=True) if left], dets[left_dets]


def track(
    frames: Iterable[tuple[float, np.ndarray, np.ndarray, np.ndarray]], settings: TrackerSettings = TrackerSettings()
) -> list[TrackedObject]:
    """frames: (time, boxes [k,4] xyxy normalized, scores [k], class indices [k]) in time order.

    Answers the tracks matched on at least `settings.min_frames` frames, by first time, with ids 1, 2, ... in that
    order. The frames are read one at a time, so they may come from a generator over a long video.
    """
    tracker = _Tracker(settings)
    for time, boxes, scores, classes in frames:
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        scores = np.asarray(scores, dtype=float).reshape(-1)
        classes = np.asarray(classes).astype(int).reshape(-1)
        if not len(boxes) == len(scores) == len(classes):
            raise ValueError(f"a frame at {time} has {len(boxes)} boxes, {len(scores)} scores, {len(classes)} classes")
        tracker.step(float(time), boxes, scores, classes)
    return tracker.finish()
