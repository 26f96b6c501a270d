"""Synthetic videos of moving, occluding shapes in several shots, and their ground truth (numpy, Pillow, PyAV).

The pictures are those of scripts/shapes.py, whose drawing functions this script imports: its backgrounds (plain,
gradient, noise, clutter), shape colours that contrast with them, and circles, squares, triangles and stars drawn
by the same rasteriser. So the example models see what they were trained on.

A video is a run of shots with hard cuts between them: at a cut the background and every object change at once
(consecutive shots' backgrounds differ by a mean absolute difference of at least MIN_CUT_DIFF per channel).

- kind "tracking" (for examples/models/shapes-detector): each shot has `objects` shapes of random classes, sized
  like the detector's training scenes relative to the frame (diameter from 6% of the long side, at least 20 px, up
  to 30% of the short side). Most bounce off the frame's edges along smooth paths (a straight line with a gentle
  sideways sway, reflected at the edges); some pairs are set to cross, so that one briefly covers the other; some
  objects enter or leave the frame. Draw order is depth: later objects are drawn over earlier ones. Polygons
  rotate slowly.
- kind "classification" (for examples/models/shapes-classifier): each shot shows one big shape of the shot's
  label (35-70% of the short side, like the classifier's training images) that drifts and turns slowly, over
  optional small `distractors` of other classes; consecutive shots have different labels.

Ground truth (GroundTruth, written beside the video as NAME.json by the CLI): per frame its index, its
presentation time (index / fps, which is what PyAV's `frame.time` gives on decode) and the objects seen. An
object's `box` is [x0, y0, x1, y1] in pixels, x1 and y1 exclusive: the tight box of its visible pixels, as in
shapes.py's detector scenes (so it is clipped to the frame and shrinks where another shape covers part of it).
`visible` is the share of the whole shape's pixels that shows (what is off-frame or under shapes drawn above it
does not). An object with visible >= MIN_VISIBLE (0.3, i.e. at most ~70% hidden) is listed in the frame's
`objects`; one with less, but some pixels showing, goes to the frame's `hidden` (a "don't care" for evaluators
that want one); one with none is in neither. Track ids are unique over the whole video; each shot's objects get
new ones.

Frames are rendered and encoded one at a time (nothing holds more than one frame and one shot's background), so a
long video costs time, not memory.

Usage: python scripts/videos.py OUT_DIR --n 3 --seed 1 [--size 640x480] [--fps 30] [--codec h264]
       [--container mp4] [--seconds 6] [--shots 3] [--objects 2-5] [--noise 2] [--kind tracking|classification]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import av
import numpy as np
from PIL import Image


def _import_shapes() -> ModuleType:
    """scripts/shapes.py, the sibling of this file, whether or not scripts/ is on sys.path."""
    path = Path(__file__).resolve().with_name("shapes.py")
    loaded = sys.modules.get("shapes")
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path:
        return loaded
    name = "shapes" if loaded is None else "_videos_shapes"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


shapes = _import_shapes()
LABELS = shapes.LABELS

KINDS = ("tracking", "classification")
CODECS = {"h264": ("libx264", (".mp4", ".mov")), "mpeg4": ("mpeg4", (".avi", ".mp4"))}  # codec -> encoder, suffixes
MIN_VISIBLE = 0.3  # an object showing less of its pixels than this is listed as hidden, not as an object
MIN_CUT_DIFF = 40.0  # least mean absolute difference (0-255) between consecutive shots' backgrounds
MIN_SHOT_SECONDS = 0.5  # shots are at least this long where the video has room for it
DIAMETER = (0.06, 20, 0.3)  # tracking objects: diameter from 6% of the long side and 20 px, to 30% of the short
MAX_STEP = 0.1  # an object moves at most this share of its diameter from one frame to the next
DOMINANT = (0.35, 0.7)  # classification: the dominant shape's diameter, share of the short side (make_image: 0.25-0.8)
MAX_OVERLAP_S, OVERLAP_TRIES = 0.6, 30  # how long two objects may overlap; draws of a shot's paths to find that


@dataclass(frozen=True)
class VideoSpec:
    """What make_video renders. All randomness comes from `seed`: the same spec gives the same video."""

    width: int = 640
    height: int = 480
    fps: float | Fraction = 30  # 24-60 intended; a Fraction such as Fraction(30000, 1001) is kept exact
    codec: str = "h264"  # h264 (libx264; .mp4, .mov) or mpeg4 (MPEG-4 part 2; .avi, .mp4)
    seconds: float = 6.0  # the video has round(seconds * fps) frames
    seed: int = 0
    shots: int = 3
    objects: int | tuple[int, int] = (2, 5)  # tracking: shapes per shot, or the range each shot draws from
    noise: float = 2.0  # sigma of the Gaussian pixel noise added to every frame (0: none)
    kind: str = "tracking"  # or "classification"
    distractors: int = 0  # classification: small shapes of other classes under each shot's dominant shape

    @property
    def rate(self) -> Fraction:
        return Fraction(self.fps).limit_denominator(1_000_000)

    @property
    def frame_count(self) -> int:
        return round(self.seconds * self.rate)

    def object_range(self) -> tuple[int, int]:
        lo, hi = (self.objects, self.objects) if isinstance(self.objects, int) else self.objects
        return int(lo), int(hi)

    def check(self, path: Path | None = None) -> None:
        """Raise ValueError for a spec (and file name) this script cannot render."""
        problems = [
            (self.width % 2 or self.height % 2 or min(self.width, self.height) < 64, "sides must be even, >= 64"),
            (max(self.width, self.height) > 4096, "sides must be at most 4096"),
            (not 1 <= self.rate <= 120, "fps must be in 1..120"),
            (self.codec not in CODECS, f"codec must be one of {sorted(CODECS)}"),
            (self.kind not in KINDS, f"kind must be one of {KINDS}"),
            (self.seed < 0, "seed must be >= 0"),
            (not 1 <= self.shots <= self.frame_count, "need 1 <= shots <= frames (round(seconds * fps))"),
            (not 0 <= self.object_range()[0] <= self.object_range()[1] <= 32, "objects must be 0..32, lo <= hi"),
            (not 0 <= self.distractors <= 8, "distractors must be 0..8"),
        ]
        if path is not None and self.codec in CODECS and Path(path).suffix.lower() not in CODECS[self.codec][1]:
            problems.append((True, f"{self.codec} goes in {' or '.join(CODECS[self.codec][1])} files"))
        errors = [message for failed, message in problems if failed]
        if errors:
            raise ValueError(f"bad video spec {self}: " + "; ".join(errors))

    def as_json(self) -> dict:
        spec = asdict(self)
        spec["fps"] = str(self.rate)
        spec["objects"] = list(self.object_range())
        return spec


@dataclass
class GroundTruth:
    """What a video shows. JSON-ready through as_json(); times in seconds, boxes in pixels.

    shots: {index, start_frame, end_frame, start_s, end_s, label}: frames [start_frame, end_frame), times
      [start_s, end_s); label is the dominant class in classification videos, None in tracking ones.
    tracks: {id, label, shot, first_frame, last_frame, frames}: each object that is listed in some frame's
      objects (frames counts those frames).
    frames: {index, time_s, shot, objects, hidden}; each object {id, label, box, full_box, visible, in_frame, depth}:
      box is the tight box of its visible pixels, full_box that of all its pixels in the frame (as if nothing
      covered it), visible the share of the shape's pixels that shows, in_frame the share inside the frame
      (covered or not), depth its draw order in the shot (0 = drawn first, at the back).
    """

    name: str
    kind: str
    codec: str
    container: str
    width: int
    height: int
    fps: float
    fps_fraction: str  # exact, e.g. "30000/1001"
    frame_count: int
    duration_s: float  # frame_count / fps
    seed: int
    labels: list[str]
    spec: dict
    shots: list[dict] = field(default_factory=list)
    tracks: list[dict] = field(default_factory=list)
    frames: list[dict] = field(default_factory=list)

    def as_json(self) -> dict:
        return asdict(self)

    def save(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(self.as_json(), separators=(",", ":")))
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> GroundTruth:
        return cls(**json.loads(Path(path).read_text()))


# -- the plan: every random choice of a video, made before the first frame


@dataclass(frozen=True)
class Mover:
    """One shape of a shot and its path. Its centre at time t (seconds into the shot) is anchor + velocity *
    (t - t_anchor) plus a sideways sway that is zero at t_anchor; a bouncing mover's centre is then reflected
    into the frame, less its radius, at the edges (a triangle wave: a bounce is a mirror image of the path)."""

    track_id: int
    label: str
    r: float  # circumradius in pixels (the diameter of shapes.py is 2r)
    fill: tuple[int, int, int]
    anchor: tuple[float, float]
    t_anchor: float
    velocity: tuple[float, float]  # pixels per second
    sway: float  # amplitude in pixels
    sway_hz: float
    phase: float
    theta: float  # rotation at t = 0, and its speed in radians per second
    spin: float
    bounce: bool
    outline_seed: int  # a star's inner radius comes from shapes._outline's rng: the same one every frame

    def centre(self, t, width: int, height: int):
        """(x, y) at time t: floats, or arrays for an array of times."""
        vx, vy = self.velocity
        speed = math.hypot(vx, vy) or 1.0
        angle = 2 * math.pi * self.sway_hz
        side = self.sway * (np.sin(angle * t + self.phase) - math.sin(angle * self.t_anchor + self.phase))
        x = self.anchor[0] + vx * (t - self.t_anchor) - vy / speed * side
        y = self.anchor[1] + vy * (t - self.t_anchor) + vx / speed * side
        if self.bounce:
            x, y = _fold(x, self.r, width - self.r), _fold(y, self.r, height - self.r)
        return x, y

    def mask(self, t: float, width: int, height: int) -> tuple[np.ndarray, int, int]:
        """The shape's pixels at time t, as a boolean patch, and where the patch's top-left corner lies."""
        cx, cy = (float(c) for c in self.centre(t, width, height))
        x0, y0 = math.floor(cx - self.r) - 1, math.floor(cy - self.r) - 1
        side = math.ceil(2 * self.r) + 3
        lx, ly = cx - x0, cy - y0
        vertices = None
        if self.label != "circle":
            theta = self.theta + self.spin * t
            vertices = shapes._outline(self.label, lx, ly, self.r, theta, np.random.default_rng(self.outline_seed))
        patch = Image.new("L", (side, side))
        shapes._draw(patch, lx, ly, self.r, vertices, 255)  # the rasteriser of shapes.py, on a patch
        return np.asarray(patch) > 0, x0, y0


@dataclass(frozen=True)
class Shot:
    index: int
    start: int  # frames [start, end)
    end: int
    background_key: tuple[int, ...]  # seeds shapes._background: the shot's background is drawn again from it
    label: str | None
    movers: tuple[Mover, ...]  # in draw order: back to front


def _fold(u, lo: float, hi: float):
    """u reflected into [lo, hi], as a point bouncing between two walls would be (u: a float or an array)."""
    if hi <= lo:
        return u * 0 + (lo + hi) / 2
    span = hi - lo
    m = np.mod(u - lo, 2 * span)
    return lo + np.where(m <= span, m, 2 * span - m)


def background(width: int, height: int, key: tuple[int, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    """A shapes.py background (RGB uint8) and the colours shapes on it must contrast with."""
    img, colours = shapes._background(np.random.default_rng(list(key)), width, height)
    return np.asarray(img.convert("RGB")), colours


def plan_video(spec: VideoSpec) -> list[Shot]:
    """The shots of the video: their frames, backgrounds, labels and objects with their paths."""
    spec.check()
    rng = np.random.default_rng([spec.seed, 0])
    lengths = _shot_lengths(rng, spec.frame_count, spec.shots, max(1, round(MIN_SHOT_SECONDS * spec.rate)))
    shots, start, previous, label, next_id = [], 0, None, None, 1
    for index, length in enumerate(lengths):
        key, bg, colours = _distinct_background(spec, index, previous)
        shot_rng = np.random.default_rng([spec.seed, 1, index])
        seconds = float(length / spec.rate)
        if spec.kind == "classification":
            label = str(rng.choice([name for name in LABELS if name != label]))
            movers = _classification_movers(shot_rng, spec, colours, label, seconds, next_id)
        else:
            movers = _tracking_movers(shot_rng, spec, colours, seconds, next_id)
        shots.append(Shot(index, start, start + length, key, label, tuple(movers)))
        start, previous, next_id = start + length, bg, next_id + len(movers)
    return shots


def _shot_lengths(rng: np.random.Generator, frames: int, shots: int, least: int) -> list[int]:
    """Random shot lengths in frames that add up to `frames`, each at least `least` where there is room."""
    least = max(1, min(least, frames // shots))
    weights = rng.uniform(0.5, 1.5, shots)
    spare = frames - least * shots
    extra = np.floor(spare * weights / weights.sum()).astype(int)
    extra[: spare - int(extra.sum())] += 1  # the rounding remainder, one frame each to the first shots
    return [least + int(e) for e in extra]


def _distinct_background(spec: VideoSpec, index: int, previous: np.ndarray | None):
    """The shot's background key, image and colours: one that differs enough from the previous shot's."""
    for attempt in range(50):
        key = (spec.seed, 2, index, attempt)
        bg, colours = background(spec.width, spec.height, key)
        if previous is None or np.abs(bg.astype(np.int16) - previous).mean() >= MIN_CUT_DIFF:
            break
    return key, bg, colours


def _colour(rng: np.random.Generator, avoid: list[np.ndarray], others: list[np.ndarray]) -> tuple[int, int, int]:
    """A colour contrasting with the background and, where one can be found, with the shot's other shapes."""
    return shapes._shape_colour(rng, avoid + others, tries=200) or shapes._shape_colour(rng, avoid)


