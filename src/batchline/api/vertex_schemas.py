"""Vertex AI v1 wire messages: the BatchPredictionJob body in, jobs, models and operations out."""

from __future__ import annotations

import time
from typing import Annotated, Any

from pydantic import Field

from batchline.api.limits import (
    MAX_DISPLAY_NAME_CHARS,
    MAX_INPUT_URIS,
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_RESOURCE_NAME_CHARS,
    MAX_URI_CHARS,
)
from batchline.api.schemas import TYPE_PREFIX, Uri, Wire, timestamp
from batchline.domain.jobs import Job, JobKind, JobState
from batchline.errors import InvalidArgument
from batchline.executor.vertex_inputs import FORMATS
from batchline.models.repository import StoredModel
from batchline.names import ResourceName, model_name

MODEL_VERSION = "1"  # batchline keeps one version of a model: "1", alias "default"
MODEL_VERSION_ALIASES = ["default"]
PREDICTIONS_FORMATS = ("jsonl",)

# Every google.cloud.aiplatform.v1.JobState, and the engine state each means (those batchline never reaches: none).
VERTEX_STATES = tuple(
    f"JOB_STATE_{s}"
    for s in "UNSPECIFIED QUEUED PENDING RUNNING SUCCEEDED FAILED CANCELLING CANCELLED PAUSED EXPIRED UPDATING "
    "PARTIALLY_SUCCEEDED".split()
)
ENGINE_STATES = {state.vertex_name: state for state in JobState} | {"JOB_STATE_QUEUED": JobState.QUEUED}


LabelKey = Annotated[str, Field(min_length=1, max_length=MAX_LABEL_CHARS)]
LabelValue = Annotated[str, Field(max_length=MAX_LABEL_CHARS)]


class GcsSource(Wire):
    uris: list[Uri] = Field(min_length=1, max_length=MAX_INPUT_URIS)


class InputConfig(Wire):
    instances_format: str
    gcs_source: GcsSource | None = None
    bigquery_source: dict[str, Any] | None = None


class InstanceConfig(Wire):
    instance_type: str = ""
    key_field: str = ""
    included_fields: list[str] = Field(default_factory=list)
    excluded_fields: list[str] = Field(default_factory=list)


class GcsDestination(Wire):
    output_uri_prefix: str = Field(min_length=1, max_length=MAX_URI_CHARS)


class OutputConfig(Wire):
    predictions_format: str
    gcs_destination: GcsDestination | None = None
    bigquery_destination: dict[str, Any] | None = None


MAX_BATCH_SIZE = 1024  # a batch size sizes the shared-memory batches and the inputs held at once


class ManualBatchTuningParameters(Wire):
    batch_size: int = Field(0, ge=0, le=MAX_BATCH_SIZE)


class BatchPredictionJobRequest(Wire):
    """The job as CreateBatchPredictionJob takes it. Fields about machines, service accounts and keys are
    accepted and have no effect here (one machine runs everything); output-only fields are refused."""

    display_name: str = Field(min_length=1, max_length=MAX_DISPLAY_NAME_CHARS)
    model: str = Field(min_length=1, max_length=MAX_RESOURCE_NAME_CHARS)
    input_config: InputConfig
    instance_config: InstanceConfig | None = None
    model_parameters: Any = None
    output_config: OutputConfig
    manual_batch_tuning_parameters: ManualBatchTuningParameters | None = None
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=MAX_LABELS)
    generate_explanation: bool = False
    # accepted, without effect
    dedicated_resources: dict[str, Any] | None = None
    service_account: str | None = None
    encryption_spec: dict[str, Any] | None = None
    disable_container_logging: bool | None = None


def check_formats(request: BatchPredictionJobRequest) -> None:
    """Where inputs and outputs may be (instance formats: InstanceSource.check); INVALID_ARGUMENT otherwise."""
    if request.input_config.gcs_source is None:
        raise InvalidArgument('inputConfig.gcsSource is required: {"gcsSource": {"uris": ["gs://b/in.jsonl"]}}')
    if request.output_config.predictions_format not in PREDICTIONS_FORMATS:
        raise InvalidArgument(
            f"outputConfig.predictionsFormat {request.output_config.predictions_format!r} is not supported; use jsonl"
        )
    if request.output_config.gcs_destination is None:
        raise InvalidArgument('outputConfig.gcsDestination is required: {"gcsDestination": {"outputUriPrefix": ...}}')
    if request.generate_explanation:
        raise InvalidArgument("generateExplanation is not supported by batchline; leave it out")


# -- encoding


def job_name(job: Job) -> str:
    return str(ResourceName(job.project, job.location, "batchPredictionJobs", job.id))


def job_resource(job: Job, counts: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """The BatchPredictionJob view of a job; `counts` = (succeeded, failed) inputs in its committed shards."""
    request = job.request
    body: dict[str, Any] = {
        "name": job_name(job),
        "displayName": job.display_name,
        "model": request["model"],
        "modelVersionId": MODEL_VERSION,
    }
    for key in ("inputConfig", "instanceConfig", "modelParameters", "outputConfig", "manualBatchTuningParameters"):
        if key in request:
            body[key] = request[key]
    if job.labels:
        body["labels"] = job.labels
    body["state"] = job.state.vertex_name
    if job.error:
        body["error"] = {"code": job.error["code"], "message": job.error["message"]}
    if job.partial_failures:
        body["partialFailures"] = [{"code": f["code"], "message": f["message"]} for f in job.partial_failures]
    succeeded, failed = counts
    incomplete = max(0, (job.total or 0) - succeeded - failed)
    body["completionStats"] = {  # int64 as strings, as proto3 JSON writes them
        "successfulCount": str(succeeded),
        "failedCount": str(failed),
        "incompleteCount": str(incomplete),
    }
    if job.output_dir:
        body["outputInfo"] = {"gcsOutputDirectory": job.output_dir}
    body["createTime"] = timestamp(job.create_time)
    if job.start_time is not None:
        body["startTime"] = timestamp(job.start_time)
        ran = (job.end_time or time.time()) - job.start_time
        body["resourcesConsumed"] = {"replicaHours": round(max(0.0, ran) / 3600, 6)}
    if job.end_time is not None:
        body["endTime"] = timestamp(job.end_time)
    body["updateTime"] = timestamp(job.update_time)
    return body


def model_resource(project: str, location: str, model: StoredModel) -> dict[str, Any]:
    created = timestamp(model.create_time.timestamp())
    return {
        "name": model_name(project, location, model.manifest.id),
        "displayName": model.manifest.display_name,
        "versionId": MODEL_VERSION,
        "versionAliases": MODEL_VERSION_ALIASES,
        "versionCreateTime": created,
        "versionUpdateTime": created,
        "createTime": created,
        "updateTime": created,
        "supportedInputStorageFormats": list(FORMATS),
        "supportedOutputStorageFormats": list(PREDICTIONS_FORMATS),
        "labels": {"problem": model.manifest.problem},
    }


def operation(job: Job) -> dict[str, Any]:
    """A Vertex long-running operation; batchline's are born done (deleting a job)."""
    assert job.kind == JobKind.VERTEX_DELETE
    return {
        "name": str(ResourceName(job.project, job.location, "operations", job.id)),
        "metadata": {
            "@type": TYPE_PREFIX + "google.cloud.aiplatform.v1.DeleteOperationMetadata",
            "genericMetadata": {"createTime": timestamp(job.create_time), "updateTime": timestamp(job.update_time)},
        },
        "done": True,
        "response": {"@type": TYPE_PREFIX + "google.protobuf.Empty"},
    }
