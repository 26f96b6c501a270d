"""Synthetic shape images (numpy + Pillow only) for the example shapes classifier.

Every image shows one filled shape -- circle, square, triangle or star -- on a random canvas:
random size and aspect ratio, a plain / gradient / noisy / cluttered background, a shape colour
that contrasts with it, random scale, position and rotation, then optional pixel noise and blur.

Usage: python scripts/shapes.py OUT_DIR --n 12 --seed 0
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

LABELS = ["circle", "square", "triangle", "star"]

MIN_CONTRAST = 110.0  # minimum RGB distance between the shape colour and the background colour(s)


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


def _shape_colour(rng: np.random.Generator, avoid: list[np.ndarray]) -> tuple[int, int, int]:
    while True:  # rejection sampling; a far-enough colour always exists in the RGB cube
        colour = _colour(rng)
        if min(np.linalg.norm(colour - a) for a in avoid) >= MIN_CONTRAST:
            return tuple(int(c) for c in colour)


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
    draw = ImageDraw.Draw(img)
    if label == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(_outline(label, cx, cy, r, rng.uniform(0, 2 * math.pi), rng), fill=fill)

    if rng.random() < 0.5:
        noisy = np.asarray(img, dtype=np.float32) + _noise(rng, rng.uniform(3, 20), (h, w, 3))
        img = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    return img


def pick_format(rng: np.random.Generator) -> tuple[str, dict]:
    """A random file format: ("jpg", {"quality": 30..95}) or ("png", {})."""
    if rng.random() < 0.5:
        return "jpg", {"quality": int(rng.integers(30, 96))}
    return "png", {}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path, label in write_dataset(args.out_dir, args.n, args.seed):
        print(f"{path}\t{label}")


if __name__ == "__main__":
    main()
