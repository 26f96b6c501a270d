"""A job is the durable record behind every operation: what was asked, where it stands, what it produced."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MAX_PARTIAL_FAILURES = 20


class JobKind(StrEnum):
    BATCH_PREDICT = "batch_predict"
    DEPLOY_MODEL = "deploy_model"
    UNDEPLOY_MODEL = "undeploy_model"
    DELETE_MODEL = "delete_model"
    VERTEX_BATCH_PREDICTION = "vertex_batch_prediction"  # a Vertex AI batchPredictionJob
    VERTEX_DELETE = "vertex_delete"  # the operation a Vertex job delete returns, born done


# Each surface sees only its own records: an AutoML batchPredict is an operation, never a Vertex job.
AUTOML_KINDS = (JobKind.BATCH_PREDICT, JobKind.DEPLOY_MODEL, JobKind.UNDEPLOY_MODEL, JobKind.DELETE_MODEL)
VERTEX_JOB_KINDS = (JobKind.VERTEX_BATCH_PREDICTION,)
VERTEX_OPERATION_KINDS = (JobKind.VERTEX_DELETE,)


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def done(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    @property
    def vertex_name(self) -> str:
        """How the Vertex AI surface shows this state (google.cloud.aiplatform.v1.JobState); a new job is PENDING,
        as the Vertex AI docs show it."""
        return "JOB_STATE_PENDING" if self == JobState.QUEUED else f"JOB_STATE_{self.value}"


@dataclass
class Job:
    id: str
    kind: JobKind
    project: str
    location: str
    model_id: str
    state: JobState
    create_time: float
    update_time: float
    request: dict[str, Any] = field(default_factory=dict)  # inputConfig / outputConfig / params as given
    output_dir: str | None = None
    total: int | None = None  # inputs, once listed
    processed: int = 0  # inputs done (results + errors), for progress
    failed: int = 0
    partial_failures: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None  # google.rpc.Status when FAILED / CANCELLED
    result_metadata: dict[str, str] = field(default_factory=dict)
    display_name: str = ""  # Vertex jobs: displayName and labels, kept as columns so lists can filter on them
    labels: dict[str, str] = field(default_factory=dict)
    start_time: float | None = None  # first claimed by a worker
    end_time: float | None = None  # reached a done state

    @classmethod
    def new(cls, kind: JobKind, project: str, location: str, model_id: str, state: JobState, **fields: Any) -> Job:
        """A fresh job with a new operation id, created now."""
        now = round(time.time(), 6)  # to the microsecond, as the APIs show it: a shown time finds the job again
        return cls(uuid.uuid4().hex[:20], kind, project, location, model_id, state, now, now, **fields)

    @property
    def progress_percent(self) -> int:
        if self.state == JobState.SUCCEEDED:
            return 100
        if not self.total:
            return 0
        return min(99, self.processed * 100 // self.total)


@dataclass(frozen=True)
class Condition:
    """One comparison of a job list filter, on the engine's terms: `field op value`.

    field: "state" (a JobState value), "display_name", "create_time" (epoch seconds) or "labels.<key>";
    op: = != < <= > >=, or ":" with value "*" (the label is set)."""

    field: str
    op: str
    value: str | float


@dataclass(frozen=True)
class ShardRecord:
    """A committed output shard: its inputs are final, in the results or the errors."""

    index: int
    succeeded: int
    failed: int
    writer: str = field(default="", compare=False)  # the worker whose staged files hold this shard
