"""Models: listing, deploy / undeploy into the online cache, and online prediction."""

from __future__ import annotations

from batchline.domain.jobs import Job, JobKind, JobState
from batchline.domain.predictions import Prediction
from batchline.errors import InvalidArgument
from batchline.models.loaded import ModelCache
from batchline.models.repository import ModelRepository, StoredModel
from batchline.problems import problem_for
from batchline.store import JobStore
from batchline.surfaces import automl


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

    def predict(self, model_id: str, data: bytes, params: dict[str, str]) -> tuple[Prediction, dict[str, str]]:
        """One input's prediction and the response metadata (AutoML `:predict`)."""
        problem = problem_for(self.repository.get(model_id).manifest)
        if problem.batch_only:
            raise InvalidArgument(
                f"model {model_id!r} is a {problem.name} model, which serves batch prediction only "
                "(models/M:batchPredict or a batchPredictionJob), not :predict"
            )
        typed = automl.params(problem, params)
        return self.cache.get(model_id).predict(data, typed), automl.result_metadata(problem, typed)
