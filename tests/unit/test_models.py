"""model.yaml validation and model import: bad manifests fail at import with the field and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchline.errors import AlreadyExists, InvalidArgument, NotFound
from batchline.models.repository import ModelRepository
from tests.support import edit_manifest, make_color_model


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("problem: image_classification", "problem: poetry", ["problem", "image_classification"]),
        ("resize: stretch", "resize: squash", ["input.resize", "letterbox"]),
        ("size: [32, 32]", "size: [32]", ["input.size"]),
        ("layout: nchw", "layout: nchw\n  colour: red", ["input.colour", "Extra inputs"]),
        ("labels: [red, green, blue]", "labels: []", ["labels"]),
        ("labels: [red, green, blue]", "labels: [red, red, blue]", ["unique"]),
        ("scores: logits", "scores: probabilities", ["output.scores", "probabilities", "logits"]),
        ("name: input", "name: pixels", ["input.name", "pixels"]),
        ("artifact: model.onnx", "artifact: missing.onnx", ["missing.onnx", "not found"]),
        ("display_name: colors", "display_name: has spaces", ["display_name"]),
    ],
)
def test_bad_manifest_fails_at_import(tmp_path: Path, old: str, new: str, words: list[str]) -> None:
    source = make_color_model(tmp_path / "src")
    edit_manifest(source, old, new)
    with pytest.raises(InvalidArgument) as caught:
        ModelRepository(tmp_path / "models").import_folder(source)
    for word in words:
        assert word in caught.value.message
    assert not any((tmp_path / "models").iterdir())


def test_not_yaml_and_not_onnx(tmp_path: Path) -> None:
    source = make_color_model(tmp_path / "src")
    (source / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(InvalidArgument, match="ONNX Runtime cannot load"):
        ModelRepository(tmp_path / "models").import_folder(source)
    (source / "model.yaml").write_text("id: [unclosed")
    with pytest.raises(InvalidArgument, match="not valid YAML"):
        ModelRepository(tmp_path / "models").import_folder(source)


def test_import_with_new_id_and_name(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "models")
    source = make_color_model(tmp_path / "src")
    repo.import_folder(source)
    with pytest.raises(AlreadyExists, match="--id"):
        repo.import_folder(source)
    copy = repo.import_folder(source, model_id="colors2", display_name="Colours_v2")
    assert copy.manifest.id == "colors2" and copy.manifest.display_name == "Colours_v2"
    assert [m.manifest.id for m in repo.list()] == ["colors", "colors2"]
    with pytest.raises(NotFound):
        repo.get("../etc")