def _mover(rng: np.random.Generator, track_id: int, label: str, r: float, fill, **path) -> Mover:
    """A mover with a random sway, rotation and star shape; `path` gives anchor, t_anchor, velocity, bounce."""
    return Mover(
        track_id=track_id,
        label=label,
        r=r,
        fill=tuple(int(c) for c in fill),
        sway=float(rng.uniform(0, 0.3) * r * 2),
        sway_hz=float(rng.uniform(0.1, 0.4)),
        phase=float(rng.uniform(0, 2 * math.pi)),
        theta=float(rng.uniform(0, 2 * math.pi)),
        spin=float(rng.uniform(-1, 1)),
        outline_seed=int(rng.integers(2**31)),
        **path,
    )


def _top_speed(spec: VideoSpec, r: float) -> float:
    """MAX_STEP diameters a frame, in pixels per second."""
    return MAX_STEP * 2 * r * float(spec.rate)


def _velocity(rng: np.random.Generator, spec: VideoSpec, r: float, share: tuple[float, float]) -> tuple[float, float]:
    """A random direction; a speed of `share` of the long side per second, but at most _top_speed."""
    speed = min(rng.uniform(*share) * max(spec.width, spec.height), _top_speed(spec, r))
    return tuple(map(float, speed * _unit(rng.uniform(0, 2 * math.pi))))


