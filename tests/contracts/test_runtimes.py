"""The contract every runtime keeps: a batch of one and of many, outputs by name with the batch axis, close, and
an artifact it cannot load named in an INVALID_ARGUMENT that says what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from batchline.errors import InvalidArgument
from batchline.models.manifest import load_manifest
from batchline.runtimes import RUNTIMES, load_runtime
from tests.support import make_color_model

# Per runtime name, a function that writes a small model of that format (model.yaml beside it) into a folder.
MODELS = {"onnx": make_color_model}


def test_every_runtime_has_a_contract_model() -> None:
    assert sorted(MODELS) == RUNTIMES.names()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_batches_of_one_and_many(name: str, tmp_path: Path) -> None:
    folder = MODELS[name](tmp_path / "model")
    manifest = load_manifest(folder)
    runtime = load_runtime(manifest, folder / manifest.artifact, threads=1)
    try:
        height, width = manifest.input.size
        for batch in (1, 5):
            outputs = runtime.predict_batch(np.random.default_rng(batch).random((batch, 3, height, width), np.float32))
            assert outputs and all(value.shape[0] == batch for value in outputs.values())
        assert runtime.device in ("cpu", "cuda")
    finally:
        runtime.close()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_an_artifact_it_cannot_load_is_named(name: str, tmp_path: Path) -> None:
    folder = MODELS[name](tmp_path / "model")
    manifest = load_manifest(folder)
    (folder / manifest.artifact).write_bytes(b"not a model")
    with pytest.raises(InvalidArgument) as raised:
        load_runtime(manifest, folder / manifest.artifact, threads=1)
    assert manifest.artifact in raised.value.message and "cannot load" in raised.value.message
