"""Test helpers: tiny real ONNX models with outputs we can predict, image files, and AutoML API calls."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper
from PIL import Image

from batchline.config import Settings

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

BASE = "/v1/projects/p/locations/us-central1"

COLOR_LABELS = ["red", "green", "blue"]
COLORS = {"red": (220, 20, 20), "green": (20, 220, 20), "blue": (20, 20, 220)}


def save_model(graph: onnx.GraphProto, folder: Path) -> None:
    """Write a graph as folder/model.onnx, at an opset and IR version every supported ONNX Runtime loads."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "model.onnx")


def make_color_model(folder: Path, model_id: str = "colors", size: int = 32, output: str = "logits") -> Path:
    """An ONNX classifier whose logit per class is 10x the mean of that colour channel (0..1).

    A red image scores red highest; softmax scores are computable by hand. Written with model.yaml.
    """
    folder.mkdir(parents=True, exist_ok=True)
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3, 3], (np.eye(3, dtype=np.float32) * 10).ravel())
    bias = helper.make_tensor("b", TensorProto.FLOAT, [3], [0.0, 0.0, 0.0])
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("Gemm", ["flat", "w", "b"], [output], transB=1),
        ],
        "colors",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", 3])],
        [weight, bias],
    )
    save_model(graph, folder)
    (folder / "model.yaml").write_text(
        f"""id: {model_id}
display_name: {model_id.replace("-", "_")}
problem: image_classification
format: onnx
artifact: model.onnx
labels: [red, green, blue]
input:
  name: input
  size: [{size}, {size}]
  resize: stretch
  layout: nchw
  scale: 0.00392156862745098
output:
  scores: {output}
  activation: softmax
batch_size: 8
"""
    )
    return folder


def image_bytes(color: str, fmt: str = "JPEG", size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, COLORS[color]).save(buffer, format=fmt)
    return buffer.getvalue()


def write_image(path: Path, color: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".png": "PNG", ".gif": "GIF"}.get(path.suffix.lower(), "JPEG")
    path.write_bytes(image_bytes(color, fmt))
    return path


def write_big_png(path: Path, color: str, width: int = 512) -> Path:
    """A PNG of one colour, large enough that decoding it takes real time (~5 ms at 512 px on one core)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.new("RGB", (width, width * 3 // 4), COLORS[color]).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def link_many(source: Path, folder: Path, count: int, name: str = "img{:05d}.png") -> list[Path]:
    """`count` distinct paths to one file's bytes (hard links: no extra disk), each a separate input."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / name.format(i)
        os.link(source, path)
        paths.append(path)
    return paths


def make_nhwc_bgr_uint8_model(folder: Path, model_id: str = "colors-nhwc") -> Path:
    """The colour classifier as another toolchain might export it: uint8 NHWC input in BGR order, softmax inside
    the graph, letterboxed input. Exercises every non-default preprocessing choice of model.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    bgr_to_rgb_labels = np.array([[0, 0, 10], [0, 10, 0], [10, 0, 0]], dtype=np.float32)  # row per label
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3, 3], bgr_to_rgb_labels.ravel())
    bias = helper.make_tensor("b", TensorProto.FLOAT, [3], [0.0, 0.0, 0.0])
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [255.0])
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["image"], ["as_float"], to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["as_float"], ["nchw"], perm=[0, 3, 1, 2]),
            helper.make_node("Div", ["nchw", "s"], ["unit"]),
            helper.make_node("GlobalAveragePool", ["unit"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("Gemm", ["flat", "w", "b"], ["logits"], transB=1),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "colors_nhwc",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", 40, 24, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])],
        [weight, bias, scale],
    )
    save_model(graph, folder)
    (folder / "model.yaml").write_text(
        f"""id: {model_id}
display_name: {model_id.replace("-", "_")}
problem: image_classification
artifact: model.onnx
labels: [red, green, blue]
input:
  name: image
  size: [40, 24]
  resize: letterbox
  channel_order: bgr
  layout: nhwc
  dtype: uint8
output:
  scores: probabilities
  activation: none
