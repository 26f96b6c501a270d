"""Vertex AI batch prediction jobs: create, get, list, cancel, delete; one store and one worker with AutoML's."""

from __future__ import annotations

import re
import threading
from typing import Any

from batchline.domain.jobs import VERTEX_JOB_KINDS, VERTEX_OPERATION_KINDS, Condition, Job, JobKind, JobState
from batchline.errors import FailedPrecondition, InvalidArgument, NotFound
from batchline.executor.vertex_inputs import InstanceSource
from batchline.models.repository import ModelRepository, StoredModel
from batchline.problems import problem_for
from batchline.storage import Storage
from batchline.store import JobStore
from batchline.surfaces import vertex

MODEL_VERSIONS = ("1", "default")  # the one version of every model: its id and its alias
_MODEL_NAME = re.compile(r"(?:projects/[^/]+/locations/[^/]+/)?(?:models/)?(?P<id>[^/@]+)(?:@(?P<version>[^/]*))?")


def split_model_name(name: str) -> tuple[str, str | None]:
    """(model id, version or None) from `projects/P/locations/L/models/ID[@VERSION]`, `models/ID` or `ID`."""
    match = _MODEL_NAME.fullmatch(name)
    if match is None:
        raise InvalidArgument(f"model {name!r} is not a model name like projects/P/locations/L/models/ID")
    return match["id"], match["version"]


def resolve_model(repository: ModelRepository, name: str) -> StoredModel:
    """The model a name means; NOT_FOUND for a model or version there is not."""
    model_id, version = split_model_name(name)
    model = repository.get(model_id)
    if version is not None and version not in MODEL_VERSIONS:
        raise NotFound(f"model {model_id!r} has no version {version!r}; its only version is 1 (alias default)")
    return model


class VertexJobService:
    def __init__(self, store: JobStore, storage: Storage, repository: ModelRepository, wakeup: threading.Event):
        self.store = store
        self.storage = storage
        self.repository = repository
        self.wakeup = wakeup

    def create(self, project: str, location: str, request: dict[str, Any]) -> Job:
        """Check what can be checked at once (formats, model, parameters, output bucket), record the job queued."""
        model = resolve_model(self.repository, request["model"])
        problem = problem_for(model.manifest)
        InstanceSource.from_job(request, vertex.spec(problem).media).check()
        vertex.params(problem, request.get("modelParameters"))
        self.storage.check_output_prefix(request["outputConfig"]["gcsDestination"]["outputUriPrefix"])
        job = Job.new(
            JobKind.VERTEX_BATCH_PREDICTION,
            project,
            location,
            model.manifest.id,
            JobState.QUEUED,
            request=request,
            display_name=request["displayName"],
            labels=request.get("labels") or {},
        )
        self.store.create(job)
        self.wakeup.set()
        return job

    def get(self, project: str, location: str, job_id: str) -> Job:
        return self._get(project, location, job_id, VERTEX_JOB_KINDS, "batchPredictionJob")

    def get_operation(self, project: str, location: str, operation_id: str) -> Job:
        return self._get(project, location, operation_id, VERTEX_OPERATION_KINDS, "operation")

    def _get(self, project: str, location: str, job_id: str, kinds: tuple[JobKind, ...], noun: str) -> Job:
        try:
            job = self.store.get(job_id)
        except NotFound:
            job = None
        if job is None or job.kind not in kinds or (job.project, job.location) != (project, location):
            raise NotFound(f"{noun} {job_id!r} not found in projects/{project}/locations/{location}")
        return job

    def list(
        self, project: str, location: str, conditions: tuple[Condition, ...], offset: int, limit: int
    ) -> list[Job]:
        return self.store.list(project, location, None, offset, limit, VERTEX_JOB_KINDS, conditions)

    def completion(self, jobs: list[Job]) -> dict[str, tuple[int, int]]:
        """(succeeded, failed) inputs so far of each job, from its committed shards."""
        return self.store.shard_counts([j.id for j in jobs])

    def cancel(self, project: str, location: str, job_id: str) -> Job:
        job = self.get(project, location, job_id)
        if job.state.done:
            raise FailedPrecondition(
                f"batchPredictionJob {job_id} has already ended ({job.state.vertex_name}); only a pending or running "
                "job can be cancelled"
            )
        return self.store.request_cancel(job_id)

    def delete(self, project: str, location: str, job_id: str) -> Job:
        """Remove the job record (its output files stay); the operation that says so, done."""
        job = self.get(project, location, job_id)
        if not job.state.done:
            raise FailedPrecondition(
                f"batchPredictionJob {job_id} is still {job.state.vertex_name}; cancel it first (POST ...:cancel), "
                "wait until it is CANCELLED, then delete it"
            )
        self.store.delete(job_id)
        operation = Job.new(JobKind.VERTEX_DELETE, project, location, job.model_id, JobState.SUCCEEDED)
        return self.store.create(operation)
