"""The ByteTrack-style tracker on synthetic scenes, scored with motmetrics (the standard CLEAR MOT / ID metrics).

A scene is ground truth of objects on smooth paths sampled at 5 fps, and detections made from it: position and score
noise, missed detections, short occlusions, two objects of one class crossing, stretches where a true object scores
only 0.2-0.4 (which only the second association recovers) and low-score clutter.

The tracker only ever answers matched detections (never a predicted box), so a frame where the detector missed an
object is the detector's error, not the tracker's: MOTA and IDF1 are taken against the truth the detections reach
(every visible object on the frames where it has a detection of at least `low`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import motmetrics as mm
import numpy as np
import pytest

from batchline.problems.video.tracker import TrackedObject, TrackerSettings, track

FPS = 5.0
Frame = tuple[float, np.ndarray, np.ndarray, np.ndarray]


def iou_distances(truth: np.ndarray, hypotheses: np.ndarray, min_iou: float = 0.5) -> np.ndarray:
    """motmetrics' distance matrix for xyxy boxes: 1 - IoU, NaN (no match) under min_iou. Stands in for
    `mm.distances.iou_matrix`, which calls np.asfarray, gone in numpy 2."""
    truth, hypotheses = np.asarray(truth, float).reshape(-1, 4), np.asarray(hypotheses, float).reshape(-1, 4)
    lo = np.maximum(truth[:, None, :2], hypotheses[None, :, :2])
    hi = np.minimum(truth[:, None, 2:], hypotheses[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    areas_t = np.prod(truth[:, 2:] - truth[:, :2], axis=1)
    areas_h = np.prod(hypotheses[:, 2:] - hypotheses[:, :2], axis=1)
    overlap = inter / (areas_t[:, None] + areas_h[None, :] - inter)
    return np.where(overlap >= min_iou, 1 - overlap, np.nan)


@dataclass
class Obj:
    class_index: int
    path: object  # t -> (cx, cy, w, h)
    start: float = 0.0
    end: float = 20.0
    hidden: tuple[tuple[float, float], ...] = ()  # occlusions: no truth, no detection
    faint: tuple[tuple[float, float], ...] = ()  # stretches where the detector scores it 0.2-0.4

    def visible(self, t: float) -> bool:
        return self.start <= t < self.end and not any(a <= t < b for a, b in self.hidden)

    def box(self, t: float) -> np.ndarray:
        cx, cy, w, h = self.path(t)
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


@dataclass
class Scene:
    frames: list[Frame] = field(default_factory=list)
    truth: dict[float, tuple[list[int], list[np.ndarray]]] = field(default_factory=dict)  # reachable truth per time


def make_scene(objects, times, seed=0, miss=0.1, clutter=1.5, low=0.1) -> Scene:
    rng = np.random.default_rng(seed)
    scene = Scene()
    for t in times:
        boxes, scores, classes, ids, truth = [], [], [], [], []
        for oid, obj in enumerate(objects, start=1):
            if not obj.visible(t) or rng.random() < miss:
                continue
            true = obj.box(t)
            size = np.tile(true[2:] - true[:2], 2)
            boxes.append(true + rng.normal(0, 0.03, 4) * size)
            faint = any(a <= t < b for a, b in obj.faint)
            scores.append(rng.uniform(0.2, 0.4) if faint else float(np.clip(rng.normal(0.8, 0.1), 0.5, 0.99)))
            classes.append(obj.class_index)
            if scores[-1] >= low:
                ids.append(oid)
                truth.append(true)
        for _ in range(rng.poisson(clutter)):  # low-score false positives anywhere
            xy, wh = rng.uniform(0, 0.85, 2), rng.uniform(0.03, 0.15, 2)
            boxes.append(np.concatenate([xy, xy + wh]))
            scores.append(rng.uniform(0.1, 0.4))
            classes.append(int(rng.integers(2)))
        order = rng.permutation(len(boxes))  # a detector's output order says nothing
        scene.frames.append(
            (t, np.array(boxes).reshape(-1, 4)[order], np.array(scores)[order], np.array(classes, dtype=int)[order])
        )
        scene.truth[t] = (ids, truth)
    return scene


def evaluate(scene: Scene, tracks: list[TrackedObject]) -> dict[str, float]:
    answered: dict[float, tuple[list[int], list]] = {t: ([], []) for t in scene.truth}
    for tracked in tracks:
        for t, box, _ in tracked.frames:
            answered[t][0].append(tracked.id)
            answered[t][1].append(box)
    acc = mm.MOTAccumulator(auto_id=True)
    for t, (ids, boxes) in scene.truth.items():
        hyp_ids, hyp_boxes = answered[t]
        acc.update(ids, hyp_ids, iou_distances(np.array(boxes), np.array(hyp_boxes)))
    summary = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches", "recall", "precision"])
    return {name: float(summary[name].iloc[0]) for name in summary.columns}


def frame_times(duration=20.0) -> list[float]:
    return [k / FPS for k in range(int(duration * FPS))]


def main_objects() -> list[Obj]:
    return [
        Obj(0, lambda t: (0.15 + 0.02 * t, 0.25 + 0.06 * math.sin(0.5 * t), 0.10, 0.14), hidden=((14.0, 14.4),)),
        # two objects of one class crossing at t = 10, nearly on one line
        Obj(0, lambda t: (0.1 + 0.04 * t, 0.60, 0.10, 0.12), faint=((6.0, 7.6),)),
        Obj(0, lambda t: (0.9 - 0.04 * t, 0.62, 0.10, 0.12), hidden=((16.0, 16.8),)),
        Obj(1, lambda t: (0.7 + 0.12 * math.cos(0.3 * t), 0.3 + 0.1 * math.sin(0.3 * t), 0.08, 0.08), 2, 18),
        Obj(1, lambda t: (0.3 + 0.1 * math.sin(0.2 * t), 0.88 - 0.01 * t, 0.12, 0.10), 5, 20, ((10.0, 10.6),)),
        Obj(0, lambda t: (0.55 + 0.05 * math.sin(0.4 * t), 0.1 + 0.015 * t, 0.09, 0.11), 8, 20, (), ((12.0, 13.6),)),
    ]


def test_synthetic_scene_mota_and_idf1():
    scene = make_scene(main_objects(), frame_times())
    metrics = evaluate(scene, track(scene.frames))
    assert metrics["mota"] >= 0.9, metrics
    assert metrics["idf1"] >= 0.9, metrics
    assert metrics["num_switches"] <= 1, metrics


def test_crossing_objects_keep_their_ids():
    objects = main_objects()[1:3]
    scene = make_scene(objects, frame_times(), miss=0.0, clutter=0)
    tracks = track(scene.frames)
    assert len(tracks) == 2
    for tracked in tracks:  # every box of a track is nearest to one and the same true object
        nearest = {min(range(2), key=lambda i: np.abs(objects[i].box(t) - box).sum()) for t, box, _ in tracked.frames}
        assert len(nearest) == 1
    # one is faint for 1.6 s (recovered by the second stage), the other hidden for 4 frames
    assert sorted(len(t.frames) for t in tracks) == [len(scene.frames) - 4, len(scene.frames)]


def test_second_stage_recovers_low_score_detections():
    faint = ((3.0, 4.6), (9.0, 10.4), (15.0, 16.6))
    objects = [
        Obj(0, lambda t: (0.2 + 0.03 * t, 0.3, 0.1, 0.12), faint=faint),
        Obj(1, lambda t: (0.7, 0.2 + 0.03 * t, 0.12, 0.1), faint=faint[1:]),
        Obj(0, lambda t: (0.5 + 0.1 * math.sin(0.3 * t), 0.8, 0.1, 0.1), faint=faint[:1]),
    ]
    scene = make_scene(objects, frame_times(), seed=1)
    both = evaluate(scene, track(scene.frames))
    first_only_tracks = track(scene.frames, TrackerSettings(low=0.5, high=0.5))
    first_only = evaluate(scene, first_only_tracks)
    assert both["recall"] >= 0.95, both
    assert first_only["recall"] <= both["recall"] - 0.1, (both, first_only)
    assert len(first_only_tracks) > len(objects)  # faint stretches past lost_seconds also break the tracks


def _input_classes(frames: list[Frame]) -> dict[tuple[float, tuple[float, ...]], int]:
    return {
        (t, tuple(map(float, b))): int(c)
        for t, boxes, _, classes in frames
        for b, c in zip(boxes, classes, strict=True)
    }


def test_ids_never_cross_classes():
    path = lambda t: (0.2 + 0.03 * t, 0.5, 0.1, 0.1)  # noqa: E731
    rider = Obj(1, path)  # a rider and the bicycle under it: one box, two classes
    bicycle = Obj(0, path)
    before, after = Obj(0, lambda t: (0.3, 0.2, 0.1, 0.1), 0, 10), Obj(1, lambda t: (0.3, 0.2, 0.1, 0.1), 10, 20)
    scene = make_scene([rider, bicycle, before, after], frame_times(), miss=0.0, clutter=0)
    tracks = track(scene.frames)
    assert sorted(t.class_index for t in tracks) == [0, 0, 1, 1]
    classes = _input_classes(scene.frames)
    for tracked in tracks:
        assert {classes[(t, box)] for t, box, _ in tracked.frames} == {tracked.class_index}
    main = make_scene(main_objects(), frame_times())
    main_classes = _input_classes(main.frames)
    for tracked in track(main.frames):
        assert {main_classes[(t, box)] for t, box, _ in tracked.frames} == {tracked.class_index}


@pytest.mark.parametrize(("missing_frames", "tracks_expected"), [(2, 1), (4, 1), (5, 2), (10, 2)])
def test_gap_against_lost_seconds(missing_frames, tracks_expected):
    """At 5 fps and lost_seconds = 1, four missing frames leave 1.0 s between matches (kept), five leave 1.2 s."""
    gap = (6.0, 6.0 + missing_frames / FPS - 1e-6)
    scene = make_scene([Obj(0, lambda t: (0.2 + 0.03 * t, 0.5, 0.1, 0.1), 0, 12, (gap,))], frame_times(12), miss=0)
    tracks = track(scene.frames, TrackerSettings(lost_seconds=1.0))
    assert len(tracks) == tracks_expected
    assert [t.id for t in tracks] == list(range(1, tracks_expected + 1))
    assert sum(len(t.frames) for t in tracks) == len(scene.frames) - missing_frames


def test_empty_video():
    assert track([]) == []
    nothing = np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int)
    assert track((t, *nothing) for t in frame_times(2)) == []


def test_non_uniform_timestamps():
    rng = np.random.default_rng(3)
    times = list(np.cumsum(rng.uniform(0.05, 0.5, 80)))  # 4 to 20 frames a second, in bursts
    objects = [
        Obj(0, lambda t: (0.1 + 0.035 * t, 0.3, 0.1, 0.12), 0, 30),
        Obj(0, lambda t: (0.5 + 0.2 * math.sin(0.25 * t), 0.6, 0.1, 0.1), 0, 30),
        Obj(1, lambda t: (0.8, 0.9 - 0.03 * t, 0.08, 0.1), 0, 30),
    ]
    scene = make_scene(objects, times, seed=3, miss=0.05)
    tracks = track(scene.frames)
    metrics = evaluate(scene, tracks)
    assert metrics["mota"] >= 0.9 and metrics["idf1"] >= 0.9, metrics
    assert metrics["num_switches"] == 0 and len(tracks) == len(objects)


def test_output_order_ids_and_only_matched_boxes():
    scene = make_scene(main_objects(), frame_times())
    tracks = track(scene.frames)
    assert [t.id for t in tracks] == list(range(1, len(tracks) + 1))
    starts = [t.frames[0][0] for t in tracks]
    assert starts == sorted(starts)
    detections = {
        (t, tuple(map(float, b))): float(s)
        for t, boxes, scores, _ in scene.frames
        for b, s in zip(boxes, scores, strict=True)
    }
    for tracked in tracks:
        times = [t for t, _, _ in tracked.frames]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert all(detections[(t, box)] == score for t, box, score in tracked.frames)  # no predicted box
    assert track(scene.frames) == tracks  # deterministic


def test_min_frames_drops_one_frame_flashes():
    flash = [(0.0, np.array([[0.1, 0.1, 0.2, 0.2]]), np.array([0.9]), np.array([0]))]
    assert track(flash) == []
    assert len(track(flash, TrackerSettings(min_frames=1))) == 1


def test_bad_input():
    with pytest.raises(ValueError):
        TrackerSettings(low=0.6, high=0.5)
    with pytest.raises(ValueError):
        TrackerSettings(match_iou=0)
    one = np.array([[0.1, 0.1, 0.2, 0.2]]), np.array([0.9]), np.array([0])
    with pytest.raises(ValueError, match="time order"):
        track([(1.0, *one), (0.5, *one)])


def test_speed_20_boxes_a_frame():
    """Under 1 ms a frame for 20 objects (best of three runs, so a busy machine does not decide)."""
    objects = [
        Obj(i % 3, lambda t, i=i: (0.05 + 0.045 * i, 0.5 + 0.3 * math.sin(0.2 * t + i), 0.04, 0.06), 0, 100)
        for i in range(20)
    ]
    scene = make_scene(objects, frame_times(100), miss=0.05, clutter=0)
    best = math.inf
    for _ in range(3):
        began = time.perf_counter()
        tracks = track(scene.frames)
        best = min(best, (time.perf_counter() - began) / len(scene.frames))
    assert len(tracks) >= 20
    assert best < 1e-3, f"{best * 1e3:.3f} ms a frame"
