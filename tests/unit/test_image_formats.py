"""Only JPEG, PNG and GIF are decoded, whatever a file is named; 16-bit grey pictures are scaled, not clipped."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from batchline.errors import InvalidArgument
from batchline.models.manifest import InputSpec
from batchline.problems.image.decode import decode_image
from tests.support import BASE, output_folder, predict_body, read_jsonl, submit, wait_done, write_image

SPEC = InputSpec(size=[32, 32], resize="stretch")


def _saved(fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


# Real files of formats Pillow can decode, but an AutoML image model does not take.
REFUSED = {
    "TIFF": _saved("TIFF"),
    "BMP": _saved("BMP"),
    "ICO": _saved("ICO"),
    "PNM": _saved("PPM"),
    "WebP": _saved("WEBP"),
    "EPS": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto 10 10 lineto stroke\n%%EOF\n",
    "PDF": b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_other_formats_are_refused_naming_what_they_are(name: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        decode_image(REFUSED[name], SPEC)
    assert name in raised.value.message and "JPEG, PNG or GIF" in raised.value.message


def test_a_batch_job_fails_only_the_disguised_files(client: TestClient, data_dir: Path) -> None:
    bucket = data_dir / "buckets" / "b"
    rows = []
    for name, data in REFUSED.items():
        (bucket / f"{name}.jpg").write_bytes(data)
        rows.append(f"gs://b/{name}.jpg")
    for i, suffix in enumerate(("jpg", "png", "gif") * 3):
        write_image(bucket / f"good{i}.{suffix}", "red")
        rows.append(f"gs://b/good{i}.{suffix}")
    (bucket / "in.csv").write_text("\n".join(rows) + "\n")
    op = wait_done(client, submit(client, ["gs://b/in.csv"]).json()["name"])
    folder = output_folder(data_dir, op)
    errors = {line["ID"]: line["error"] for line in read_jsonl(folder, "errors_*.jsonl")}
    assert set(errors) == {f"gs://b/{name}.jpg" for name in REFUSED}
    for name in REFUSED:
        assert errors[f"gs://b/{name}.jpg"]["code"] == 3 and name in errors[f"gs://b/{name}.jpg"]["message"]
    results = read_jsonl(folder, "image_classification_*.jsonl")
    assert len(results) == 9 and all(line["annotations"][0]["display_name"] == "red" for line in results)


def _grey_twins() -> tuple[bytes, bytes]:
    """The same picture as an 8-bit grey PNG and as a 16-bit one (each value v stored as v * 257)."""
    ramp = (np.arange(48 * 64).reshape(48, 64) % 256).astype(np.uint8)
    eight, sixteen = io.BytesIO(), io.BytesIO()
    Image.fromarray(ramp).save(eight, format="PNG")
    Image.fromarray(ramp.astype(np.uint16) * 257).save(sixteen, format="PNG")
    assert Image.open(io.BytesIO(sixteen.getvalue())).mode.startswith("I;16")
    return eight.getvalue(), sixteen.getvalue()


def test_a_16_bit_grey_png_decodes_as_its_8_bit_twin() -> None:
    eight, sixteen = _grey_twins()
    pixels_8, _ = decode_image(eight, SPEC)
    pixels_16, _ = decode_image(sixteen, SPEC)
    assert pixels_8.max() > 200  # the ramp reaches white only at its end: clipping would make most of it white
    np.testing.assert_array_equal(pixels_16, pixels_8)


def test_a_16_bit_grey_png_is_predicted_as_its_8_bit_twin(client: TestClient) -> None:
    scores = []
    for data in _grey_twins():
        reply = client.post(f"{BASE}/models/colors:predict", json=predict_body(data, score_threshold="0"))
        assert reply.status_code == 200, reply.text
        scores.append({p["displayName"]: p["classification"]["score"] for p in reply.json()["payload"]})
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)


def test_48_bit_rgb_stays_right() -> None:
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[..., 0] = 200
    # Pillow cannot write 48-bit RGB PNGs itself: build one with zlib, the PNG way.
    data = _png_48bit(rgb.astype(np.uint16) * 257)
    pixels, _ = decode_image(data, SPEC)
    assert abs(int(pixels[..., 0].mean()) - 200) <= 1 and pixels[..., 1:].max() <= 1


def _png_48bit(image: np.ndarray) -> bytes:
    import struct
    import zlib

    height, width, _ = image.shape
    raw = b"".join(b"\0" + image[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
