"""model.yaml: what a model is and how its inputs and outputs look. Validated once, at import or load."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from batchline.errors import InvalidArgument

MANIFEST_FILE = "model.yaml"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's loader is ~7x faster on 1,000 labels


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    name: str | None = Field(None, description="Graph input name; default: the first input.")
    size: tuple[int, int] = Field(description="[height, width] the model takes.")
    resize: Literal["stretch", "letterbox", "center_crop"] = "stretch"
    channel_order: Literal["rgb", "bgr"] = "rgb"
    layout: Literal["nchw", "nhwc"] = "nchw"
    dtype: Literal["float32", "uint8"] = "float32"
    scale: float = 1 / 255
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @field_validator("size")
    @classmethod
    def _positive(cls, size: tuple[int, int]) -> tuple[int, int]:
        if min(size) < 1:
            raise ValueError("both sides must be >= 1")
        return size

    @field_validator("std")
    @classmethod
    def _nonzero(cls, std: tuple[float, float, float]) -> tuple[float, float, float]:
        if 0 in std:
            raise ValueError("std values must not be 0")
        return std


class OutputSpec(_Strict):
    scores: str | None = Field(None, description="Output holding class scores; default: the first output.")
    activation: Literal["softmax", "sigmoid", "none"] = "none"


class Manifest(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    display_name: str = Field(pattern=r"^[A-Za-z0-9_]{1,32}$")
    problem: Literal["image_classification"]
    format: Literal["onnx"] = "onnx"
    artifact: str = "model.onnx"
    labels: list[str] = Field(min_length=1)
    input: InputSpec
    output: OutputSpec = OutputSpec()
    batch_size: int = Field(32, ge=1, le=4096)

    @model_validator(mode="after")
    def _unique_labels(self) -> Manifest:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        return self


def _describe(error: ValidationError, source: Path) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        problems.append(f"{where}: {item['msg']}")
    return f"{source}: invalid model manifest: " + "; ".join(problems)


def load_manifest(model_dir: Path) -> Manifest:
    """Read and validate DIR/model.yaml; InvalidArgument names each bad field and what is allowed."""
    path = model_dir / MANIFEST_FILE
    if not path.is_file():
        raise InvalidArgument(f"{model_dir} has no {MANIFEST_FILE}; a model folder needs one next to its artifact")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{path}: expected a mapping of fields, got {type(raw).__name__}")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise InvalidArgument(_describe(exc, path)) from exc
    if not (model_dir / manifest.artifact).is_file():
        raise InvalidArgument(f"{path}: artifact {manifest.artifact!r} not found in {model_dir}")
    return manifest


def dump_manifest(manifest: Manifest, model_dir: Path) -> None:
    data = manifest.model_dump(mode="json")
    (model_dir / MANIFEST_FILE).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
