"""A problem (ML scenario) wires three parts that the engine runs without knowing which problem it is:

    Preprocessor   an input's source -> rows of the model's input, one per item     (in the decoder processes)
    Postprocessor  a batch's model outputs -> one output per item, before any filtering      (infer threads)
    Reducer        all of an input's item outputs -> its Prediction, filtered by the params

An image is one item; a video is as many items as frames it samples (its preprocessor `expands`: it plans the
items first, in a decoder). Items of many inputs share batches; the executor gathers an input's outputs back in
item order before its reducer runs. Params are typed, one pydantic model per problem; each surface maps its own
wire parameters onto them (surfaces/).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from batchline.domain.predictions import Prediction
from batchline.errors import InvalidArgument
from batchline.models.manifest import Manifest

Source = bytes | IO[bytes]  # an input's whole bytes, or (for a preprocessor that streams) its open, seekable file


class Params(BaseModel):
    """A problem's parameters, typed, with their defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class Plan:
    """The items one input holds: a small, picklable ref per item (a frame's timestamp), and what its reducer
    needs to know about the input as a whole (a video's duration)."""

    refs: tuple[Any, ...]
    facts: Any = None


ONE_ITEM = Plan((None,))  # the plan of every input of a preprocessor that does not expand


class Preprocessor(ABC):
    """Rebuilt in each decoder process from the manifest, so it holds nothing that cannot be rebuilt."""

    expands: ClassVar[bool] = False  # plan() says how many items an input has
    streams: ClassVar[bool] = False  # reads its source as a seekable file (never whole) rather than as bytes
    max_bytes: ClassVar[int | None] = None  # the largest whole source it takes
    extensions: ClassVar[tuple[str, ...]] = ()  # of the URIs it takes, lower case; () = any
    noun: ClassVar[str] = "inputs"  # what its inputs are called in messages
    items_per_task: ClassVar[int] = 16  # items a decoding task holds at most (fewer where memory says so)

    def __init__(self, manifest: Manifest):
        self.manifest = manifest

    def check_uri(self, uri: str) -> None:
        """Refuse an input by its URI before reading it: INVALID_ARGUMENT for an extension it does not take."""
        suffix = PurePosixPath(uri.split("?")[0]).suffix.lower()
        if self.extensions and suffix not in self.extensions:
            raise InvalidArgument(
                f"unsupported file extension {suffix or '(none)'!r}; {self.noun} must be {', '.join(self.extensions)}"
            )

    @property
    @abstractmethod
    def layout(self) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype of one item's row in the model's input batch."""

    def plan(self, source: Source, args: dict[str, Any], params: Params) -> Plan:
        """The items of one input; InvalidArgument if it cannot be used. Only for a preprocessor that expands."""
        raise NotImplementedError(f"{type(self).__name__} does not expand its inputs")

    @abstractmethod
    def fill(self, source: Source, refs: Sequence[Any], rows: Sequence[np.ndarray]) -> list[Any]:
        """Write each item's row; return each item's facts for the postprocessor, or the exception that says why
        that item cannot be predicted."""

    def batch(self, sources: Sequence[bytes]) -> tuple[np.ndarray, list[Any]]:
        """A batch of inputs of one item each, and their facts, on this thread (online prediction and tools);
        the first input that cannot be read raises."""
        shape, dtype = self.layout
        rows = np.empty((len(sources), *shape), dtype)
        facts = [self.fill(data, [None], [row])[0] for data, row in zip(sources, rows, strict=True)]
        for found in facts:
            if isinstance(found, BaseException):
                raise found
        return rows, facts


class Postprocessor(ABC):
    def __init__(self, manifest: Manifest):
        self.manifest = manifest

    @abstractmethod
    def decode(self, outputs: dict[str, np.ndarray], facts: Sequence[Any], params: Params) -> list[Any]:
        """A batch's model outputs, and the facts fill returned for each of its items -> one output per item, as
        little filtered as the reducer needs (a tracker wants the low-score boxes too)."""


class WithFacts(Postprocessor):
    """Another postprocessor's outputs, each paired with its item's facts: for a reducer that needs both (a video
    frame's time and histogram beside its boxes). `inner_facts` picks what the other postprocessor reads of them
    (a frame's image geometry)."""

    def __init__(self, inner: Postprocessor, inner_facts: Callable[[Any], Any]):
        super().__init__(inner.manifest)
        self.inner, self.inner_facts = inner, inner_facts

    def decode(self, outputs: dict[str, np.ndarray], facts: Sequence[Any], params: Params) -> list[Any]:
        decoded = self.inner.decode(outputs, [self.inner_facts(f) for f in facts], params)
        return list(zip(facts, decoded, strict=True))


class Reducer(ABC):
    @abstractmethod
    def reduce(self, facts: Any, items: Sequence[Any], params: Params) -> Prediction:
        """An input's item outputs, in item order, and its plan's facts -> its prediction."""


class Problem:
    """A scenario: its params and its three parts. Subclasses only wire them."""

    name: ClassVar[str]
    Params: ClassVar[type[Params]]
    batch_only: ClassVar[bool] = False  # no online prediction (video)
    preprocessor: Preprocessor
    postprocessor: Postprocessor
    reducer: Reducer

    def __init__(self, manifest: Manifest):
        self.manifest = manifest

    def predictions(self, outputs: dict[str, np.ndarray], facts: Sequence[Any], params: Params) -> list[Prediction]:
        """The predictions of a batch of inputs of one item each (online prediction and tools)."""
        items = self.postprocessor.decode(outputs, facts, params)
        return [self.reducer.reduce(None, [item], params) for item in items]
