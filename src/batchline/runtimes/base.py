"""The runtime lifecycle: load an artifact, run batches, close."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from batchline.models.manifest import Manifest


class Runtime(ABC):
    def __init__(self, manifest: Manifest, artifact: Path, threads: int = 0):
        self.manifest = manifest
        self.artifact = artifact

    @property
    @abstractmethod
    def device(self) -> str:
        """Where the model runs, e.g. 'cpu' or 'cuda'."""

    @abstractmethod
    def predict_batch(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch (already in the model's layout and dtype); outputs by name."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free what load took."""
