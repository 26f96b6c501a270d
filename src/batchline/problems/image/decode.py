"""Pictures into model rows: what the bytes are, fast decode, the fit into the model's size, normalisation."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from batchline.errors import InvalidArgument
from batchline.models.manifest import InputSpec, Manifest
from batchline.problems.base import Preprocessor, Source

MAX_IMAGE_BYTES = 30 * 1024 * 1024
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif")
_LETTERBOX_FILL = 114  # the grey YOLO-style exports pad with
_ALLOWED = "JPEG, PNG or GIF"
# What a file's first bytes say it is. Only the first three are decoded: Pillow knows dozens of formats (and hands
# EPS to Ghostscript), none of which an AutoML image model takes, whatever the file's extension says.
_DECODED = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"))
_REFUSED = (
    (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"), (b"BM", "BMP"), (b"\0\0\1\0", "ICO"), (b"\0\0\2\0", "CUR"),
    (b"%!PS", "PostScript (EPS)"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"%PDF", "PDF"), (b"8BPS", "PSD"),
    (b"\0\0\0\x0cjP  ", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"qoif", "QOI"), (b"DDS ", "DDS"),
    (b"\x76\x2f\x31\x01", "OpenEXR"), (b"\x59\xa6\x6a\x95", "Sun raster"), (b"#define", "XBM"),
    (b"/* XPM */", "XPM"), (b"gimp xcf", "XCF"), (b"\x0a", "PCX"), (b"SIMPLE", "FITS"),
    *((f"P{n}".encode(), "PNM (PBM/PGM/PPM)") for n in range(1, 8)),
)  # fmt: skip


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


def image_format(data: bytes) -> str:
    """JPEG, PNG or GIF, from the data's first bytes; INVALID_ARGUMENT naming the format it really is otherwise."""
    if not data:
        raise InvalidArgument("image cannot be decoded: the file is empty (0 bytes)")
    for magic, name in _DECODED:
        if data.startswith(magic):
            return name
    found = next((name for magic, name in _REFUSED if data.startswith(magic)), None)
    if found is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        found = "WebP"
    if found is None and data[4:8] == b"ftyp":
        found = "HEIF/AVIF"
    what = f"a {found} image" if found else "not an image format batchline recognises"
    raise InvalidArgument(f"image cannot be decoded: the data is {what}; images must be {_ALLOWED}")


def decode_image(data: bytes, spec: InputSpec) -> tuple[np.ndarray, Geometry]:
    """Decode and resize to spec.size: uint8 HxWx3 in the model's channel order, and how it was fitted."""
    found = image_format(data)
    try:
        image, geometry = _decode_jpeg(data, spec) if found == "JPEG" else _decode_with_pillow(data, found, spec)
        return fit_picture(image, spec, geometry)
    except UnidentifiedImageError:
        raise InvalidArgument(f"image cannot be decoded: the data starts as {found} but is not valid {found}") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidArgument(f"image cannot be decoded: {exc}") from None


def fit_picture(
    picture: Image.Image | np.ndarray, spec: InputSpec, geometry: Geometry | None = None
) -> tuple[np.ndarray, Geometry]:
    """A decoded 8-bit RGB picture (HxWx3) resized to spec.size: uint8 HxWx3 in the model's channel order, and how
    it was fitted. `geometry` is that of the original picture when `picture` was decoded smaller than it (JPEG DCT
    scaling); by default it is the picture's own fit."""
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    if geometry is None:
        geometry = Geometry.fit(*image.size, spec)
    array = np.asarray(_resize(image, geometry, spec), dtype=np.uint8)
    return (array[..., ::-1] if spec.channel_order == "bgr" else array), geometry


def _decode_jpeg(data: bytes, spec: InputSpec) -> tuple[Image.Image, Geometry]:
    # libjpeg-turbo's DCT scaling decodes straight to the smallest size >= what the resize needs: 3-4x less work.
    try:
        height, width = simplejpeg.decode_jpeg_header(data)[:2]
        geometry = Geometry.fit(width, height, spec)
        scaled_w, scaled_h = geometry.scaled_size
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=scaled_h, min_width=scaled_w, strict=True)
    except ValueError:
        return _decode_with_pillow(data, "JPEG", spec)  # e.g. CMYK or arithmetic coding: let Pillow try
    return Image.fromarray(pixels), geometry


def _decode_with_pillow(data: bytes, found: str, spec: InputSpec) -> tuple[Image.Image, Geometry]:
    image = Image.open(io.BytesIO(data), formats=[found])  # that format's decoder, no other
    geometry = Geometry.fit(*image.size, spec)
    image.draft("RGB", geometry.scaled_size)
    image.load()
    return _to_rgb(image), geometry


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB. Pillow's own conversion clips 16-bit grey (every value over 255 turns white): scale it instead,
    so a 16-bit picture gives the pixels of its 8-bit twin."""
    if image.mode.startswith("I;16") or image.mode == "I":
        wide = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.rint(wide / 257.0).clip(0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


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


class ImagePreprocessor(Preprocessor):
    """One item per input: the picture, decoded from its bytes, fitted and normalised into its row."""

    max_bytes = MAX_IMAGE_BYTES
    extensions = IMAGE_EXTENSIONS
    noun = "images"

    def __init__(self, manifest: Manifest):
        super().__init__(manifest)
        self.normalize = Normalizer(manifest.input)

    @property
    def layout(self) -> tuple[tuple[int, ...], np.dtype]:
        return self.normalize.shape, self.normalize.dtype

    def fill(self, source: Source, refs: Sequence[Any], rows: Sequence[np.ndarray]) -> list[Any]:
        return [self.decode_into(source, row) for row in rows]

    def decode_into(self, data: bytes, out: np.ndarray) -> Geometry:
        pixels, geometry = decode_image(data, self.manifest.input)
        self.normalize(pixels, out)
        return geometry