def _tracking_movers(rng, spec: VideoSpec, colours: list, seconds: float, first_id: int) -> list[Mover]:
    """A shot's objects. Of up to OVERLAP_TRIES draws, the first in which no two objects overlap for longer than
    MAX_OVERLAP_S (or else the one whose longest overlap is shortest): occlusions stay brief."""
    lo, hi = spec.object_range()
    count = int(rng.integers(lo, hi + 1))
    best = (math.inf, [])
    for _ in range(OVERLAP_TRIES):
        movers = _tracking_draw(rng, spec, colours, seconds, first_id, count)
        best = min(best, (_longest_overlap(movers, spec, seconds), movers), key=lambda pair: pair[0])
        if best[0] <= MAX_OVERLAP_S:
            break
    return best[1]


def _tracking_draw(rng, spec: VideoSpec, colours: list, seconds: float, first_id: int, count: int) -> list[Mover]:
    """Mostly bouncers, about one in four entering or leaving the frame, some bouncers crossing in pairs."""
    w, h = spec.width, spec.height
    smallest = max(DIAMETER[1], DIAMETER[0] * max(w, h))
    biggest = max(smallest, DIAMETER[2] * min(w, h))
    movers, fills = [], []
    for k in range(count):
        label = LABELS[rng.integers(len(LABELS))]
        r = math.exp(rng.uniform(math.log(smallest), math.log(biggest))) / 2  # log-uniform, like shapes.py
        fill = _colour(rng, colours, fills)
        fills.append(np.array(fill, dtype=np.float64))
        path = _wanderer(rng, spec, r, seconds) if rng.random() < 0.25 else _bouncer(rng, spec, r)
        movers.append(_mover(rng, first_id + k, label, r, fill, **path))
    return _cross_pairs(rng, spec, movers, seconds)


