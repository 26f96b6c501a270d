"""Draw predictions onto their image (or a video's contact sheet), so that a user can look at them instead of
reading them."""

from __future__ import annotations

import colorsys
import hashlib
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from batchline.domain.predictions import Classification, Detection, Detections, Label, VideoTracks


def render(image_data: bytes, prediction: Classification | Detections) -> bytes:
    """PNG bytes: each box outlined in its label's colour with "label score" above it; a classifier's labels
    are listed in the top-left corner."""
    image = Image.open(io.BytesIO(image_data)).convert("RGB")
    boxes = prediction.boxes if isinstance(prediction, Detections) else ()
    draw_boxes(image, boxes, labels=prediction.labels if isinstance(prediction, Classification) else ())
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def draw_boxes(
    image: Image.Image, boxes: Sequence[Detection], labels: Sequence[Label] = (), names: Sequence[str] = ()
) -> None:
    """Onto `image`: boxes (best drawn last, on top), each captioned "label score" or by its entry of `names`, and
    labels without a box in the top-left corner."""
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, min(image.size) // 30))
    line_width = max(2, min(image.size) // 200)
    for row, label in enumerate(sorted(labels, key=lambda a: -a.score)):
        _caption(draw, (4, 4 + row * (font.size + 6)), f"{label.label} {label.score:.2f}", _colour(label.label), font)
    captions = list(names) or [f"{found.label} {found.score:.2f}" for found in boxes]
    for found, caption in sorted(zip(boxes, captions, strict=True), key=lambda pair: pair[0].score):
        colour = _colour(found.label)
        x_min, y_min, x_max, y_max = found.box
        corners = (x_min * image.width, y_min * image.height, x_max * image.width, y_max * image.height)
        draw.rectangle(corners, outline=colour, width=line_width)
        _caption(draw, (corners[0], max(0, corners[1] - font.size - 6)), caption, colour, font)


def _caption(draw: ImageDraw.ImageDraw, at: tuple[float, float], text: str, colour: tuple, font) -> None:
    left, top, right, bottom = draw.textbbox(at, text, font=font)
    draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=colour)
    draw.text(at, text, fill=(0, 0, 0) if sum(colour) > 380 else (255, 255, 255), font=font)


def _colour(label: str) -> tuple[int, int, int]:
    """A bright hue of its own for each label, the same in every image (Python's hash() changes between runs)."""
    hue = int.from_bytes(hashlib.md5(label.encode()).digest()[:2]) / 65536
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 0.95))


def contact_sheet(video: Path, prediction: VideoTracks, frames: int = 12, width: int = 320) -> bytes:
    """PNG bytes: `frames` frames of the video spread over its tracks' time, each with the boxes tracked there,
    captioned "#id label", tiled four across."""
    import av  # extra [video]

    times = sorted({box.time for track in prediction.tracks for box in track.boxes})
    picked = [times[round(i * (len(times) - 1) / max(1, frames - 1))] for i in range(min(frames, len(times)))]
    tiles = [_tile(image, prediction, time, width) for time, image in _frames_at(av, video, picked)]
    if not tiles:
        raise ValueError(f"{video} has no frames at the tracks' times")
    columns = min(4, len(tiles))
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * tiles[0].width, rows * tiles[0].height), (0, 0, 0))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * tile.width, (i // columns) * tile.height))
    out = io.BytesIO()
    sheet.save(out, format="PNG")
    return out.getvalue()


def _frames_at(av: Any, video: Path, times: list[float]) -> Iterator[tuple[float, Image.Image]]:
    """The decoded frame at or just after each time (times ascending), decoding forward once."""
    wanted = iter(times)
    target = next(wanted, None)
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            while target is not None and frame.time is not None and frame.time >= target - 1e-3:
                yield target, frame.to_image()
                target = next(wanted, None)
            if target is None:
                return


def _tile(image: Image.Image, prediction: VideoTracks, time: float, width: int) -> Image.Image:
    image = image.convert("RGB").resize((width, round(image.height * width / image.width)))
    found = [(track, box) for track in prediction.tracks for box in track.boxes if abs(box.time - time) < 1e-6]
    boxes = [Detection(track.label, box.score, box.box) for track, box in found]
    draw_boxes(image, boxes, names=[f"#{track.id} {track.label}" for track, _ in found])
    ImageDraw.Draw(image).text((4, image.height - 14), f"{time:.2f} s", fill=(255, 255, 255))
    return image
