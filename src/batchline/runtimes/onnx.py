"""ONNX Runtime: CUDA when the installed onnxruntime offers it, else CPU."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnxruntime as ort

from batchline.errors import InvalidArgument
from batchline.models.manifest import Manifest
from batchline.runtimes.base import Runtime

_PREFERRED = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@functools.cache
def providers() -> list[str]:
    """The providers to ask for, best first. With onnxruntime-gpu, load the CUDA and cuDNN libraries that pip's
    nvidia-* packages installed (the `onnxruntime-gpu[cuda,cudnn]` extras) before the first session needs them."""
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    return [p for p in _PREFERRED if p in available]


class OnnxRuntime(Runtime):
    def __init__(self, manifest: Manifest, artifact: Path, threads: int = 0):
        super().__init__(manifest, artifact, threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        # Idle intra-op threads would otherwise spin, taking the cores that decode the next batch meanwhile.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(artifact), options, providers=providers())
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise InvalidArgument(f"{artifact}: ONNX Runtime cannot load this model: {exc}") from exc
        self.input_name = self._pick(manifest.input.name, [i.name for i in self.session.get_inputs()], "input.name")
        self.output_names = [o.name for o in self.session.get_outputs()]
        for field, name in manifest.output.tensor_names().items():  # checked at import, not at the first batch
            self._pick(name, self.output_names, field)

    def _pick(self, wanted: str | None, present: list[str], field: str) -> str:
        if wanted is None:
            return present[0]
        if wanted not in present:
            raise InvalidArgument(
                f"{self.artifact}: model.yaml {field} is {wanted!r}, but the ONNX graph has only {present}"
            )
        return wanted

    @property
    def device(self) -> str:
        return "cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"

    def predict_batch(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, {self.input_name: batch})
        return dict(zip(self.output_names, outputs, strict=True))

    def close(self) -> None:
        del self.session
