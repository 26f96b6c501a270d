"""Fixtures of the in-process tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from batchline.api.app import create_app, create_vertex_app
from batchline.config import Settings
from batchline.services import Services, build_services


@pytest.fixture
def client(settings: Settings):
    """The AutoML v1 app in process, its worker running."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    """One set of services over the test's data dir, for apps that share them."""
    built = build_services(settings)
    yield built
    built.close()


@pytest.fixture
def vertex(services: Services) -> Iterator[TestClient]:
    """The Vertex AI v1 app in process over `services`."""
    with TestClient(create_vertex_app(services)) as client:
        yield client
