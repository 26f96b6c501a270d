"""Synthetic shape images (numpy + Pillow only) for the example shapes classifier and detector.

Classifier images (make_image, write_dataset) show one filled shape -- circle, square, triangle or
star -- on a random canvas: random size and aspect ratio, a plain / gradient / noisy / cluttered
background, a shape colour that contrasts with it, random scale, position and rotation, then optional
pixel noise and blur.

Detector scenes (make_scene, write_scenes) put 1-8 such shapes on one 240-640 px canvas, from small
(12 px, at least 4% of the long side) to half the short side. Later shapes may partly cover earlier
ones, but every shape keeps most of its pixels visible; its box is the tight box of those pixels.

Usage: python scripts/shapes.py OUT_DIR --n 12 --seed 0 [--scenes]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

LABELS = ["circle", "square", "triangle", "star"]

MIN_CONTRAST = 110.0  # minimum RGB distance between the shape colour and the background colour(s)
SCENE_SIDES = (240, 640)  # range of a scene's width and height, in pixels
MAX_SHAPES = 8
MIN_SHAPE, MIN_SHAPE_SHARE = 12, 0.04  # a shape's diameter is at least 12 px and 4% of the scene's long side
MIN_VISIBLE = 0.7  # share of a shape's pixels that later, overlapping shapes must leave visible
PLACE_TRIES = 20  # attempts at placing one shape before the scene goes without it

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels of the image; x1, y1 exclusive


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float64)


def _noise(rng: np.random.Generator, sigma: float, shape: tuple[int, ...]) -> np.ndarray:
    """Gaussian pixel noise (float32: this is the hot spot of image generation)."""
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)


def _background(rng: np.random.Generator, w: int, h: int) -> tuple[Image.Image, list[np.ndarray]]:
    """Return a background and the colours the shape must stand out against."""
    kind = rng.choice(["plain", "gradient", "noise", "clutter"])
    base = _colour(rng)
    if kind == "gradient":
        end = _colour(rng)
        phi = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:h, 0:w]
        t = xs * math.cos(phi) + ys * math.sin(phi)
        t = (t - t.min()) / max(np.ptp(t), 1e-9)
        pixels = base * (1 - t[..., None]) + end * t[..., None]
        return Image.fromarray(pixels.astype(np.uint8)), [base, end]
    pixels = np.broadcast_to(base, (h, w, 3))
    if kind == "noise":
        pixels = pixels + _noise(rng, rng.uniform(10, 40), (h, w, 3))
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if kind == "clutter":
        _clutter(rng, img)
    return img, [base]


def _clutter(rng: np.random.Generator, img: Image.Image) -> None:
    """Scatter short thin lines and small dots in random colours."""
    draw = ImageDraw.Draw(img)
    w, h = img.size
    short = min(w, h)
    for _ in range(rng.integers(5, 40)):
        colour = tuple(int(c) for c in _colour(rng))
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        if rng.random() < 0.5:
            length, angle = rng.uniform(0.03, 0.15) * short, rng.uniform(0, 2 * math.pi)
            end = (x + length * math.cos(angle), y + length * math.sin(angle))
            draw.line([(x, y), end], fill=colour, width=int(rng.integers(1, 3)))
        else:
            r = rng.uniform(1, 3)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)


def _shape_colour(
    rng: np.random.Generator, avoid: list[np.ndarray], tries: int | None = None
) -> tuple[int, int, int] | None:
    """Rejection sampling; None after `tries` misses (without a limit: one far-enough colour always exists)."""
    for _ in itertools.count() if tries is None else range(tries):
        colour = _colour(rng)
        if min(np.linalg.norm(colour - a) for a in avoid) >= MIN_CONTRAST:
            return tuple(int(c) for c in colour)
    return None


def _outline(label: str, cx: float, cy: float, r: float, theta: float, rng: np.random.Generator):
    """Vertices of a polygon with circumradius r centred on (cx, cy) and rotated by theta."""
    if label == "star":  # 5 outer points alternating with 5 inner ones
        inner = rng.uniform(0.35, 0.5)
        radii = [r if k % 2 == 0 else r * inner for k in range(10)]
    else:
        radii = [r] * {"square": 4, "triangle": 3}[label]
    n = len(radii)
    return [
        (cx + rk * math.cos(theta + 2 * math.pi * k / n), cy + rk * math.sin(theta + 2 * math.pi * k / n))
        for k, rk in enumerate(radii)
    ]


def _vertices(label: str, cx: float, cy: float, r: float, rng: np.random.Generator) -> list | None:
    """A randomly rotated polygon outline, or None for a circle."""
    return None if label == "circle" else _outline(label, cx, cy, r, rng.uniform(0, 2 * math.pi), rng)


def _draw(img: Image.Image, cx: float, cy: float, r: float, vertices: list | None, fill) -> None:
    draw = ImageDraw.Draw(img)
    if vertices is None:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(vertices, fill=fill)


def _degrade(rng: np.random.Generator, img: Image.Image, max_blur: float) -> Image.Image:
    """Optional pixel noise, then optional Gaussian blur."""
    if rng.random() < 0.5:
        w, h = img.size
        noisy = np.asarray(img, dtype=np.float32) + _noise(rng, rng.uniform(3, 20), (h, w, 3))
        img = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, max_blur)))
    return img


def make_image(rng: np.random.Generator, label: str) -> Image.Image:
    """One RGB image showing a single shape of the given label."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; expected one of {LABELS}")
    short = int(rng.integers(64, 401))
    aspect = math.exp(rng.uniform(-math.log(1.5), math.log(1.5)))  # long side at most 1.5x the short
    w, h = (min(400, round(short * aspect)), short) if aspect >= 1 else (short, min(400, round(short / aspect)))
    img, avoid = _background(rng, w, h)
    fill = _shape_colour(rng, avoid)

    r = rng.uniform(0.25, 0.8) * min(w, h) / 2  # shape spans 25-80% of the short side
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)  # fully inside the canvas
    _draw(img, cx, cy, r, _vertices(label, cx, cy, r, rng), fill)
    return _degrade(rng, img, max_blur=2.0)


