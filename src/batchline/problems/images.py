"""Image inputs shared by the vision problems: extension check, fast decode, resize to the model's size."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from batchline.errors import InvalidArgument
from batchline.models.manifest import InputSpec, Manifest
from batchline.problems.base import Problem

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif")
_LETTERBOX_FILL = 114  # the grey YOLO-style exports pad with


def check_image_extension(uri: str) -> None:
    suffix = PurePosixPath(uri.split("?")[0]).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise InvalidArgument(
            f"unsupported file extension {suffix or '(none)'!r}; images must be {', '.join(IMAGE_EXTENSIONS)}"
        )


@dataclass(frozen=True)
class Geometry:
    """Where the original image lies in the model's input: model pixel = original pixel * scale + pad."""

    width: int  # of the original image
    height: int
    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int

    @classmethod
    def fit(cls, width: int, height: int, spec: InputSpec) -> Geometry:
        target_h, target_w = spec.size
        if spec.resize == "stretch":
            return cls(width, height, target_w / width, target_h / height, 0, 0)
        scale = (max if spec.resize == "center_crop" else min)(target_w / width, target_h / height)
        scaled_w, scaled_h = max(1, round(width * scale)), max(1, round(height * scale))
        return cls(
            width, height, scaled_w / width, scaled_h / height, (target_w - scaled_w) // 2, (target_h - scaled_h) // 2
        )

    @property
    def scaled_size(self) -> tuple[int, int]:
        return max(1, round(self.width * self.scale_x)), max(1, round(self.height * self.scale_y))

    @property
    def window(self) -> tuple[int, int, int, int]:
        """Left, top, right, bottom of the picture in the model's input, in pixels (inside the letterbox padding)."""
        scaled_w, scaled_h = self.scaled_size
        return self.pad_x, self.pad_y, self.pad_x + scaled_w, self.pad_y + scaled_h


def decode_image(data: bytes, spec: InputSpec) -> tuple[np.ndarray, Geometry]:
    """Decode and resize to spec.size: uint8 HxWx3 in the model's channel order, and how it was fitted."""
    if not data:
        raise InvalidArgument("image cannot be decoded: the file is empty (0 bytes)")
    try:
        image, geometry = _decode_jpeg(data, spec) if data[:2] == b"\xff\xd8" else _decode_other(data, spec)
        array = np.asarray(_resize(image, geometry, spec), dtype=np.uint8)
    except UnidentifiedImageError:
        raise InvalidArgument("image cannot be decoded: the data is not a JPEG, PNG or GIF image") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidArgument(f"image cannot be decoded: {exc}") from None
    return (array[..., ::-1] if spec.channel_order == "bgr" else array), geometry


def _decode_jpeg(data: bytes, spec: InputSpec) -> tuple[Image.Image, Geometry]:
    # libjpeg-turbo's DCT scaling decodes straight to the smallest size >= what the resize needs: 3-4x less work.
    try:
        height, width = simplejpeg.decode_jpeg_header(data)[:2]
        geometry = Geometry.fit(width, height, spec)
        scaled_w, scaled_h = geometry.scaled_size
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=scaled_h, min_width=scaled_w, strict=True)
    except ValueError:
        return _decode_other(data, spec)  # e.g. CMYK or arithmetic coding: let Pillow try
    return Image.fromarray(pixels), geometry


def _decode_other(data: bytes, spec: InputSpec) -> tuple[Image.Image, Geometry]:
    image = Image.open(io.BytesIO(data))
    geometry = Geometry.fit(*image.size, spec)
    image.draft("RGB", geometry.scaled_size)
    image.load()
    return image.convert("RGB"), geometry


def _resize(image: Image.Image, geometry: Geometry, spec: InputSpec) -> Image.Image:
    height, width = spec.size
    image = image.resize(geometry.scaled_size, Image.Resampling.BILINEAR)
    if spec.resize == "stretch":
        return image
    if spec.resize == "center_crop":
        left, top = -geometry.pad_x, -geometry.pad_y
        return image.crop((left, top, left + width, top + height))
    canvas = Image.new("RGB", (width, height), (_LETTERBOX_FILL,) * 3)
    canvas.paste(image, (geometry.pad_x, geometry.pad_y))
    return canvas


class Normalizer:
    """Scale, centre and lay out one decoded image as the model wants it, into its row of a batch."""

    def __init__(self, spec: InputSpec):
        std = np.asarray(spec.std, dtype=np.float32)
        self.channels_first = spec.layout == "nchw"
        shape = (3, 1, 1) if self.channels_first else (1, 1, 3)
        self.factor = (np.float32(spec.scale) / std).reshape(shape)
        self.offset = (np.asarray(spec.mean, dtype=np.float32) / std).reshape(shape)
        self.to_float = spec.dtype == "float32"
        height, width = spec.size
        self.shape = (3, height, width) if self.channels_first else (height, width, 3)
        self.dtype = np.dtype(np.float32 if self.to_float else np.uint8)

    def __call__(self, image: np.ndarray, out: np.ndarray) -> None:
        if self.channels_first:  # transpose while the pixels are still 1-byte
            image = np.ascontiguousarray(image.transpose(2, 0, 1))
        if not self.to_float:
            out[...] = image
            return
        np.multiply(image, self.factor, out=out)
        out -= self.offset


class ImageProblem(Problem):
    """What the vision problems share: one image path per CSV row, decoded and preprocessed as the manifest says."""

    row_format = "GCS_FILE_PATH"

    def __init__(self, manifest: Manifest):
        super().__init__(manifest)
        self.normalize = Normalizer(manifest.input)

    def parse_row(self, fields: list[str]) -> str:
        if len(fields) != 1:
            raise ValueError(f"has {len(fields)} columns; {self.name} expects one: {self.row_format}")
        return fields[0].strip()

    def check_input(self, uri: str) -> None:
        check_image_extension(uri)

    @property
    def item_layout(self) -> tuple[tuple[int, ...], np.dtype]:
        return self.normalize.shape, self.normalize.dtype

    def decode_into(self, data: bytes, out: np.ndarray) -> Geometry:
        pixels, geometry = decode_image(data, self.manifest.input)
        self.normalize(pixels, out)
        return geometry
