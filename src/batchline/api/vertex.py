"""The Vertex AI v1 REST surface (served on its own port): batchPredictionJobs, models, operations.

Its ListModels answers `{"models": [...]}` where AutoML's answers `{"model": [...]}` on the same path, hence a
second app. The aiplatform client polls operations under /ui/..., other clients under /v1/...: both are served.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from batchline.api import vertex_schemas as wire
from batchline.api.http import Verbs, json_body, page, refuse_other_methods
from batchline.api.schemas import parse
from batchline.api.vertex_filter import parse_filter
from batchline.domain.jobs import Job
from batchline.services import Services
from batchline.services.vertex_jobs import resolve_model

PREFIX = "/v1/projects/{project}/locations/{location}"
JOB = Verbs("batchPredictionJob", GET=[""], DELETE=[""], POST=["cancel"])
MODEL = Verbs("model", GET=[""])
OPERATION = Verbs("operation", GET=[""])


def vertex_router(services: Services) -> APIRouter:
    router = APIRouter()
    _job_routes(router, services)
    _model_routes(router, services)
    _operation_routes(router, services)
    return router


def _job_routes(router: APIRouter, services: Services) -> None:
    jobs = services.vertex_jobs

    def resource(job: Job) -> dict:
        return wire.job_resource(job, jobs.completion([job]).get(job.id, (0, 0)))

    @router.post(PREFIX + "/batchPredictionJobs")
    async def create_job(project: str, location: str, request: Request) -> dict:
        body = parse(wire.BatchPredictionJobRequest, await json_body(request))
        wire.check_formats(body)
        stored = body.model_dump(by_alias=True, exclude_unset=True)
        job = await run_in_threadpool(jobs.create, project, location, stored)
        return wire.job_resource(job)

    @router.get(PREFIX + "/batchPredictionJobs")
    def list_jobs(project: str, location: str, request: Request) -> dict:
        conditions = parse_filter(request.query_params.get("filter", ""))
        offset, size = page(request)
        found = jobs.list(project, location, conditions, offset, size + 1)
        shown = found[:size]
        counts = jobs.completion(shown)
        token = str(offset + size) if len(found) > size else ""
        listed = [wire.job_resource(j, counts.get(j.id, (0, 0))) for j in shown]
        return {"batchPredictionJobs": listed, "nextPageToken": token}

    refuse_other_methods(router, PREFIX + "/batchPredictionJobs", ["GET", "POST"])

    @router.get(PREFIX + "/batchPredictionJobs/{segment}")
    def get_job(project: str, location: str, segment: str, request: Request) -> dict:
        job_id, _ = JOB.split(request, segment)
        return resource(jobs.get(project, location, job_id))

    @router.post(PREFIX + "/batchPredictionJobs/{segment}")
    async def job_method(project: str, location: str, segment: str, request: Request) -> dict:
        job_id, _ = JOB.split(request, segment)  # POST takes :cancel only
        await json_body(request)  # CancelBatchPredictionJobRequest has no body fields; `{}` arrives
        await run_in_threadpool(jobs.cancel, project, location, job_id)
        return {}

    @router.delete(PREFIX + "/batchPredictionJobs/{segment}")
    def delete_job(project: str, location: str, segment: str, request: Request) -> dict:
        job_id, _ = JOB.split(request, segment)
        return wire.operation(jobs.delete(project, location, job_id))

    JOB.refuse_other_methods(router, PREFIX + "/batchPredictionJobs/{segment}")


def _model_routes(router: APIRouter, services: Services) -> None:
    models = services.models

    @router.get(PREFIX + "/models")
    def list_models(project: str, location: str, request: Request) -> dict:
        offset, size = page(request)
        found = [wire.model_resource(project, location, m) for m in models.list()]
        token = str(offset + size) if offset + size < len(found) else ""
        return {"models": found[offset : offset + size], "nextPageToken": token}

    refuse_other_methods(router, PREFIX + "/models", ["GET"])

    @router.get(PREFIX + "/models/{segment}")
    def get_model(project: str, location: str, segment: str, request: Request) -> dict:
        name, _ = MODEL.split(request, segment)
        return wire.model_resource(project, location, resolve_model(models.repository, name))

    MODEL.refuse_other_methods(router, PREFIX + "/models/{segment}")


def _operation_routes(router: APIRouter, services: Services) -> None:
    jobs = services.vertex_jobs

    def get_operation(project: str, location: str, segment: str, request: Request) -> dict:
        operation_id, _ = OPERATION.split(request, segment)
        return wire.operation(jobs.get_operation(project, location, operation_id))

    for prefix in ("/v1", "/ui"):
        path = prefix + "/projects/{project}/locations/{location}/operations/{segment}"
        router.add_api_route(path, get_operation, methods=["GET"])
        OPERATION.refuse_other_methods(router, path)
