"""Video classification from per-frame class scores: where the shots start, and the labels of the segment, of each
shot and of each second (pure numpy, no I/O).

Frames are sampled (e.g. 5 per second), so a hard cut falls between two samples: the shot it starts is said to begin
at the first sampled frame after it, and a shot's boundaries in seconds are sampled frames' times. The true cut lies
within one sample interval before the boundary given (at 5 fps: up to 0.2 s earlier).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Collection, Sequence

import numpy as np

from batchline.domain.predictions import SegmentLabel

KINDS = ("segment", "shot", "1s_interval")  # the order labels are returned in

# The cut rule (see shot_starts). A distance is the chi-square distance of two histograms, each first smoothed along
# its bins and scaled to sum 1, halved: 0 for equal histograms, 1 for histograms with no bin in common. Measured on
# 120 generated videos (scripts/videos.py, both kinds, h264 and mpeg4, 24-30 fps, noise 0-8, sampled at 5 fps,
# frames.histogram; 80 to choose the numbers, 40 more to check them): 408 true cuts, all >= 0.26; consecutive
# frames of one shot at most 0.11 (an mpeg4 encoder re-quantising a noisy background). The floor lies between.
CUT_FLOOR = 0.17  # least distance of a cut: a new picture, not the same one moving or re-encoded
CUT_RATIO = 5.0  # a cut's distance is at least this many times the usual distance around it...
LOCAL_WINDOW_S = 2.0  # ... the median of the distances within this many seconds before and after it
MIN_SHOT_S = 0.3  # no two cuts closer than this: the stronger one stays
_SMOOTHING = (0.25, 0.5, 0.25)  # each bin shares a quarter of its mass with each neighbour (the edges keep theirs)
_EPSILON = 1e-9  # seconds: a frame at start + k (give or take float noise) belongs to second k


def histogram_distances(histograms: np.ndarray) -> np.ndarray:
    """d[i - 1] = distance between frames i - 1 and i, in [0, 1] whatever the number of channels and bins.

    `histograms`: (frames, bins) or (frames, channels, bins). Each channel is smoothed along its bins (mass moved
    to a neighbouring bin, as when an encoder blurs or re-quantises noise, or the light shifts a little, counts
    less than mass moved far), each frame's histogram is scaled to sum 1, and d is half their chi-square distance,
    sum((a - b)^2 / (a + b)) / 2."""
    h = np.asarray(histograms, dtype=np.float64)
    h = _smooth(h.reshape(len(h), -1, h.shape[-1])).reshape(len(h), -1)
    total = h.sum(axis=1, keepdims=True)
    h = np.divide(h, total, out=np.zeros_like(h), where=total > 0)
    return _chi_square(h[:-1], h[1:])


def _smooth(h: np.ndarray) -> np.ndarray:
    """h (frames, channels, bins) convolved with _SMOOTHING along the bins; the edge bins pad with themselves, so
    each channel keeps its mass."""
    padded = np.concatenate([h[..., :1], h, h[..., -1:]], axis=-1)
    left, middle, right = _SMOOTHING
    return left * padded[..., :-2] + middle * padded[..., 1:-1] + right * padded[..., 2:]


def _chi_square(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    both = a + b
    diff = np.divide((a - b) ** 2, both, out=np.zeros_like(both), where=both > 0)
    return 0.5 * diff.sum(axis=-1)


def shot_starts(times: np.ndarray, histograms: np.ndarray) -> np.ndarray:
    """Indices of the sampled frames that begin a shot (index 0 always): a hard cut between frames i-1 and i shows
    as a histogram difference far above the video's usual frame-to-frame difference.

    `times`: seconds, ascending, one per sampled frame; `histograms`: one colour histogram per frame, (frames,
    bins) or (frames, channels, bins) (FrameFacts.histogram: 3 x 16). The rule, for d = histogram_distances(),
    the chi-square distance between consecutive frames' histograms, smoothed along their bins (halved, in [0, 1]).
    Chi-square rather than L1, because it weighs a change in a bin against the bin's mass, so a colour appearing or
    vanishing counts more than noise moving pixels between two full bins; smoothed because a histogram of raw
    pixels changes shape when an encoder blurs a noisy picture (measured: unsmoothed, such steps inside a shot
    reached 0.27, as far as the weakest true cuts, 0.3; smoothed, 0.11 against 0.26). A cut where:

    - d >= CUT_FLOOR (0.17): an absolute floor, so a static or near-static video, whose usual distance is ~0,
      does not turn noise into cuts, and a new picture is told from the same one moving or re-encoded;
    - d >= CUT_RATIO (5) times the median of the distances within LOCAL_WINDOW_S (2 s) on either side, the
      candidate itself left out: a local rather than a whole-video median, so a busy stretch (fast motion,
      camera shake) raises the bar there only, and a video with many cuts still has a median of ordinary pairs;
    - not a flash: where one odd frame (a flash, a glitch) comes and goes, the frames either side of it look
      alike (distance < CUT_FLOOR), and neither its coming nor its going starts a shot;
    - no two cuts closer than MIN_SHOT_S (0.3 s): the stronger one stays (a cut smeared over two samples by a
      dissolve, or a flicker, counts once).

    A cut is given as the index of the first sampled frame after it: the true cut lies between that frame's time
    and the previous sample's.
    """
    times = np.asarray(times, dtype=np.float64)
    if len(times) == 0:
        return np.zeros(0, dtype=np.int64)
    h = np.asarray(histograms, dtype=np.float64)
    if len(h) != len(times) or h.ndim < 2:
        raise ValueError(f"need one histogram (bins, or channels x bins) per time: {h.shape} for {len(times)} times")
    d = histogram_distances(h)
    candidates = [i for i in range(1, len(times)) if _stands_out(d, times, i) and not _flash(h, i)]
    cuts = _spaced(candidates, d, times)
    return np.array([0, *cuts], dtype=np.int64)


def _stands_out(d: np.ndarray, times: np.ndarray, i: int) -> bool:
    """Whether d[i - 1] (frames i - 1 -> i) clears the floor and CUT_RATIO times the local median."""
    distance = d[i - 1]
    if distance < CUT_FLOOR:
        return False
    pair_times = times[1:]  # d[j] ends at frame j + 1
    lo = int(np.searchsorted(pair_times, times[i] - LOCAL_WINDOW_S, side="left"))
    hi = int(np.searchsorted(pair_times, times[i] + LOCAL_WINDOW_S, side="right"))
    near = np.concatenate([d[lo : i - 1], d[i:hi]])  # the window, the candidate itself left out
    usual = float(np.median(near)) if len(near) else 0.0
    return distance >= CUT_RATIO * usual


def _flash(h: np.ndarray, i: int) -> bool:
    """Whether the jump between frames i - 1 and i is one odd frame's coming or going: frame i + 1 looks like
    frame i - 1 again (frame i is the odd one), or frame i like frame i - 2 (frame i - 1 was)."""
    pairs = [(a, b) for a, b in ((i - 1, i + 1), (i - 2, i)) if a >= 0 and b < len(h)]
    return any(float(histogram_distances(h[[a, b]])[0]) < CUT_FLOOR for a, b in pairs)


def _spaced(candidates: list[int], d: np.ndarray, times: np.ndarray) -> list[int]:
    """The candidates, strongest first, each kept unless a kept one lies within MIN_SHOT_S of it; in time order."""
    kept: list[float] = []  # the kept cuts' times, sorted
    index: dict[float, int] = {}
    for i in sorted(candidates, key=lambda i: (-d[i - 1], i)):
        at = bisect.bisect_left(kept, times[i])
        if all(abs(times[i] - t) >= MIN_SHOT_S for t in kept[max(0, at - 1) : at + 1]):
            kept.insert(at, float(times[i]))
            index[float(times[i])] = i
    return [index[t] for t in kept]


def video_labels(
    times: np.ndarray,
    scores: np.ndarray,
    labels: Sequence[str],
    start: float,
    end: float,
    shots: np.ndarray,
    kinds: Collection[str],
    threshold: float,
    limit: int | None,
) -> tuple[SegmentLabel, ...]:
    """kinds ⊆ {"segment", "shot", "1s_interval"}. segment: the whole [start, end), scores averaged over its frames;
    shot: each shot [its first frame's time, the next shot's first frame time (or end)); 1s_interval: each second
    [start + k, start + k + 1) that holds sampled frames. For each stretch, the labels whose mean score is >= threshold,
    best first, at most `limit` per stretch (None: all), as SegmentLabel(kind, start, end, label, score).
    Returned sorted by kind (segment, shot, 1s_interval), then by start time, then score descending.

    `times` (ascending) and `scores` (frames x labels) are the frames sampled for [start, end); all are used, and a
    time outside it counts as the nearest time inside (the frame shown at `start` may have begun a little before).
    So shot boundaries are clamped into [start, end]; the shots tile the segment (the first starts at `start`, even
    where the first frame sampled is a little after it; the last ends at `end`); and the last second ends at `end`
    (shorter than 1 s where the segment is not a whole number of seconds). `shots`: shot_starts' indices (0 is
    added where missing). Equal scores keep the labels' order. No frames: no labels. `end` should be finite (the
    caller resolves an open end to the video's end); an infinite one is kept as it is.
    """
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; known: {KINDS}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    if not end > start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    times = np.asarray(times, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64).reshape(len(times), len(labels))
    stretches = {
        "segment": lambda: [(float(start), float(end), slice(None))] if len(times) else [],
        "shot": lambda: _shots(times, shots, start, end),
        "1s_interval": lambda: _seconds(times, start, end),
    }
    found: list[SegmentLabel] = []
    for kind in (kind for kind in KINDS if kind in kinds):
        for first, last, frames in stretches[kind]():
            found += _labels(kind, first, last, scores[frames].mean(axis=0), labels, threshold, limit)
    return tuple(sorted(found, key=lambda x: (KINDS.index(x.kind), x.start, -x.score)))  # stable: ties keep order


def _shots(times: np.ndarray, shots: np.ndarray, start: float, end: float) -> list[tuple[float, float, slice]]:
    """Each shot's [first frame's time, next shot's first frame's time or end), clamped into [start, end]; the
    first shot starts at `start`, so that the shots tile the segment."""
    if len(times) == 0:
        return []
    indices = np.unique(np.concatenate([[0], np.asarray(shots, dtype=np.int64)]))
    indices = indices[(indices >= 0) & (indices < len(times))]
    bounds = [*indices.tolist(), len(times)]
    stretches = []
    for first, after in zip(bounds, bounds[1:], strict=False):
        shot_start = float(start) if first == 0 else _clamp(times[first], start, end)
        shot_end = end if after == len(times) else _clamp(times[after], start, end)
        stretches.append((shot_start, shot_end, slice(first, after)))
    return stretches


def _seconds(times: np.ndarray, start: float, end: float) -> list[tuple[float, float, np.ndarray]]:
    """Each second [start + k, min(start + k + 1, end)) that holds frames, with those frames' indices."""
    last = math.ceil(end - start - _EPSILON) - 1 if math.isfinite(end) else math.inf
    second = np.floor(np.maximum(times - start, 0.0) + _EPSILON)
    second = np.minimum(second, last).astype(np.int64)
    stretches = []
    for k in np.unique(second).tolist():
        stretches.append((float(start + k), float(min(start + k + 1, end)), np.flatnonzero(second == k)))
    return stretches


def _clamp(value: float, low: float, high: float) -> float:
    return float(min(max(value, low), high))


def _labels(
    kind: str, start: float, end: float, mean: np.ndarray, labels: Sequence[str], threshold: float, limit: int | None
) -> list[SegmentLabel]:
    """The stretch's labels scoring >= threshold, best first (equal scores: in the labels' order), at most limit."""
    order = [int(i) for i in np.argsort(-mean, kind="stable") if mean[i] >= threshold]
    if limit is not None:
        order = order[:limit]
    return [SegmentLabel(kind, start, end, labels[i], float(mean[i])) for i in order]
