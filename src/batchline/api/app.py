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
from batchline.api.http import WrongMethod
from batchline.api.vertex import vertex_router
from batchline.config import Settings
from batchline.errors import BatchlineError, Internal, InvalidArgument, NotFound, describe
from batchline.services import Services, build_services

# The google.rpc code name an HTTP status is sent with (as Google's APIs map them); a wrong method is 405 by HTTP
# and UNIMPLEMENTED by google.rpc. Statuses not listed: INVALID_ARGUMENT for 4xx, INTERNAL for 5xx.
_HTTP_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}


def rpc_status_name(http_status: int) -> str:
    return _HTTP_STATUS_NAMES.get(http_status, "INVALID_ARGUMENT" if 400 <= http_status < 500 else "INTERNAL")


def error_response(exc: BatchlineError) -> JSONResponse:
    body = {"error": {"code": exc.http_status, "message": exc.message, "status": exc.status}}
    return JSONResponse(body, status_code=exc.http_status)


def _status_response(http_status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": http_status, "message": message, "status": rpc_status_name(http_status)}}
    return JSONResponse(body, status_code=http_status, headers=headers)


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
        return error_response(Internal(f"internal error: {describe(exc)}"))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(InvalidArgument(f"invalid request: {exc.errors()}"))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(
                NotFound(
                    f"no such route: {request.method} {request.url.path}; this API's paths start "
                    "/v1/projects/PROJECT/locations/LOCATION/"
                )
            )
        if exc.status_code == 405 and not isinstance(exc, WrongMethod):  # the router's, for a method none expects
            allowed = (exc.headers or {}).get("Allow", "")
            exc = WrongMethod(request, [m.strip() for m in allowed.split(",") if m.strip()])
        return _status_response(exc.status_code, str(exc.detail), exc.headers)