def _bouncer(rng: np.random.Generator, spec: VideoSpec, r: float) -> dict:
    anchor = (float(rng.uniform(r, spec.width - r)), float(rng.uniform(r, spec.height - r)))
    return {"anchor": anchor, "t_anchor": 0.0, "velocity": _velocity(rng, spec, r, (0.05, 0.3)), "bounce": True}


def _wanderer(rng: np.random.Generator, spec: VideoSpec, r: float, seconds: float) -> dict:
    """A straight, fast path whose centre crosses a frame edge, in or out, in the middle 60% of the shot."""
    w, h = spec.width, spec.height
    edge, along = int(rng.integers(4)), rng.uniform(0.15, 0.85)
    point, inward = [((along * w, 0), 90), ((w, along * h), 180), ((along * w, h), 270), ((0, along * h), 0)][edge]
    angle = math.radians(inward) + rng.uniform(-0.6, 0.6) + (math.pi if rng.random() < 0.5 else 0.0)  # or leaving
    velocity = tuple(map(float, rng.uniform(0.7, 1.0) * _top_speed(spec, r) * _unit(angle)))
    return {"anchor": point, "t_anchor": float(rng.uniform(0.2, 0.8) * seconds), "velocity": velocity, "bounce": False}


def _cross_pairs(rng: np.random.Generator, spec: VideoSpec, movers: list[Mover], seconds: float) -> list[Mover]:
    """Send about a third of the bouncers, in pairs, through a common point at a common time, at top speed from
    different directions: they cross there, one briefly covering the other."""
    bouncers = [k for k, m in enumerate(movers) if m.bounce]
    pairs = max(1, len(bouncers) // 3) if len(bouncers) >= 2 else 0
    chosen = rng.permutation(bouncers)[: 2 * pairs]
    for a, b in zip(chosen[0::2], chosen[1::2], strict=True):
        meet = np.array([rng.uniform(0.25, 0.75) * spec.width, rng.uniform(0.25, 0.75) * spec.height])
        t_meet = float(rng.uniform(0.2, 0.8) * seconds)
        offset = rng.uniform(0, 0.6) * movers[a].r * _unit(rng.uniform(0, 2 * math.pi))  # meet head on or glance
        heading = rng.uniform(0, 2 * math.pi)
        for k, point, angle in ((a, meet + offset, heading), (b, meet, heading + math.pi + rng.uniform(-1.2, 1.2))):
            velocity = tuple(map(float, _top_speed(spec, movers[k].r) * _unit(angle)))
            movers[k] = _replace(movers[k], anchor=tuple(map(float, point)), t_anchor=t_meet, velocity=velocity)
    return movers


def _longest_overlap(movers: list[Mover], spec: VideoSpec, seconds: float, step: float = 0.05) -> float:
    """The longest time, in seconds, that two of the movers overlap (centres closer than 0.8 of their radii's sum,
    in samples `step` s apart)."""
    times = np.arange(0.0, seconds, step)
    centres = [np.stack(m.centre(times, spec.width, spec.height), axis=-1) for m in movers]
    longest = 0
    for a, b in itertools.combinations(range(len(movers)), 2):
        close = np.linalg.norm(centres[a] - centres[b], axis=-1) < 0.8 * (movers[a].r + movers[b].r)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], close.astype(np.int8), [0]])))  # starts, ends of runs
        longest = max(longest, int((edges[1::2] - edges[0::2]).max(initial=0)))
    return longest * step


