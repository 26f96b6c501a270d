"""A problem (ML scenario) owns its input rows, params, preprocessing and postprocessing; not the transport."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from batchline.domain.annotations import Annotation
from batchline.errors import InvalidArgument
from batchline.models.manifest import Manifest


class Problem(ABC):
    name: ClassVar[str]
    output_stem: ClassVar[str]  # batch result files are <output_stem>_N.jsonl
    model_metadata_key: ClassVar[str]  # the Model resource's *ModelMetadata field
    row_format: ClassVar[str]  # the CSV columns, for error messages
    params_defaults: ClassVar[dict[str, str]]

    def __init__(self, manifest: Manifest):
        self.manifest = manifest

    def parse_params(self, params: dict[str, str]) -> dict[str, Any]:
        """Typed params with defaults filled in; InvalidArgument for an unknown key or a bad value."""
        unknown = sorted(set(params) - set(self.params_defaults))
        if unknown:
            allowed = ", ".join(sorted(self.params_defaults))
            raise InvalidArgument(f"unknown params {unknown} for {self.name}; allowed: {allowed}")
        merged = {**self.params_defaults, **params}
        return {key: self.parse_param(key, str(value)) for key, value in merged.items()}

    @abstractmethod
    def parse_param(self, key: str, value: str) -> Any: ...

    @abstractmethod
    def parse_row(self, fields: list[str]) -> str:
        """The input ID (a storage URI) from one CSV row's fields; ValueError says what is wrong."""

    @abstractmethod
    def check_input(self, uri: str) -> None:
        """Reject an input before fetching it (e.g. its extension); InvalidArgument."""

    @property
    @abstractmethod
    def item_layout(self) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype of one input in the model's input tensor (batches are filled in place)."""

    @abstractmethod
    def decode_into(self, data: bytes, out: np.ndarray) -> Any:
        """Preprocess one input's bytes into `out` (one row of a batch); return what postprocess needs to know
        about it besides the model's outputs (for an image, where it lies in the model's input). InvalidArgument
        if it cannot be decoded."""

    def decode_batch(self, inputs: list[bytes]) -> tuple[np.ndarray, list[Any]]:
        """A batch tensor of a few inputs and their facts, for online prediction and tools."""
        shape, dtype = self.item_layout
        batch = np.empty((len(inputs), *shape), dtype)
        return batch, [self.decode_into(data, row) for data, row in zip(inputs, batch, strict=True)]

    @abstractmethod
    def postprocess(
        self, outputs: dict[str, np.ndarray], facts: list[Any], params: dict[str, Any]
    ) -> list[list[Annotation]]:
        """Model outputs for a batch, and what decode_into returned for each input -> annotations per input,
        filtered and sorted."""

    def result_metadata(self, params: dict[str, Any]) -> dict[str, str]:
        """BatchPredictResult.metadata / PredictResponse.metadata."""
        return {}


def parse_positive_int(key: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidArgument(f"params.{key} must be a whole number >= 1, got {value!r}") from None
    if number < 1:
        raise InvalidArgument(f"params.{key} must be >= 1, got {value!r}")
    return number


def parse_unit_interval(key: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise InvalidArgument(f"params.{key} must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= number <= 1.0:
        raise InvalidArgument(f"params.{key} must be between 0 and 1, got {value!r}")
    return number
