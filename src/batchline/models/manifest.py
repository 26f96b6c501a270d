"""model.yaml: what a model is and how its inputs and outputs look. Validated once, at import or load."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

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


def _named(**fields: str | None) -> dict[str, str]:
    """{"output.<field>": graph output name} of the fields that are set: what the runtime must find in the graph."""
    return {f"output.{field}": name for field, name in fields.items() if name}


class ScoresOutput(_Strict):
    """A classifier's output: one score per label."""

    format: Literal["scores"] = "scores"
    scores: str | None = Field(None, description="Output holding class scores; default: the first output.")
    activation: Literal["softmax", "sigmoid", "none"] = "none"

    def tensor_names(self) -> dict[str, str]:
        return _named(scores=self.scores)


class BoxesOutput(_Strict):
    """A detector's output after NMS, as torchvision and TensorFlow exports give it.

    Each tensor is [detections, ...] for a batch-1 model, or [batch, detections, ...].
    """

    format: Literal["boxes"]
    boxes: str = Field(description="Output holding the boxes: [..., 4].")
    scores: str = Field(description="Output holding each box's score (0..1).")
    classes: str = Field(description="Output holding each box's class index into labels.")
    count: str | None = Field(None, description="Output holding how many rows are detections (TF num_detections).")
    box_order: Literal["xyxy", "yxyx"] = "xyxy"
    box_units: Literal["pixels", "normalized"] = Field("pixels", description="Relative to the model's input.")
    class_offset: int = Field(0, description="Subtracted from class indices: 1 where class 0 is the background.")

    def tensor_names(self) -> dict[str, str]:
        return _named(boxes=self.boxes, scores=self.scores, classes=self.classes, count=self.count)


class YoloOutput(_Strict):
    """A raw YOLO-style head, [batch, 4 + classes, anchors] of cx, cy, w, h (model input pixels) and class scores;
    batchline runs class-aware NMS on it."""

    format: Literal["yolo"]
    predictions: str | None = Field(None, description="Output holding the head; default: the first output.")
    activation: Literal["sigmoid", "none"] = Field("none", description="Applied to the class scores.")
    iou_threshold: float = Field(0.45, gt=0, le=1, description="NMS: overlap above which the lower box goes.")

    def tensor_names(self) -> dict[str, str]:
        return _named(predictions=self.predictions)


def _output_format(value: Any) -> str:
    return value.get("format", "scores") if isinstance(value, dict) else getattr(value, "format", "scores")


OutputSpec = Annotated[
    Annotated[ScoresOutput, Tag("scores")] | Annotated[BoxesOutput, Tag("boxes")] | Annotated[YoloOutput, Tag("yolo")],
    Discriminator(_output_format),
]
_OUTPUT_TAGS = {"scores", "boxes", "yolo"}
_PROBLEM_OUTPUTS = {
    "image_classification": ("scores",),
    "image_object_detection": ("boxes", "yolo"),
    "video_classification": ("scores",),  # an image classifier, run on sampled frames
    "video_object_tracking": ("boxes", "yolo"),  # an image detector, run on sampled frames, its boxes tracked
}
_BOXES_KEPT_WHOLE = ("image_object_detection", "video_object_tracking")  # a centre crop would cut boxes off


class VideoSpec(_Strict):
    """How a video model samples its frames (each frame then goes through `input` as an image)."""

    frame_rate: float = Field(
        5.0, gt=0, le=120, description="Frames sampled per second of video (a request may ask for another)."
    )


class Manifest(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    display_name: str = Field(pattern=r"^[A-Za-z0-9_]{1,32}$")
    problem: Literal["image_classification", "image_object_detection", "video_classification", "video_object_tracking"]
    format: Literal["onnx"] = "onnx"
    artifact: str = "model.onnx"
    labels: list[str] = Field(min_length=1)
    input: InputSpec
    output: OutputSpec = ScoresOutput()
    video: VideoSpec = VideoSpec()  # for video problems
    batch_size: int = Field(32, ge=1, le=4096)

    @model_validator(mode="after")
    def _unique_labels(self) -> Manifest:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        return self

    @model_validator(mode="after")
    def _output_fits_problem(self) -> Manifest:
        allowed = _PROBLEM_OUTPUTS[self.problem]
        if self.output.format not in allowed:
            raise ValueError(f"output.format must be one of {list(allowed)} for {self.problem}")
        if self.problem in _BOXES_KEPT_WHOLE and self.input.resize == "center_crop":
            raise ValueError("input.resize center_crop would cut boxes off; detectors take stretch or letterbox")
        return self


def _describe(error: ValidationError, source: Path) -> str:
    problems = []
    for item in error.errors():
        loc = [str(p) for p in item["loc"]]
        if loc[:1] == ["output"] and loc[1:2] and loc[1] in _OUTPUT_TAGS:  # pydantic names the union member
            del loc[1]
        where = ".".join(loc) or "(top level)"
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