@dataclass
class _Scene:
    """A canvas being filled with shapes; owner[y, x] is the shape showing there (1-based; 0 = background)."""

    img: Image.Image
    background: list[np.ndarray]  # colours every shape must contrast with
    owner: np.ndarray
    labels: list[str] = field(default_factory=list)
    fills: list[np.ndarray] = field(default_factory=list)
    areas: list[int] = field(default_factory=list)  # pixels of each shape as drawn, before any later overlap

    def add(self, rng: np.random.Generator) -> None:
        """Draw one random shape on top; skipped if PLACE_TRIES placements all hide too much of earlier ones."""
        h, w = self.owner.shape
        visible = np.bincount(self.owner.ravel(), minlength=len(self.labels) + 1)[1:]
        smallest = max(MIN_SHAPE, MIN_SHAPE_SHARE * max(w, h))
        for _ in range(PLACE_TRIES):
            label = LABELS[rng.integers(len(LABELS))]
            r = math.exp(rng.uniform(math.log(smallest), math.log(min(w, h) / 2))) / 2  # log-uniform diameter
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            vertices = _vertices(label, cx, cy, r, rng)
            mask = Image.new("L", (w, h))
            _draw(mask, cx, cy, r, vertices, 255)  # same rasteriser as on the image: the mask is exact
            covered = np.asarray(mask) > 0
            hidden = np.bincount(self.owner[covered], minlength=len(self.labels) + 1)[1:]
            if np.any(visible - hidden < MIN_VISIBLE * np.asarray(self.areas)):
                continue
            # Contrast with the shapes it covers too, or their shared edge would vanish.
            fill = _shape_colour(rng, self.background + [self.fills[j] for j in np.flatnonzero(hidden)], tries=50)
            if fill is None:
                continue
            _draw(self.img, cx, cy, r, vertices, fill)
            self.owner[covered] = len(self.labels) + 1
            self.labels.append(label)
            self.fills.append(np.array(fill, dtype=np.float64))
            self.areas.append(int(covered.sum()))
            return

    def objects(self) -> list[tuple[str, Box]]:
        """Each shape's label and the tight box of its visible pixels."""
        found = []
        for k, label in enumerate(self.labels, start=1):
            ys, xs = np.nonzero(self.owner == k)
            found.append((label, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)))
        return found


def make_scene(rng: np.random.Generator) -> tuple[Image.Image, list[tuple[str, Box]]]:
    """One RGB scene of 1-MAX_SHAPES shapes, and each shape's label and box (x0, y0, x1, y1 in pixels)."""
    w, h = (int(side) for side in rng.integers(SCENE_SIDES[0], SCENE_SIDES[1] + 1, size=2))
    img, background = _background(rng, w, h)
    scene = _Scene(img, background, np.zeros((h, w), np.uint8))
    for _ in range(rng.integers(1, MAX_SHAPES + 1)):
        scene.add(rng)
    return _degrade(rng, scene.img, max_blur=1.2), scene.objects()  # less blur: shapes can be 12 px


def pick_format(rng: np.random.Generator) -> tuple[str, dict]:
    """A random file format: ("jpg", {"quality": 30..95}) or ("png", {})."""
    if rng.random() < 0.5:
        return "jpg", {"quality": int(rng.integers(30, 96))}
    return "png", {}


def encode(img: Image.Image, rng: np.random.Generator) -> tuple[str, bytes]:
    """The image as a file of a random format (see pick_format): (extension, bytes)."""
    ext, options = pick_format(rng)
    buf = io.BytesIO()
    img.save(buf, format="JPEG" if ext == "jpg" else "PNG", **options)
    return ext, buf.getvalue()


def write_dataset(out_dir: Path, n: int, seed: int) -> list[tuple[Path, str]]:
    """Write n images named like 00012_star.jpg into out_dir; deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = rng.permutation(np.resize(LABELS, n))  # balanced, in random order
    written = []
    for i, label in enumerate(labels):
        img = make_image(rng, str(label))
        ext, options = pick_format(rng)
        path = out_dir / f"{i:05d}_{label}.{ext}"
        img.save(path, format="JPEG" if ext == "jpg" else "PNG", **options)
        written.append((path, str(label)))
    return written


def write_scenes(out_dir: Path, n: int, seed: int) -> list[tuple[Path, list[tuple[str, Box]]]]:
    """Write n scenes named like 00012.jpg into out_dir; deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(n):
        img, objects = make_scene(rng)
        ext, data = encode(img, rng)
        path = out_dir / f"{i:05d}.{ext}"
        path.write_bytes(data)
        written.append((path, objects))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenes", action="store_true", help="detector scenes; prints each file's objects as JSON")
    args = parser.parse_args()
    if args.scenes:
        for path, objects in write_scenes(args.out_dir, args.n, args.seed):
            print(f"{path}\t{json.dumps(objects)}")
        return
    for path, label in write_dataset(args.out_dir, args.n, args.seed):
        print(f"{path}\t{label}")


if __name__ == "__main__":
    main()