batch_size: 4
"""
    )
    return folder


def make_detector_model(
    folder: Path,
    outputs: dict[str, np.ndarray],
    output: dict[str, Any],
    model_id: str = "detector",
    size: int = 64,
    resize: str = "letterbox",
    labels: tuple[str, ...] = ("red", "green", "blue"),
    batch_axis: bool = True,
    batch_size: int = 4,
) -> Path:
    """A detector whose graph outputs are the given constants, whatever the image; `output` is model.yaml's
    output section. With `batch_axis` each output is [N, *value.shape], one copy per image of the batch; without,
    exactly `value` (a batch-1 export, as torchvision's). Written with model.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    nodes = [  # 0 * mean(pixels) per image: a zero with the input's batch axis, to add the constants to
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["zeros"]),
        helper.make_node("ReduceMean", ["zeros"], ["scalar_zero"], keepdims=0),
    ]
    initializers = [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])]
    graph_outputs = []
    for name, value in outputs.items():
        dtype = helper.np_dtype_to_tensor_dtype(value.dtype)
        if batch_axis:
            shape = helper.make_tensor(f"{name}_shape", TensorProto.INT64, [value.ndim + 1], [-1] + [1] * value.ndim)
            initializers.append(shape)
            nodes.append(helper.make_node("Reshape", ["zeros", shape.name], [f"{name}_zeros"]))
        else:
            nodes.append(helper.make_node("Identity", ["scalar_zero"], [f"{name}_zeros"]))
        initializers.append(helper.make_tensor(f"{name}_value", dtype, value.shape, value.ravel()))
        nodes += [
            helper.make_node("Cast", [f"{name}_zeros"], [f"{name}_typed"], to=dtype),
            helper.make_node("Add", [f"{name}_typed", f"{name}_value"], [name]),
        ]
        shape_out = ["N", *value.shape] if batch_axis else list(value.shape)
        graph_outputs.append(helper.make_tensor_value_info(name, dtype, shape_out))
    graph = helper.make_graph(
        nodes,
        "detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, size, size])],
        graph_outputs,
        initializers,
    )
    save_model(graph, folder)
    manifest = {
        "id": model_id,
        "display_name": model_id.replace("-", "_"),
        "problem": "image_object_detection",
        "labels": list(labels),
        "input": {"name": "images", "size": [size, size], "resize": resize},
        "output": output,
        "batch_size": batch_size,
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return folder


def make_yolo_model(
    folder: Path,
    head: np.ndarray,
    model_id: str = "yolo",
    size: int = 64,
    resize: str = "letterbox",
    labels: tuple[str, ...] = ("red", "green", "blue"),
    activation: str = "none",
) -> Path:
    """A detector with a raw YOLO head that answers `head` ([4 + classes, anchors]: cx, cy, w, h in input pixels,
    then class scores) for every image. Boxes are known in model pixels, so where they land in the original image
    is computable by hand: that is what the letterbox / stretch mapping must get right."""
    output = {"format": "yolo", "predictions": "output0", "iou_threshold": 0.5, "activation": activation}
    return make_detector_model(
        folder, {"output0": head.astype(np.float32)}, output, model_id=model_id, size=size, resize=resize, labels=labels
    )


def yolo_head(
    detections: list[tuple[tuple[float, float, float, float], int, float]], classes: int = 3, others: float = 0.0
) -> np.ndarray:
    """[4 + classes, anchors] from (xyxy box in model pixels, class index, score) per anchor; the other classes
    score `others` (a very negative logit where the model's activation is sigmoid)."""
    head = np.full((4 + classes, len(detections)), others, dtype=np.float32)
    for anchor, ((x1, y1, x2, y2), label, score) in enumerate(detections):
        head[:4, anchor] = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
        head[4 + label, anchor] = score
    return head


def edit_manifest(folder: Path, old: str, new: str) -> None:
    path = folder / "model.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


# -- AutoML v1 calls through the in-process app


def submit(client: TestClient, csv_uris: list[str], params: dict | None = None, model: str = "colors"):
    body = {
        "inputConfig": {"gcsSource": {"inputUris": csv_uris}},
        "outputConfig": {"gcsDestination": {"outputUriPrefix": "gs://b/out"}},
        "params": params or {},
    }
    return client.post(f"{BASE}/models/{model}:batchPredict", json=body)


def wait_done(client: TestClient, name: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = client.get(f"/v1/{name}").json()
        if op.get("done"):
            return op
        time.sleep(0.05)
    raise AssertionError(f"operation {name} not done after {timeout}s: {op}")


def read_jsonl(folder: Path, pattern: str) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob(pattern)) for line in f.read_text().splitlines()]


def output_folder(data_dir: Path, op: dict) -> Path:
    uri = op["metadata"]["batchPredictDetails"]["outputInfo"]["gcsOutputDirectory"]
    return data_dir / "buckets" / uri.removeprefix("gs://")


def predict_body(data: bytes, **params: str) -> dict:
    return {"payload": {"image": {"imageBytes": base64.b64encode(data).decode()}}, "params": params}


def assert_error(reply, http: int, status: str, *words: str) -> None:
    assert reply.status_code == http, reply.text
    error = reply.json()["error"]
    assert error["code"] == http and error["status"] == status
    for word in words:
        assert word in error["message"]


# Run as `python -c SWAPPER BUCKET_DIR INSIDE_DIR OUTSIDE_DIR`: moves INSIDE_DIR to BUCKET_DIR/swap, then makes that
# name a real folder one moment and a link to OUTSIDE_DIR the next, as fast as it can, until killed.
SWAPPER = """
import os, sys
bucket, inside, outside = sys.argv[1:]
swap, real, link = (os.path.join(bucket, name) for name in ("swap", "swap.real", "swap.link"))
os.rename(inside, swap)
os.symlink(outside, link)
while True:  # the same name, a real folder one moment and a link to outside the next
    os.rename(swap, real)
    os.rename(link, swap)
    os.rename(swap, link)
    os.rename(real, swap)
"""


class IdLines:
    """An encoder whose lines are the input's id and whose JSON files list the labels: for what a layout does with
    them, whatever they say."""

    def result_line(self, input_id: str, prediction: object) -> str:
        return input_id

    def error_line(self, input_id: str, status: object) -> str:
        return input_id

    def failure_message(self, input_id: str, status: object) -> str:
        return input_id

    def result_json(self, prediction: Any) -> str:
        return json.dumps([label.label for label in prediction.labels])


@contextlib.contextmanager
def both_surfaces(settings: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    """The AutoML and Vertex AI apps in process over one set of services, the worker running."""
    from fastapi.testclient import TestClient

    from batchline.api.app import create_app, create_vertex_app
    from batchline.services import build_services

    services = build_services(settings)
    try:
        with (
            TestClient(create_app(settings, services, own_services=False)) as automl,
            TestClient(create_vertex_app(services)) as vertex,
        ):
            services.worker.start()
            yield automl, vertex
    finally:
        services.close()


def wait_vertex_job(vertex: TestClient, name: str, timeout: float = 300) -> dict:
    """A Vertex job once it has ended."""
    deadline = time.monotonic() + timeout
    while (job := vertex.get(f"/v1/{name}").json())["state"] not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    return job
