"""A model ready to run: its manifest, its problem and a live runtime session."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from batchline.domain.predictions import Prediction
from batchline.models.repository import ModelRepository, StoredModel
from batchline.problems import problem_for
from batchline.problems.base import Params, Problem
from batchline.runtimes import load_runtime
from batchline.runtimes.base import Runtime


@dataclass
class LoadedModel:
    stored: StoredModel
    problem: Problem
    runtime: Runtime

    @classmethod
    def load(cls, stored: StoredModel, threads: int = 0) -> LoadedModel:
        runtime = load_runtime(stored.manifest, stored.artifact_path, threads=threads)
        return cls(stored, problem_for(stored.manifest), runtime)

    def predict(self, data: bytes, params: Params) -> Prediction:
        """One input's prediction, on this thread (online prediction: a single item, no decoders)."""
        batch, facts = self.problem.preprocessor.batch([data])
        return self.problem.predictions(self.runtime.predict_batch(batch), facts, params)[0]

    def close(self) -> None:
        self.runtime.close()


class ModelCache:
    """Models held in memory for online prediction: `deploy` loads, `undeploy` frees."""

    def __init__(self, repository: ModelRepository, threads: int = 0):
        self.repository = repository
        self.threads = threads
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def is_loaded(self, model_id: str) -> bool:
        return model_id in self._loaded

    def get(self, model_id: str) -> LoadedModel:
        """The loaded model, loading it on first use."""
        with self._lock:
            if model_id not in self._loaded:
                self._loaded[model_id] = LoadedModel.load(self.repository.get(model_id), self.threads)
            return self._loaded[model_id]

    def unload(self, model_id: str) -> None:
        with self._lock:
            loaded = self._loaded.pop(model_id, None)
        if loaded is not None:
            loaded.close()
