"""`batchline serve`: the AutoML app on its port and, when a Vertex port is set, the Vertex AI app on that one,
in one process over one set of services (one store, one worker)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import uvicorn

from batchline.api.app import create_app, create_vertex_app
from batchline.config import Settings
from batchline.services import build_services


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve`: each server would otherwise take the handlers from the
    one before it, and re-raise the signal once it is done."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; the servers finish their requests, then the worker and the store stop."""
    services = build_services(settings)
    apps = [(create_app(settings, services, own_services=False), settings.port)]
    if settings.vertex_port:
        apps.append((create_vertex_app(services), settings.vertex_port))
    servers = [_Server(uvicorn.Config(app, host=settings.host, port=port, log_level="warning")) for app, port in apps]
    services.worker.start()
    try:
        asyncio.run(_serve_all(servers))
    finally:
        services.close()


async def _serve_all(servers: list[_Server]) -> None:
    def stop() -> None:  # a second Ctrl-C stops at once, as with uvicorn alone
        for server in servers:
            server.force_exit = server.should_exit
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    await asyncio.gather(*(server.serve() for server in servers))
