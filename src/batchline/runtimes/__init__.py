"""Runtimes run a model artifact on a batch of tensors. Picked by the manifest's `format`."""

from __future__ import annotations

from pathlib import Path

from batchline.models.manifest import Manifest
from batchline.plugins import Registry
from batchline.runtimes.base import Runtime

RUNTIMES: Registry[type[Runtime]] = Registry(
    "runtime", {"onnx": "batchline.runtimes.onnx:OnnxRuntime"}, hints={"onnx": "onnxruntime"}
)


def load_runtime(manifest: Manifest, artifact: Path, threads: int = 0) -> Runtime:
    return RUNTIMES.get(manifest.format)(manifest, artifact, threads=threads)
