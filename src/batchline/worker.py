"""The worker: claims batch jobs from the store, runs them, and records how they ended.

It holds a lease on the job it runs and renews it from a heartbeat thread; if the process dies, another worker
(or this one restarted) claims the job once the lease runs out and resumes after the last committed shard.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from batchline.config import Settings
from batchline.domain.jobs import Job, JobState, ShardRecord
from batchline.errors import BatchlineError, Cancelled, Internal, InvalidArgument, describe
from batchline.executor.decoding import DecodePool
from batchline.executor.local import LocalExecutor, PipelineConfig, ShardBuffer
from batchline.models.loaded import LoadedModel
from batchline.models.repository import ModelRepository
from batchline.storage import Storage
from batchline.store import JobStore
from batchline.surfaces import BATCH_KINDS, JobPlan, plan_job
from batchline.writers.staged import ShardWriter, output_dir_candidates

log = logging.getLogger("batchline.worker")


class LeaseLost(Exception):
    """Another worker took the job over; stop without touching it."""


@dataclass
class JobRun:
    """One attempt at a job by this worker."""

    job: Job
    owner: str
    settings: Settings
    store: JobStore
    storage: Storage
    load_model: Callable[[str], LoadedModel]
    decoders: Callable[[], DecodePool]

    def __post_init__(self) -> None:
        self.cancelled = threading.Event()
        self.lease_lost = False
        self.interrupted = False  # the server is stopping: leave the job, as it stands, to the next start
        self.executor: LocalExecutor | None = None
        self.model: LoadedModel  # loaded by execute(), once the heartbeat runs
        self._committed_before = 0

    def heartbeat(self, stop: threading.Event) -> None:
        # Often enough to notice a cancel within a second; the lease itself could go three times as long.
        while not stop.wait(min(1.0, self.settings.lease_seconds / 3)):
            processed = self.executor.processed + self._committed_before if self.executor else None
            progress = {"processed": processed} if processed is not None else {}
            try:
                state = self.store.heartbeat(self.job.id, self.owner, self.settings.lease_seconds, **progress)
            except Exception:  # e.g. the database busy for a moment: try again next beat, the lease has slack
                log.exception("heartbeat of job %s failed", self.job.id)
                continue
            if state is None:
                self.lease_lost = True
            if state in (None, JobState.CANCELLING):
                self.cancelled.set()

    def execute(self) -> tuple[JobState, dict]:
        """Run the job to its end; the heartbeat runs meanwhile, from before the model loads."""
        self.model = self.load_model(self.job.model_id)
        log.info("job %s: model %s on %s", self.job.id, self.job.model_id, self.model.runtime.device)
        if self.cancelled.is_set():  # cancelled, or the server stopping, while the model loaded
            raise LeaseLost if self.lease_lost or self.interrupted else Cancelled("cancelled by the user")
        job, store = self.job, self.store
        plan = plan_job(job, self.model.problem, self.storage, self.settings)
        total = plan.count_inputs()
        if job.output_dir is None:  # a resumed job keeps the folder it has
            display_name = self.model.stored.manifest.display_name
            names = output_dir_candidates(self.storage, plan.output_prefix, display_name, job.create_time)
            job.output_dir = store.claim_output_dir(job.id, names)
        committed = store.committed_shards(job.id)
        self._committed_before = sum(s.succeeded + s.failed for s in committed)
        store.update(job.id, total=total, processed=self._committed_before)
        writer = plan.writer(job.output_dir)
        config = PipelineConfig(
            batch_size=plan.batch_size or self.settings.batch_size or self.model.stored.manifest.batch_size,
            io_threads=self.settings.io_threads,
            shard_size=self.settings.shard_size,
            inference_streams=self.settings.batch_streams(self.model.runtime.device),
            read_timeout=self.settings.read_timeout_seconds,
        )
        self.executor = LocalExecutor(self.model, self.storage, plan.params, config, self.decoders())
        cancelled: BatchlineError | None = None
        try:
            self.executor.run(
                plan.inputs(),
                total,
                {s.index for s in committed},
                lambda shard: self._commit(plan, writer, shard),
                self.cancelled,
            )
        except Cancelled as exc:
            if self.lease_lost or self.interrupted:
                raise LeaseLost from None
            cancelled = exc
        except LeaseLost:
            raise
        except BaseException:  # a failing job still publishes the shards it committed
            writer.finalize(store.committed_shards(job.id))
            raise
        shards = store.committed_shards(job.id)
        writer.finalize(shards)
        if cancelled is not None:
            raise cancelled
        done = sum(s.succeeded + s.failed for s in shards)
        if done != total:  # the input files changed between the count and the run
            raise Internal(f"{done} of {total} inputs were predicted; the input files changed while the job ran")
        return self._verdict(plan, shards, total)

    def _commit(self, plan: JobPlan, writer: ShardWriter, shard: ShardBuffer) -> None:
        writer.stage(shard.index, self.owner, shard.results, shard.errors)
        failures = [
            {"code": status["code"], "message": plan.encoder.failure_message(item_id, status)}
            for _, item_id, status in shard.errors
        ]
        record = ShardRecord(shard.index, len(shard.results), len(shard.errors))
        if not self.store.commit_shard(self.job.id, self.owner, record, failures):
            raise LeaseLost

    def _verdict(self, plan: JobPlan, shards: list[ShardRecord], total: int) -> tuple[JobState, dict]:
        failed = sum(s.failed for s in shards)
        values: dict = {"failed": failed, "processed": total, "result_metadata": plan.result_metadata}
        limit = plan.max_failed_ratio
        if limit is not None and total and failed / total > limit:
            message = (
                f"{failed} of {total} inputs failed ({failed / total:.0%}), more than the {limit:.0%} allowed "
                f"(BATCHLINE_MAX_FAILED_RATIO); the output folder {self.job.output_dir} says which and why"
            )
            return JobState.FAILED, {**values, "error": InvalidArgument(message).to_status()}
        return JobState.SUCCEEDED, values


class Worker:
    def __init__(self, settings: Settings, store: JobStore, storage: Storage, repository: ModelRepository):
        self.settings = settings
        self.store = store
        self.storage = storage
        self.repository = repository
        self.owner = uuid.uuid4().hex
        self.wakeup = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._model: LoadedModel | None = None  # kept between jobs: loading a session costs more than a small job
        self._decoders: DecodePool | None = None  # likewise its decoder processes, started at the first job
        self._run: JobRun | None = None  # the job running now, so that stop() can interrupt it

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="batchline-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wakeup.set()
        run = self._run
        if run is not None:  # stop at the next input rather than at the end of the job; its shards stay committed
            run.interrupted = True
            run.cancelled.set()
        if self._thread:
            self._thread.join(timeout=30)
        if self._model is not None:
            self._model.close()
        if self._decoders is not None:
            self._decoders.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.run_one()
            except Exception:  # never let one bad job kill the worker
                log.exception("worker loop error")
                worked = False
            if not worked:
                self.wakeup.wait(timeout=min(1.0, self.settings.lease_seconds / 3))
                self.wakeup.clear()

    def _load(self, model_id: str) -> LoadedModel:
        stored = self.repository.get(model_id)
        if self._model is None or self._model.stored != stored:
            if self._model is not None:
                self._model.close()
            self._model = LoadedModel.load(stored, self.settings.batch_intra_op_threads)
        return self._model

    def _decode_pool(self) -> DecodePool:
        if self._decoders is None:
            self._decoders = DecodePool(self.settings.decode_processes)
        return self._decoders

    def run_one(self) -> bool:
        """Claim and run one job; False if there was none."""
        job = self.store.claim(self.owner, self.settings.lease_seconds, kinds=BATCH_KINDS)
        if job is None:
            return False
        if job.state == JobState.CANCELLING:  # cancelled while its previous worker was gone
            self.store.finish(
                job.id, self.owner, JobState.CANCELLED, error=Cancelled("cancelled by the user").to_status()
            )
            return True
        log.info("running job %s", job.id)
        stop = threading.Event()
        run = self._run = JobRun(
            job, self.owner, self.settings, self.store, self.storage, self._load, self._decode_pool
        )
        if self._stop.is_set():  # stop() came between the claim and now: hand the job straight back
            run.interrupted = True
            run.cancelled.set()
        try:
            beat = threading.Thread(target=run.heartbeat, args=(stop,), daemon=True)
            beat.start()
            state, values = run.execute()
        except LeaseLost:
            if run.interrupted:
                self.store.release(job.id, self.owner)
                log.warning("job %s interrupted by shutdown; the next start resumes it", job.id)
            else:
                log.warning("job %s was taken over by another worker", job.id)
            return True
        except Cancelled as exc:
            state, values = JobState.CANCELLED, {"error": exc.to_status()}
        except BatchlineError as exc:
            state, values = JobState.FAILED, {"error": exc.to_status()}
        except Exception as exc:
            log.exception("job %s failed", job.id)
            state, values = JobState.FAILED, {"error": Internal(describe(exc)).to_status()}
        finally:
            stop.set()
            self._run = None
        self.store.finish(job.id, self.owner, state, **values)
        log.info("job %s ended %s", job.id, state)
        return True
