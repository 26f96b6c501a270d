"""Test helpers: a tiny real ONNX model with outputs we can predict, and image files."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from PIL import Image

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


def make_yolo_model(
    folder: Path,
    head: np.ndarray,
    model_id: str = "yolo",
    size: int = 64,
    resize: str = "letterbox",
    labels: tuple[str, ...] = ("red", "green", "blue"),
) -> Path:
    """A detector with a raw YOLO head that answers `head` ([4 + classes, anchors]: cx, cy, w, h in input pixels,
    then class scores) for every image. Boxes are known in model pixels, so where they land in the original image
    is computable by hand: that is what the letterbox / stretch mapping must get right."""
    folder.mkdir(parents=True, exist_ok=True)
    constant = helper.make_tensor("head", TensorProto.FLOAT, head.shape, head.astype(np.float32).ravel())
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    graph = helper.make_graph(
        [  # per image: 0 * mean(pixels) + head, so the output has the batch axis of the input
            helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Squeeze", ["mean", "last"], ["per_image"]),
            helper.make_node("Mul", ["per_image", "zero"], ["nothing"]),
            helper.make_node("Add", ["nothing", "head"], ["output0"]),
        ],
        "yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", *head.shape])],
        [constant, zero, helper.make_tensor("last", TensorProto.INT64, [1], [3])],
    )
    save_model(graph, folder)
    (folder / "model.yaml").write_text(
        f"""id: {model_id}
display_name: {model_id.replace("-", "_")}
problem: image_object_detection
labels: [{", ".join(labels)}]
input:
  name: images
  size: [{size}, {size}]
  resize: {resize}
output:
  format: yolo
  predictions: output0
  iou_threshold: 0.5
batch_size: 4
"""
    )
    return folder
