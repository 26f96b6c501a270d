"""Draw annotations onto their image, so that a user can look at predictions instead of reading them."""

from __future__ import annotations

import colorsys
import hashlib
import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from batchline.domain.annotations import Annotation


def render(image_data: bytes, annotations: Sequence[Annotation]) -> bytes:
    """PNG bytes: each box outlined in its label's colour with "label score" above it; labels without a box
    (classification) are listed in the top-left corner."""
    image = Image.open(io.BytesIO(image_data)).convert("RGB")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, min(image.size) // 30))
    line_width = max(2, min(image.size) // 200)
    unboxed = 0
    for annotation in sorted(annotations, key=lambda a: a.score):  # best drawn last, on top
        colour = _colour(annotation.label)
        caption = f"{annotation.label} {annotation.score:.2f}"
        if annotation.box is None:
            _caption(draw, (4, 4 + unboxed * (font.size + 6)), caption, colour, font)
            unboxed += 1
            continue
        x_min, y_min, x_max, y_max = annotation.box
        corners = (x_min * image.width, y_min * image.height, x_max * image.width, y_max * image.height)
        draw.rectangle(corners, outline=colour, width=line_width)
        _caption(draw, (corners[0], max(0, corners[1] - font.size - 6)), caption, colour, font)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _caption(draw: ImageDraw.ImageDraw, at: tuple[float, float], text: str, colour: tuple, font) -> None:
    left, top, right, bottom = draw.textbbox(at, text, font=font)
    draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=colour)
    draw.text(at, text, fill=(0, 0, 0) if sum(colour) > 380 else (255, 255, 255), font=font)


def _colour(label: str) -> tuple[int, int, int]:
    """A bright hue of its own for each label, the same in every image (Python's hash() changes between runs)."""
    hue = int.from_bytes(hashlib.md5(label.encode()).digest()[:2]) / 65536
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 0.95))
