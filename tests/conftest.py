"""Fixtures shared by every test layer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from batchline.config import Settings
from tests.support import make_color_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))  # scripts/shapes.py generates example images


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data dir holding the colour model and an empty bucket gs://b."""
    from batchline.models.repository import ModelRepository

    data = tmp_path / "data"
    (data / "buckets" / "b").mkdir(parents=True)
    ModelRepository(data / "models").import_folder(make_color_model(tmp_path / "colors-src"))
    return data


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, examples_dir=data_dir / "no-examples", lease_seconds=2, shard_size=4)
