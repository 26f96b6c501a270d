"""Batch prediction jobs and the operations that show them."""

from __future__ import annotations

import threading
import time
from typing import Any

from batchline.domain.jobs import AUTOML_KINDS, Job, JobKind, JobState
from batchline.errors import FailedPrecondition, NotFound
from batchline.models.repository import ModelRepository
from batchline.problems import problem_for
from batchline.storage import Storage
from batchline.store import JobStore
from batchline.surfaces import automl


class JobService:
    def __init__(self, store: JobStore, storage: Storage, repository: ModelRepository, wakeup: threading.Event):
        self.store = store
        self.storage = storage
        self.repository = repository
        self.wakeup = wakeup

    def submit_batch_predict(self, project: str, location: str, model_id: str, request: dict[str, Any]) -> Job:
        """Check what can be checked at once, record the job, and return it queued."""
        model = self.repository.get(model_id)
        automl.params(problem_for(model.manifest), request.get("params") or {})
        prefix = request["outputConfig"]["gcsDestination"]["outputUriPrefix"]
        self.storage.check_output_prefix(prefix)
        job = Job.new(JobKind.BATCH_PREDICT, project, location, model_id, JobState.QUEUED, request=request)
        self.store.create(job)
        self.wakeup.set()
        return job

    def get(self, project: str, location: str, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job.kind not in AUTOML_KINDS or (job.project, job.location) != (project, location):
            raise NotFound(f"operation {job_id!r} not found in projects/{project}/locations/{location}")
        return job

    def list(self, project: str, location: str, done: bool | None, offset: int, limit: int) -> list[Job]:
        return self.store.list(project, location, done, offset, limit)

    def cancel(self, project: str, location: str, job_id: str) -> Job:
        """Stop a queued or running operation; one already done (deploy / undeploy / delete are born done) is
        FAILED_PRECONDITION, as Google answers it."""
        job = self.get(project, location, job_id)
        if job.state.done:
            raise FailedPrecondition(
                f"operation {job_id} has already ended ({job.state.value}); only an operation that is not done "
                "(done: false) can be cancelled"
            )
        return self.store.request_cancel(job_id)

    def delete(self, project: str, location: str, job_id: str) -> None:
        self.get(project, location, job_id)
        self.store.delete(job_id)

    def wait(self, project: str, location: str, job_id: str, timeout: float) -> Job:
        deadline = time.monotonic() + timeout
        job = self.get(project, location, job_id)
        while not job.state.done and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            job = self.store.get(job_id)
        return job
