"""Services: what the API and CLI can ask for, with no HTTP and no SQL."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from batchline.config import Settings
from batchline.errors import AlreadyExists
from batchline.models.loaded import ModelCache
from batchline.models.repository import ModelRepository
from batchline.services.jobs import JobService
from batchline.services.models import ModelService
from batchline.services.vertex_jobs import VertexJobService
from batchline.storage import Storage
from batchline.store import JobStore
from batchline.worker import Worker

log = logging.getLogger("batchline")


@dataclass
class Services:
    settings: Settings
    store: JobStore
    jobs: JobService
    models: ModelService
    worker: Worker
    vertex_jobs: VertexJobService

    def close(self) -> None:
        self.worker.stop()
        self.store.close()


def build_services(settings: Settings) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "buckets").mkdir(exist_ok=True)
    repository = ModelRepository(settings.data_dir / "models")
    register_examples(settings, repository)
    store = JobStore(settings.resolved_database_url)
    storage = Storage(settings)
    worker = Worker(settings, store, storage, repository)
    jobs = JobService(store, storage, repository, worker.wakeup)
    models = ModelService(repository, ModelCache(repository, settings.intra_op_threads), store)
    vertex_jobs = VertexJobService(store, storage, repository, worker.wakeup)
    return Services(settings, store, jobs, models, worker, vertex_jobs)


def register_examples(settings: Settings, repository: ModelRepository) -> None:
    """On first start (no models yet), import the shipped example models so there is something to run."""
    examples = settings.default_examples_dir
    if examples is None or not examples.is_dir() or repository.list():
        return
    for folder in sorted(p for p in examples.iterdir() if (p / "model.yaml").is_file()):
        try:
            repository.import_folder(folder)
            log.info("registered example model %s", folder.name)
        except AlreadyExists:
            pass
