"""create_app: the AutoML v1 application over one set of services, the worker running beside it; and
create_vertex_app: the Vertex AI v1 application over the same services, served on its own port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from batchline import __version__
from batchline.api.automl import automl_router
from batchline.api.vertex import vertex_router
from batchline.config import Settings
from batchline.errors import BatchlineError, Internal, InvalidArgument, NotFound
from batchline.services import Services, build_services

_HTTP_STATUS_NAMES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 409: "ABORTED"}


def error_response(exc: BatchlineError) -> JSONResponse:
    body = {"error": {"code": exc.http_status, "message": exc.message, "status": exc.status}}
    return JSONResponse(body, status_code=exc.http_status)


def create_app(
    settings: Settings, services: Services | None = None, run_worker: bool = True, own_services: bool = True
) -> FastAPI:
    """The AutoML v1 app. With `own_services` (the default) its lifespan starts the worker and closes the services;
    a caller serving several apps over one set of services does that itself instead."""
    services = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if own_services and run_worker:
            services.worker.start()
        yield
        if own_services:
            services.close()

    app = FastAPI(title="batchline", version=__version__, lifespan=lifespan)
    app.state.services = services
    app.include_router(automl_router(services))
    _handle_errors(app)
    return app


def create_vertex_app(services: Services) -> FastAPI:
    """The Vertex AI v1 app; it neither starts nor closes the services it shares."""
    app = FastAPI(title="batchline (Vertex AI v1)", version=__version__)
    app.state.services = services
    app.include_router(vertex_router(services))
    _handle_errors(app)
    return app


def _handle_errors(app: FastAPI) -> None:
    """Every error in the google.rpc shape: {"error": {"code", "message", "status"}}."""

    @app.exception_handler(BatchlineError)
    async def _batchline_error(_: Request, exc: BatchlineError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:  # a bug: still the API's error shape
        return error_response(Internal(f"internal error: {type(exc).__name__}: {exc}"))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(InvalidArgument(f"invalid request: {exc.errors()}"))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(NotFound(f"no such route: {request.method} {request.url.path}"))
        body = {
            "error": {
                "code": exc.status_code,
                "message": str(exc.detail),
                "status": _HTTP_STATUS_NAMES.get(exc.status_code, "UNKNOWN"),
            }
        }
        return JSONResponse(body, status_code=exc.status_code)
