"""Models: listing, deploy / undeploy into the online cache, and online prediction."""

from __future__ import annotations

from batchline.domain.annotations import Annotation
from batchline.domain.jobs import Job, JobKind, JobState
from batchline.models.loaded import ModelCache
from batchline.models.repository import ModelRepository, StoredModel
from batchline.store import JobStore


class ModelService:
    def __init__(self, repository: ModelRepository, cache: ModelCache, store: JobStore):
        self.repository = repository
        self.cache = cache
        self.store = store

    def get(self, model_id: str) -> StoredModel:
        return self.repository.get(model_id)

    def list(self) -> list[StoredModel]:
        return self.repository.list()

    def is_deployed(self, model_id: str) -> bool:
        return self.cache.is_loaded(model_id)

    def deploy(self, project: str, location: str, model_id: str) -> Job:
        self.cache.get(model_id)
        return self._done_operation(project, location, model_id, JobKind.DEPLOY_MODEL)

    def undeploy(self, project: str, location: str, model_id: str) -> Job:
        self.repository.get(model_id)
        self.cache.unload(model_id)
        return self._done_operation(project, location, model_id, JobKind.UNDEPLOY_MODEL)

    def delete(self, project: str, location: str, model_id: str) -> Job:
        self.repository.delete(model_id)
        self.cache.unload(model_id)
        return self._done_operation(project, location, model_id, JobKind.DELETE_MODEL)

    def _done_operation(self, project: str, location: str, model_id: str, kind: JobKind) -> Job:
        return self.store.create(Job.new(kind, project, location, model_id, JobState.SUCCEEDED))

    def predict(self, model_id: str, data: bytes, params: dict[str, str]) -> tuple[list[Annotation], dict[str, str]]:
        """Annotations for one input, highest score first, and the response metadata."""
        loaded = self.cache.get(model_id)
        problem = loaded.problem
        typed = problem.parse_params(params)
        batch, facts = problem.decode_batch([data])
        outputs = loaded.runtime.predict_batch(batch)
        return problem.postprocess(outputs, facts, typed)[0], problem.result_metadata(typed)
