"""Fixtures of the in-process tests."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from batchline.api.app import create_app
from batchline.config import Settings


@pytest.fixture
def client(settings: Settings):
    """The AutoML v1 app in process, its worker running."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client