def _unit(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)])


def _replace(mover: Mover, **changes) -> Mover:
    return Mover(**{**asdict(mover), **changes})


def _classification_movers(rng, spec: VideoSpec, colours: list, label: str, seconds: float, first_id: int):
    """Small distractors of other classes at the back, then the shot's big dominant shape, drifting slowly."""
    w, h = spec.width, spec.height
    short = min(w, h)
    movers, fills = [], []
    for k in range(spec.distractors):
        other = str(rng.choice([name for name in LABELS if name != label]))
        r = rng.uniform(0.06, 0.12) * short / 2
        fill = _colour(rng, colours, fills)
        fills.append(np.array(fill, dtype=np.float64))
        movers.append(_mover(rng, first_id + k, other, r, fill, **_bouncer(rng, spec, r)))
    r = rng.uniform(*DOMINANT) * short / 2
    fill = _colour(rng, colours, fills)
    anchor = (float(rng.uniform(r, w - r)), float(rng.uniform(r, h - r)))
    speed, angle = rng.uniform(0.02, 0.08) * short, rng.uniform(0, 2 * math.pi)
    path = {"anchor": anchor, "t_anchor": 0.0, "velocity": tuple(map(float, speed * _unit(angle))), "bounce": True}
    dominant = _mover(rng, first_id + spec.distractors, label, r, fill, **path)
    return [*movers, _replace(dominant, spin=dominant.spin * 0.4, sway=dominant.sway * 0.2)]


