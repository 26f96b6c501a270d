"""AutoML v1 wire messages: requests in (camelCase or snake_case), resources and operations out."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from batchline.api.limits import MAX_INPUT_URIS, MAX_PARAM_CHARS, MAX_PARAMS, MAX_URI_CHARS
from batchline.domain.jobs import Job, JobKind
from batchline.errors import InvalidArgument
from batchline.models.repository import StoredModel
from batchline.names import model_name, operation_name
from batchline.problems.image.decode import MAX_IMAGE_BYTES
from batchline.surfaces import automl

TYPE_PREFIX = "type.googleapis.com/"


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


Uri = Annotated[str, Field(max_length=MAX_URI_CHARS)]
ParamText = Annotated[str, Field(max_length=MAX_PARAM_CHARS)]
Params = Annotated[dict[ParamText, ParamText], Field(max_length=MAX_PARAMS)]


class GcsSource(Wire):
    input_uris: list[Uri] = Field(min_length=1, max_length=MAX_INPUT_URIS)


class InputConfig(Wire):
    gcs_source: GcsSource


class GcsDestination(Wire):
    output_uri_prefix: str = Field(min_length=1, max_length=MAX_URI_CHARS)


class OutputConfig(Wire):
    gcs_destination: GcsDestination


def _params_as_strings(value: Any) -> Any:
    if isinstance(value, dict):  # the API takes map<string, string>; curl users write numbers too
        return {
            k: v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()
        }
    return value


class BatchPredictRequest(Wire):
    input_config: InputConfig
    output_config: OutputConfig
    params: Params = Field(default_factory=dict)

    _strings = field_validator("params", mode="before")(_params_as_strings)


class Image(Wire):
    image_bytes: str

    def decoded(self) -> bytes:
        try:
            data = base64.b64decode(self.image_bytes, validate=True)
        except (binascii.Error, ValueError):
            try:  # URL-safe alphabet, as some encoders write it
                data = base64.b64decode(self.image_bytes, altchars=b"-_", validate=True)
            except (binascii.Error, ValueError):
                raise InvalidArgument("payload.image.imageBytes is not valid base64") from None
        if len(data) > MAX_IMAGE_BYTES:
            raise InvalidArgument(f"payload.image.imageBytes is over the {MAX_IMAGE_BYTES // 2**20} MB image limit")
        return data


class ExamplePayload(Wire):
    image: Image | None = None


class PredictRequest(Wire):
    payload: ExamplePayload
    params: Params = Field(default_factory=dict)

    _strings = field_validator("params", mode="before")(_params_as_strings)


MAX_PROBLEMS_SHOWN = 10  # an error message names the first bad fields, not each of thousands


def parse(message: type[Wire], body: Any) -> Any:
    """Validate a request body; InvalidArgument names each bad field (its path shortened where a key is long)."""
    try:
        return message.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = "; ".join(
            f"{'.'.join(_short(p) for p in e['loc']) or 'body'}: {e['msg']}{_advice(e)}"
            for e in errors[:MAX_PROBLEMS_SHOWN]
        )
        if len(errors) > MAX_PROBLEMS_SHOWN:
            problems += f"; and {len(errors) - MAX_PROBLEMS_SHOWN} more"
        raise InvalidArgument(f"invalid {message.__name__}: {problems}") from None


_TOO_MANY_URIS = "; one input file lists any number of inputs: pass fewer, larger files"
_ADVICE_WHEN_TOO_LONG = {"inputUris": _TOO_MANY_URIS, "uris": _TOO_MANY_URIS}  # a list too long, by its field


def _advice(error: Any) -> str:
    field = error["loc"][-1] if error["loc"] else ""
    return _ADVICE_WHEN_TOO_LONG.get(field, "") if error["type"] == "too_long" and isinstance(field, str) else ""


def _short(part: Any, most: int = 40) -> str:
    text = str(part)
    return text if len(text) <= most else f"{text[:most]}... ({len(text):,} characters)"


# -- encoding


def timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def model_resource(project: str, location: str, model: StoredModel, deployed: bool) -> dict[str, Any]:
    created = timestamp(model.create_time.timestamp())
    return {
        "name": model_name(project, location, model.manifest.id),
        "displayName": model.manifest.display_name,
        "datasetId": "",
        "createTime": created,
        "updateTime": created,
        "deploymentState": "DEPLOYED" if deployed else "UNDEPLOYED",
        "etag": str(int(model.create_time.timestamp())),
        automl.model_metadata_key(model.manifest.problem): {"modelType": model.manifest.format, "nodeCount": "1"},
    }


_DETAILS = {
    JobKind.BATCH_PREDICT: "batchPredictDetails",
    JobKind.DEPLOY_MODEL: "deployModelDetails",
    JobKind.UNDEPLOY_MODEL: "undeployModelDetails",
    JobKind.DELETE_MODEL: "deleteDetails",
}


def operation(job: Job) -> dict[str, Any]:
    """The google.longrunning.Operation view of a job; only fields the strict client parser knows."""
    metadata: dict[str, Any] = {
        "@type": TYPE_PREFIX + "google.cloud.automl.v1.OperationMetadata",
        "createTime": timestamp(job.create_time),
        "updateTime": timestamp(job.update_time),
        "progressPercent": job.progress_percent,
        _DETAILS[job.kind]: {},
    }
    if job.partial_failures:
        metadata["partialFailures"] = [{"code": f["code"], "message": f["message"]} for f in job.partial_failures]
    if job.kind == JobKind.BATCH_PREDICT:
        details = {"inputConfig": job.request["inputConfig"]}
        if job.output_dir:
            details["outputInfo"] = {"gcsOutputDirectory": job.output_dir}
        metadata["batchPredictDetails"] = details
    body: dict[str, Any] = {"name": operation_name(job.project, job.location, job.id), "metadata": metadata}
    if not job.state.done:
        body["done"] = False
    elif job.error:
        body.update(done=True, error={"code": job.error["code"], "message": job.error["message"]})
    elif job.kind == JobKind.BATCH_PREDICT:
        result = {"@type": TYPE_PREFIX + "google.cloud.automl.v1.BatchPredictResult", "metadata": job.result_metadata}
        body.update(done=True, response=result)
    else:
        body.update(done=True, response={"@type": TYPE_PREFIX + "google.protobuf.Empty"})
    return body
