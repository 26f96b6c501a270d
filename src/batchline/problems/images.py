"""Image inputs shared by the vision problems: extension check, fast decode, resize to the model's size."""

from __future__ import annotations

import io
from pathlib import PurePosixPath

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from batchline.errors import InvalidArgument
from batchline.models.manifest import InputSpec

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif")
_LETTERBOX_FILL = 114  # the grey YOLO-style exports pad with


def check_image_extension(uri: str) -> None:
    suffix = PurePosixPath(uri.split("?")[0]).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise InvalidArgument(
            f"unsupported file extension {suffix or '(none)'!r}; images must be {', '.join(IMAGE_EXTENSIONS)}"
        )


def decode_image(data: bytes, spec: InputSpec) -> np.ndarray:
    """Decode and resize to spec.size; uint8 HxWx3 in the model's channel order."""
    if not data:
        raise InvalidArgument("image cannot be decoded: the file is empty (0 bytes)")
    height, width = spec.size
    try:
        image = _decode_jpeg(data, height, width) if data[:2] == b"\xff\xd8" else _decode_other(data, height, width)
        array = np.asarray(_resize(image, spec), dtype=np.uint8)
    except UnidentifiedImageError:
        raise InvalidArgument("image cannot be decoded: the data is not a JPEG, PNG or GIF image") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidArgument(f"image cannot be decoded: {exc}") from None
    return array[..., ::-1] if spec.channel_order == "bgr" else array


def _decode_jpeg(data: bytes, height: int, width: int) -> Image.Image:
    # libjpeg-turbo's DCT scaling decodes straight to the smallest size >= the model's: 3-4x less work.
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=height, min_width=width, strict=True)
    except ValueError:
        return _decode_other(data, height, width)  # e.g. CMYK or arithmetic coding: let Pillow try
    return Image.fromarray(pixels)


def _decode_other(data: bytes, height: int, width: int) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (width, height))
    image.load()
    return image.convert("RGB")


def _resize(image: Image.Image, spec: InputSpec) -> Image.Image:
    height, width = spec.size
    if spec.resize == "stretch":
        return image.resize((width, height), Image.Resampling.BILINEAR)
    scale_fn = max if spec.resize == "center_crop" else min
    scale = scale_fn(width / image.width, height / image.height)
    scaled = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(scaled, Image.Resampling.BILINEAR)
    left, top = (scaled[0] - width) // 2, (scaled[1] - height) // 2
    if spec.resize == "center_crop":
        return image.crop((left, top, left + width, top + height))
    canvas = Image.new("RGB", (width, height), (_LETTERBOX_FILL,) * 3)
    canvas.paste(image, (-left, -top))
    return canvas


class Normalizer:
    """Scale, centre and lay out one decoded image as the model wants it (run in the decode threads).

    The result is contiguous, so that stacking a batch in the inference thread is a plain copy.
    """

    def __init__(self, spec: InputSpec):
        std = np.asarray(spec.std, dtype=np.float32)
        self.channels_first = spec.layout == "nchw"
        shape = (3, 1, 1) if self.channels_first else (1, 1, 3)
        self.factor = (np.float32(spec.scale) / std).reshape(shape)
        self.offset = (np.asarray(spec.mean, dtype=np.float32) / std).reshape(shape)
        self.to_float = spec.dtype == "float32"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.channels_first:  # transpose while the pixels are still 1-byte
            image = np.ascontiguousarray(image.transpose(2, 0, 1))
        if not self.to_float:
            return image
        tensor = np.multiply(image, self.factor, dtype=np.float32)
        tensor -= self.offset
        return tensor


def stack(items: list[np.ndarray]) -> np.ndarray:
    """One contiguous batch tensor from preprocessed images."""
    return np.stack(items)