# -- rendering


def render_frames(spec: VideoSpec, plan: list[Shot] | None = None) -> Iterator[tuple[np.ndarray, dict]]:
    """Each frame as an RGB uint8 array (height, width, 3), before encoding, and its ground truth (see GroundTruth),
    one at a time. `plan`: plan_video(spec), where the caller has it already."""
    rate = spec.rate
    for shot in plan_video(spec) if plan is None else plan:
        bg, _ = background(spec.width, spec.height, shot.background_key)
        for index in range(shot.start, shot.end):
            t = float((index - shot.start) / rate)
            pixels, objects, hidden = draw_frame(bg, shot.movers, t)
            if spec.noise > 0:
                noise = shapes._noise(np.random.default_rng([spec.seed, 3, index]), spec.noise, pixels.shape)
                pixels = np.clip(pixels + noise, 0, 255).astype(np.uint8)
            truth = {"index": index, "time_s": float(index / rate), "shot": shot.index}
            yield pixels, {**truth, "objects": objects, "hidden": hidden}


def draw_frame(bg: np.ndarray, movers: tuple[Mover, ...], t: float) -> tuple[np.ndarray, list[dict], list[dict]]:
    """The movers drawn over the background at time t, back to front, and who shows where (objects, hidden)."""
    h, w = bg.shape[:2]
    pixels, owner = bg.copy(), np.zeros((h, w), np.uint8)
    drawn = []
    for depth, mover in enumerate(movers, start=1):
        mask, x0, y0 = mover.mask(t, w, h)
        ys, xs = _clip(y0, mask.shape[0], h), _clip(x0, mask.shape[1], w)
        inside = mask[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        if not inside.any():  # off the frame
            continue
        pixels[ys, xs][inside] = mover.fill
        owner[ys, xs][inside] = depth
        drawn.append((depth, mover, ys, xs, inside, int(mask.sum())))
    objects, hidden = [], []
    for depth, mover, ys, xs, inside, area in drawn:  # area: all its pixels, those off the frame included
        seen = owner[ys, xs] == depth
        count = int(seen.sum())
        if count == 0:
            continue
        entry = {
            "id": mover.track_id,
            "label": mover.label,
            "box": _tight_box(seen, xs.start, ys.start),
            "full_box": _tight_box(inside, xs.start, ys.start),
            "visible": round(count / area, 4),
            "in_frame": round(int(inside.sum()) / area, 4),
            "depth": depth - 1,
        }
        (objects if count >= MIN_VISIBLE * area else hidden).append(entry)
    return pixels, objects, hidden


def _clip(start: int, length: int, limit: int) -> slice:
    """The part of [start, start + length) that lies in [0, limit), possibly empty."""
    lo = min(max(0, start), limit)
    return slice(lo, max(lo, min(limit, start + length)))


def _tight_box(mask: np.ndarray, x_off: int, y_off: int) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()) + x_off, int(ys.min()) + y_off, int(xs.max()) + 1 + x_off, int(ys.max()) + 1 + y_off]


# -- encoding


def _open_stream(container, spec: VideoSpec):
    encoder = CODECS[spec.codec][0]
    options = {"preset": "veryfast", "crf": "18"} if encoder == "libx264" else {}
    stream = container.add_stream(encoder, rate=spec.rate, options=options)
    stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
    stream.codec_context.time_base = 1 / spec.rate
    if encoder == "mpeg4":  # its default 200 kb/s smears small shapes
        stream.bit_rate = max(1_000_000, int(spec.width * spec.height * float(spec.rate) * 0.3))
    return stream


