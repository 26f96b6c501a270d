"""What each surface asks of a batch run: the plan the worker runs a job of each kind by."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchline.config import Settings
from batchline.domain.jobs import Job, JobKind, JobState
from batchline.domain.predictions import Classification, Label
from batchline.errors import InvalidArgument
from batchline.models.repository import ModelRepository
from batchline.problems import problem_for
from batchline.problems.base import Problem
from batchline.storage import Storage
from batchline.surfaces import BATCH_KINDS, plan_job
from batchline.writers.automl import AutomlWriter
from batchline.writers.vertex import VertexWriter

OUTPUT = {"gcsDestination": {"outputUriPrefix": "gs://b/out"}}
RED = Classification((Label("red", 0.9),))


@pytest.fixture
def problem(data_dir: Path) -> Problem:
    return problem_for(ModelRepository(data_dir / "models").get("colors").manifest)


def job(kind: JobKind, request: dict) -> Job:
    return Job.new(kind, "p", "us-central1", "colors", JobState.RUNNING, request=request)


def test_the_worker_claims_both_surfaces_batch_jobs() -> None:
    assert set(BATCH_KINDS) == {JobKind.BATCH_PREDICT, JobKind.VERTEX_BATCH_PREDICTION}


def test_an_automl_job_reads_csv_lists_and_fails_above_the_failed_ratio(
    settings: Settings, data_dir: Path, problem: Problem
) -> None:
    (data_dir / "buckets" / "b" / "batch.csv").write_text("gs://b/a.jpg\ngs://b/b.jpg\ngs://b/a.jpg\n")
    request = {"inputConfig": {"gcsSource": {"inputUris": ["gs://b/batch.csv"]}}, "outputConfig": OUTPUT}

    request["params"] = {"score_threshold": "0.3"}

    plan = plan_job(job(JobKind.BATCH_PREDICT, request), problem, Storage(settings), settings)

    assert [i.uri for i in plan.inputs()] == ["gs://b/a.jpg", "gs://b/b.jpg"] and plan.count_inputs() == 2
    assert plan.params.score_threshold == 0.3 and plan.output_prefix == "gs://b/out"
    assert plan.max_failed_ratio == settings.max_failed_ratio and plan.batch_size is None
    assert isinstance(plan.writer("gs://b/out/x"), AutomlWriter)
    assert json.loads(plan.encoder.result_line("gs://b/a.jpg", RED))["ID"] == "gs://b/a.jpg"
    assert plan.encoder.failure_message("gs://b/a.jpg", {"code": 5, "message": "gone"}) == "gs://b/a.jpg: gone"


def test_a_vertex_job_reads_instances_takes_model_parameters_and_its_batch_size(
    settings: Settings, data_dir: Path, problem: Problem
) -> None:
    (data_dir / "buckets" / "b" / "in.jsonl").write_text('{"content": "gs://b/a.jpg"}\nnot json\n')
    request = {
        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://b/in.jsonl"]}},
        "outputConfig": OUTPUT,
        "modelParameters": {"confidenceThreshold": 0.5, "maxPredictions": 1},
        "manualBatchTuningParameters": {"batchSize": 3},
    }

    plan = plan_job(job(JobKind.VERTEX_BATCH_PREDICTION, request), problem, Storage(settings), settings)

    good, bad = plan.inputs()
    assert good.uri == "gs://b/a.jpg" and bad.error is not None and plan.count_inputs() == 2
    assert plan.params.score_threshold == 0.5 and plan.batch_size == 3
    assert plan.max_failed_ratio is None  # a job with failed instances succeeds
    assert isinstance(plan.writer("gs://b/out/x"), VertexWriter)
    line = json.loads(plan.encoder.result_line(good.id, RED))
    assert line["instance"] == {"content": "gs://b/a.jpg"} and line["prediction"]["displayNames"] == ["red"]


def test_a_vertex_job_without_a_batch_size_leaves_it_to_the_settings(
    settings: Settings, data_dir: Path, problem: Problem
) -> None:
    request = {
        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://b/in.jsonl"]}},
        "outputConfig": OUTPUT,
        "manualBatchTuningParameters": {"batchSize": 0},
    }

    plan = plan_job(job(JobKind.VERTEX_BATCH_PREDICTION, request), problem, Storage(settings), settings)

    assert plan.batch_size is None


def test_a_vertex_job_with_bad_model_parameters_fails(settings: Settings, problem: Problem) -> None:
    request = {
        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://b/in.jsonl"]}},
        "outputConfig": OUTPUT,
        "modelParameters": {"maxPredictions": "3"},
    }

    with pytest.raises(InvalidArgument, match="maxPredictions"):
        plan_job(job(JobKind.VERTEX_BATCH_PREDICTION, request), problem, Storage(settings), settings)
