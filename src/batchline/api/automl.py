"""The AutoML v1 REST surface: one router over the shared services.

Custom verbs (`models/M:predict`, `operations/O:cancel`) share a path segment with the resource id, so each
collection has one route per HTTP method that splits the verb off and dispatches.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from batchline.api import schemas
from batchline.api.http import Verbs, json_body, page, refuse_other_methods
from batchline.api.limits import MAX_BODY_BYTES, MAX_PREDICT_BODY_BYTES
from batchline.errors import InvalidArgument
from batchline.services import Services
from batchline.surfaces import automl

PREFIX = "/v1/projects/{project}/locations/{location}"
MAX_WAIT_SECONDS = 600
MODEL = Verbs("model", GET=[""], DELETE=[""], POST=["batchPredict", "deploy", "predict", "undeploy"])
OPERATION = Verbs("operation", GET=[""], DELETE=[""], POST=["cancel", "wait"])


def _done_filter(text: str) -> bool | None:
    """ListOperations filter: empty, or `done = true|false`."""
    if not text.strip():
        return None
    match = re.fullmatch(r"\s*done\s*=\s*(true|false)\s*", text, re.IGNORECASE)
    if match is None:
        raise InvalidArgument(f"unsupported filter {text!r}; supported: 'done = true' or 'done = false'")
    return match.group(1).lower() == "true"


def _metadata_filter(text: str) -> str | None:
    """ListModels filter: empty, or `<problem>_model_metadata:*`."""
    if not text.strip():
        return None
    match = re.fullmatch(r"\s*(\w+_model_metadata)\s*:\s*\*\s*", text)
    if match is None:
        raise InvalidArgument(f"unsupported filter {text!r}; supported: e.g. 'image_classification_model_metadata:*'")
    camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), match.group(1))
    return camel[0].lower() + camel[1:]


def automl_router(services: Services) -> APIRouter:
    router = APIRouter()
    _model_routes(router, services)
    _operation_routes(router, services)
    return router


def _model_routes(router: APIRouter, services: Services) -> None:
    jobs, models = services.jobs, services.models

    @router.get(PREFIX + "/models")
    def list_models(project: str, location: str, request: Request) -> dict:
        wanted = _metadata_filter(request.query_params.get("filter", ""))
        offset, size = page(request)
        found = [schemas.model_resource(project, location, m, models.is_deployed(m.manifest.id)) for m in models.list()]
        found = [m for m in found if wanted is None or wanted in m]
        shown = found[offset : offset + size]
        token = str(offset + size) if offset + size < len(found) else ""
        return {"model": shown, "nextPageToken": token}

    refuse_other_methods(router, PREFIX + "/models", ["GET"])

    @router.get(PREFIX + "/models/{segment}")
    def get_model(project: str, location: str, segment: str, request: Request) -> dict:
        model_id, _ = MODEL.split(request, segment)
        return schemas.model_resource(project, location, models.get(model_id), models.is_deployed(model_id))

    @router.delete(PREFIX + "/models/{segment}")
    def delete_model(project: str, location: str, segment: str, request: Request) -> dict:
        model_id, _ = MODEL.split(request, segment)
        return schemas.operation(models.delete(project, location, model_id))

    @router.post(PREFIX + "/models/{segment}")
    async def model_method(project: str, location: str, segment: str, request: Request) -> dict:
        model_id, verb = MODEL.split(request, segment)
        body = await json_body(request, MAX_PREDICT_BODY_BYTES if verb == "predict" else MAX_BODY_BYTES)
        if verb == "predict":
            return await run_in_threadpool(_predict, model_id, body)
        if verb == "batchPredict":
            req = schemas.parse(schemas.BatchPredictRequest, body)
            job = await run_in_threadpool(
                jobs.submit_batch_predict, project, location, model_id, req.model_dump(by_alias=True)
            )
            return schemas.operation(job)
        action = models.deploy if verb == "deploy" else models.undeploy  # MODEL.split let only these through
        return schemas.operation(await run_in_threadpool(action, project, location, model_id))

    MODEL.refuse_other_methods(router, PREFIX + "/models/{segment}")

    def _predict(model_id: str, body: dict) -> dict:
        req = schemas.parse(schemas.PredictRequest, body)
        if req.payload.image is None:
            raise InvalidArgument('payload.image is required: {"payload": {"image": {"imageBytes": BASE64}}}')
        prediction, metadata = models.predict(model_id, req.payload.image.decoded(), req.params)
        return {"payload": automl.online_payload(prediction), "metadata": metadata}


def _operation_routes(router: APIRouter, services: Services) -> None:
    jobs = services.jobs

    @router.get(PREFIX + "/operations")
    def list_operations(project: str, location: str, request: Request) -> dict:
        done = _done_filter(request.query_params.get("filter", ""))
        offset, size = page(request)
        found = jobs.list(project, location, done, offset, size + 1)
        token = str(offset + size) if len(found) > size else ""
        return {"operations": [schemas.operation(j) for j in found[:size]], "nextPageToken": token}

    refuse_other_methods(router, PREFIX + "/operations", ["GET"])

    @router.get(PREFIX + "/operations/{segment}")
    def get_operation(project: str, location: str, segment: str, request: Request) -> dict:
        op_id, _ = OPERATION.split(request, segment)
        return schemas.operation(jobs.get(project, location, op_id))

    @router.delete(PREFIX + "/operations/{segment}")
    def delete_operation(project: str, location: str, segment: str, request: Request) -> dict:
        op_id, _ = OPERATION.split(request, segment)
        jobs.delete(project, location, op_id)
        return {}

    @router.post(PREFIX + "/operations/{segment}")
    async def operation_method(project: str, location: str, segment: str, request: Request) -> dict:
        op_id, verb = OPERATION.split(request, segment)
        body = await json_body(request)
        if verb == "cancel":
            await run_in_threadpool(jobs.cancel, project, location, op_id)
            return {}
        timeout = _duration(body.get("timeout", f"{MAX_WAIT_SECONDS}s"))  # :wait, the other verb OPERATION takes
        job = await run_in_threadpool(jobs.wait, project, location, op_id, timeout)
        return schemas.operation(job)

    OPERATION.refuse_other_methods(router, PREFIX + "/operations/{segment}")


def _duration(value: Any) -> float:
    """A google.protobuf.Duration in JSON ("30s", "1.5s"), capped."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(value).strip())
    if match is None:
        raise InvalidArgument(f'timeout must be a duration like "30s", got {value!r}')
    return min(float(match.group(1)), MAX_WAIT_SECONDS)
