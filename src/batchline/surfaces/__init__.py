"""What each API surface asks of a batch run, decided in one place per job kind.

The engine (worker + executor) runs any job the same way: list inputs, predict them shard by shard, stage and
publish each shard, record it, finalize. A surface chooses only what differs: how its request names inputs and
parameters, the output layout and line format, the batch size it may ask for, and when failed inputs fail the job.
Which problems a surface serves, and how, is a catalog row per problem (surfaces/automl.py, surfaces/vertex.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from batchline.config import Settings
from batchline.domain.jobs import Job, JobKind
from batchline.executor.inputs import Input, count_inputs, iter_inputs
from batchline.executor.vertex_inputs import InstanceSource, count_instances, iter_instances
from batchline.problems.base import Params, Problem
from batchline.storage import Storage
from batchline.surfaces import automl, vertex
from batchline.writers.staged import LineEncoder, ShardWriter
from batchline.writers.vertex import VertexWriter


@dataclass(frozen=True)
class JobPlan:
    """A batch job as the engine runs it."""

    params: Params  # the problem's, typed
    inputs: Callable[[], Iterator[Input]]  # every input in a stable order (a resumed run skips by position)
    count_inputs: Callable[[], int]  # reads every input file once: a bad file fails the job before any output
    output_prefix: str  # the job writes into a prediction-<model>-<time> folder under it
    writer: Callable[[str], ShardWriter]  # the output layout, for the output folder
    encoder: LineEncoder  # names failed inputs in partialFailures
    batch_size: int | None = None  # asked for by the request; None: the settings' or the model's
    max_failed_ratio: float | None = None  # above it the job FAILS; None: failed inputs never fail it
    result_metadata: dict[str, str] = field(default_factory=dict)


def plan_job(job: Job, problem: Problem, storage: Storage, settings: Settings) -> JobPlan:
    """The plan of a claimed job; InvalidArgument (the job fails) if its request cannot be run."""
    return _PLANNERS[job.kind](job.request, problem, storage, settings)


def _automl(request: dict[str, Any], problem: Problem, storage: Storage, settings: Settings) -> JobPlan:
    """batchPredict: CSV files of inputs, `params` as strings, <stem>_N.jsonl, BATCHLINE_MAX_FAILED_RATIO."""
    row = automl.spec(problem)
    params = automl.params(problem, request.get("params") or {})
    uris = request["inputConfig"]["gcsSource"]["inputUris"]
    return JobPlan(
        params=params,
        inputs=partial(iter_inputs, storage, uris, row.rows),
        count_inputs=partial(count_inputs, storage, uris, row.rows),
        output_prefix=request["outputConfig"]["gcsDestination"]["outputUriPrefix"],
        writer=partial(row.writer, storage),
        encoder=automl.AutomlEncoder(),
        max_failed_ratio=settings.max_failed_ratio,
        result_metadata=automl.result_metadata(problem, params),
    )


def _vertex(request: dict[str, Any], problem: Problem, storage: Storage, settings: Settings) -> JobPlan:
    """A batchPredictionJob: instances files, modelParameters, predictions_00001.jsonl; a job with failed instances
    succeeds, with them counted and listed."""
    params = vertex.params(problem, request.get("modelParameters"))
    source = InstanceSource.from_job(request, vertex.spec(problem).media)
    source.check()
    batch_size = (request.get("manualBatchTuningParameters") or {}).get("batchSize") or None
    return JobPlan(
        params=params,
        inputs=partial(iter_instances, storage, source),
        count_inputs=partial(count_instances, storage, source),
        output_prefix=request["outputConfig"]["gcsDestination"]["outputUriPrefix"],
        writer=partial(VertexWriter, storage, encoder=vertex.VertexEncoder()),
        encoder=vertex.VertexEncoder(),
        batch_size=batch_size,
    )


_PLANNERS: dict[JobKind, Callable[[dict[str, Any], Problem, Storage, Settings], JobPlan]] = {
    JobKind.BATCH_PREDICT: _automl,
    JobKind.VERTEX_BATCH_PREDICTION: _vertex,
}
BATCH_KINDS = tuple(_PLANNERS)  # the job kinds the worker claims