def make_video(path: Path, spec: VideoSpec) -> GroundTruth:
    """Render the video to `path` (its suffix is the container), frame by frame, and return its ground truth."""
    path = Path(path)
    spec.check(path)
    rate = spec.rate
    truth = GroundTruth(
        name=path.name,
        kind=spec.kind,
        codec=spec.codec,
        container=path.suffix.lower().lstrip("."),
        width=spec.width,
        height=spec.height,
        fps=float(rate),
        fps_fraction=str(rate),
        frame_count=spec.frame_count,
        duration_s=float(spec.frame_count / rate),
        seed=spec.seed,
        labels=list(LABELS),
        spec=spec.as_json(),
    )
    tracks: dict[int, dict] = {}
    plan = plan_video(spec)
    with av.open(str(path), "w") as container:
        stream = _open_stream(container, spec)
        for pixels, frame_truth in render_frames(spec, plan):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = frame_truth["index"], 1 / rate  # decoded frame.time == index / fps
            container.mux(stream.encode(frame))
            truth.frames.append(frame_truth)
            _note_tracks(tracks, frame_truth)
        container.mux(stream.encode(None))
    truth.shots = [_shot_json(shot, rate) for shot in plan]
    truth.tracks = sorted(tracks.values(), key=lambda track: track["id"])
    return truth


def _note_tracks(tracks: dict[int, dict], frame: dict) -> None:
    for obj in frame["objects"]:
        track = tracks.setdefault(
            obj["id"], {"id": obj["id"], "label": obj["label"], "shot": frame["shot"], "first_frame": frame["index"]}
        )
        track["last_frame"] = frame["index"]
        track["frames"] = track.get("frames", 0) + 1


def _shot_json(shot: Shot, rate: Fraction) -> dict:
    return {
        "index": shot.index,
        "start_frame": shot.start,
        "end_frame": shot.end,
        "start_s": float(shot.start / rate),
        "end_s": float(shot.end / rate),
        "label": shot.label,
    }


def write_videos(out_dir: Path, n: int, seed: int, container: str | None = None, **spec) -> list[GroundTruth]:
    """Write n videos named 00000.mp4 ... and their ground truth 00000.json ... into out_dir.

    `spec` holds VideoSpec fields (seed excepted); each video gets its own seed, drawn from `seed`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = np.random.default_rng(seed).integers(2**31, size=n)
    written = []
    for i, video_seed in enumerate(seeds):
        video = VideoSpec(seed=int(video_seed), **spec)
        suffix = container or CODECS[video.codec][1][0].lstrip(".")
        truth = make_video(out_dir / f"{i:05d}.{suffix.lstrip('.')}", video)
        truth.save(out_dir / f"{i:05d}.json")
        written.append(truth)
    return written


def _size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def _objects(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    return int(lo), int(hi or lo)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=_size, default=(640, 480), help="WIDTHxHEIGHT, even sides")
    parser.add_argument("--fps", type=Fraction, default=Fraction(30), help="e.g. 30, 24, 30000/1001")
    parser.add_argument("--codec", choices=sorted(CODECS), default="h264")
    parser.add_argument("--container", help="file suffix: mp4 or mov for h264, avi or mp4 for mpeg4")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--objects", type=_objects, default=(2, 5), help="per shot: N or LO-HI (tracking)")
    parser.add_argument("--distractors", type=int, default=0, help="small other shapes per shot (classification)")
    parser.add_argument("--noise", type=float, default=2.0, help="sigma of per-frame pixel noise")
    parser.add_argument("--kind", choices=KINDS, default="tracking")
    args = parser.parse_args(argv)
    (width, height), fps = args.size, args.fps
    fields = {"width": width, "height": height, "fps": fps, "codec": args.codec, "seconds": args.seconds}
    fields |= {"shots": args.shots, "objects": args.objects, "noise": args.noise, "kind": args.kind}
    for truth in write_videos(args.out_dir, args.n, args.seed, args.container, distractors=args.distractors, **fields):
        print(
            f"{args.out_dir / truth.name}\t{truth.width}x{truth.height}\t{truth.fps_fraction} fps"
            f"\t{truth.frame_count} frames\t{len(truth.shots)} shots",
            flush=True,
        )


if __name__ == "__main__":
    main()
