"""Any ONNX classifier its manifest describes: other layouts, channel orders, dtypes and resize modes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from batchline.api.app import create_app
from batchline.config import Settings
from batchline.models.manifest import InputSpec
from batchline.models.repository import ModelRepository
from batchline.problems.image.decode import Normalizer, decode_image
from tests.support import make_nhwc_bgr_uint8_model, output_folder, submit, wait_done, write_image


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_nhwc_bgr_uint8_letterboxed_model_runs_a_batch(settings: Settings, data_dir: Path, tmp_path: Path) -> None:
    ModelRepository(data_dir / "models").import_folder(make_nhwc_bgr_uint8_model(tmp_path / "nhwc"))
    bucket = data_dir / "buckets" / "b"
    colours = {f"gs://b/{c}.jpg": c for c in ("red", "green", "blue")}
    for uri, colour in colours.items():
        write_image(bucket / uri.removeprefix("gs://b/"), colour)
    (bucket / "in.csv").write_text("\n".join(colours))
    with TestClient(create_app(settings)) as client:
        op = wait_done(
            client, submit(client, ["gs://b/in.csv"], {"score_threshold": "0"}, model="colors-nhwc").json()["name"]
        )
    lines = [json.loads(line) for line in (output_folder(data_dir, op) / "image_classification_1.jsonl").open()]
    assert {line["ID"]: line["annotations"][0]["display_name"] for line in lines} == colours
    assert all(abs(sum(a["classification"]["score"] for a in line["annotations"]) - 1) < 1e-5 for line in lines)


def spec(**fields: object) -> InputSpec:
    return InputSpec.model_validate({"size": [4, 8], **fields})


def test_letterbox_keeps_the_aspect_and_pads_grey() -> None:
    wide = Image.new("RGB", (80, 20), (255, 0, 0))  # 4:1 into a 2:1 box -> 8x2 image, 1 row of padding each side
    out, geometry = decode_image(png(wide), spec(resize="letterbox"))
    assert out.shape == (4, 8, 3)
    assert (geometry.scale_x, geometry.scale_y, geometry.pad_x, geometry.pad_y) == (0.1, 0.1, 0, 1)
    assert (out[0] == 114).all() and (out[-1] == 114).all() and (out[1:3, :, 0] == 255).all()


def test_center_crop_fills_and_crops() -> None:
    image = Image.new("RGB", (40, 10), (0, 0, 255))
    image.paste((0, 255, 0), (15, 0, 25, 10))  # a green stripe in the middle
    out, _ = decode_image(png(image), spec(resize="center_crop", size=[10, 10]))
    assert out.shape == (10, 10, 3) and (out[:, 3:7, 1] > 200).all()


def test_bgr_reverses_channels_and_nchw_normalises() -> None:
    out, _ = decode_image(png(Image.new("RGB", (8, 4), (10, 20, 30))), spec(channel_order="bgr"))
    assert out[0, 0].tolist() == [30, 20, 10]
    normalize = Normalizer(spec(scale=0.1, mean=[1, 2, 3], std=[2, 2, 2]))
    tensor = np.empty(normalize.shape, normalize.dtype)
    normalize(out, tensor)
    assert tensor.shape == (3, 4, 8) and tensor.dtype == np.float32
    assert tensor[:, 0, 0] == pytest.approx([(3 - 1) / 2, (2 - 2) / 2, (1 - 3) / 2])
    as_given = Normalizer(spec(dtype="uint8", layout="nhwc"))
    pixels = np.empty(as_given.shape, as_given.dtype)
    as_given(out, pixels)
    assert as_given.dtype == np.uint8 and (pixels == out).all()
