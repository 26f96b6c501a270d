"""create_app: the FastAPI application over one set of services; the worker runs beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from batchline import __version__
from batchline.api.automl import automl_router
from batchline.config import Settings
from batchline.errors import BatchlineError, Internal, InvalidArgument, NotFound
from batchline.services import Services, build_services

_HTTP_STATUS_NAMES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 409: "ABORTED"}


def error_response(exc: BatchlineError) -> JSONResponse:
    body = {"error": {"code": exc.http_status, "message": exc.message, "status": exc.status}}
    return JSONResponse(body, status_code=exc.http_status)


def create_app(settings: Settings, services: Services | None = None, run_worker: bool = True) -> FastAPI:
    services = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if run_worker:
            services.worker.start()
        yield
        services.close()

    app = FastAPI(title="batchline", version=__version__, lifespan=lifespan)
    app.state.services = services
    app.include_router(automl_router(services))

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

    return app
