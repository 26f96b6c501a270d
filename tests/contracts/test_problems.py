"""The contract every problem keeps, whatever its scenario: its parts fit each other and both surfaces.

Each registered problem needs a case here (a manifest, a source its preprocessor takes, and model outputs for a
batch): a problem added without one fails `test_every_problem_has_a_contract_case`.
"""

from __future__ import annotations

import functools
import io
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import videos  # scripts/videos.py, on sys.path through tests/conftest.py
from PIL import Image

from batchline.domain.predictions import Prediction
from batchline.models.manifest import Manifest
from batchline.problems import PROBLEMS, problem_for
from batchline.problems.base import ONE_ITEM, Params, Problem
from batchline.surfaces import automl, vertex

LABELS = ["circle", "square", "star"]


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


def _scores(batch: int) -> dict[str, np.ndarray]:
    return {"logits": np.random.default_rng(0).normal(size=(batch, len(LABELS))).astype(np.float32)}


def _yolo_head(batch: int) -> dict[str, np.ndarray]:
    head = np.zeros((batch, 4 + len(LABELS), 8), np.float32)
    head[:, :4, :] = [[8], [8], [6], [6]]  # every anchor a 6x6 box at (8, 8) of the 16x16 input
    head[:, 4, 0], head[:, 5, 1] = 0.9, 0.6  # anchor 0 a circle, anchor 1 a square
    return {"output0": head}


@functools.cache
def _mp4() -> bytes:
    """A 2-second video of moving shapes with a cut (scripts/videos.py)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        videos.make_video(path, videos.VideoSpec(width=160, height=120, fps=10, seconds=2, shots=2, seed=1))
        return path.read_bytes()


@dataclass(frozen=True)
class Case:
    manifest: dict[str, Any]
    source: Callable[[], bytes]
    outputs: Callable[[int], dict[str, np.ndarray]]
    args: dict[str, Any] = field(default_factory=dict)  # what a surface's reader gives the input besides its source


SEGMENT = {"start": 0.0, "end": math.inf}
CASES = {
    "image_classification": Case(
        {"input": {"size": [16, 16]}, "output": {"scores": "logits", "activation": "softmax"}}, _png, _scores
    ),
    "image_object_detection": Case(
        {"input": {"size": [16, 16], "resize": "letterbox"}, "output": {"format": "yolo", "predictions": "output0"}},
        _png,
        _yolo_head,
    ),
    "video_classification": Case(
        {"input": {"size": [16, 16]}, "output": {"scores": "logits", "activation": "softmax"}}, _mp4, _scores, SEGMENT
    ),
    "video_object_tracking": Case(
        {"input": {"size": [16, 16], "resize": "letterbox"}, "output": {"format": "yolo", "predictions": "output0"}},
        _mp4,
        _yolo_head,
        SEGMENT,
    ),
}


def _problem(name: str) -> Problem:
    case = CASES[name]
    return problem_for(Manifest.model_validate({"id": "m", "display_name": "m", "problem": name, "labels": LABELS,
                                                **case.manifest}))  # fmt: skip


def test_every_problem_has_a_contract_case() -> None:
    assert sorted(CASES) == PROBLEMS.names()


def _source(problem: Problem, case: Case) -> Any:
    """What a decoder hands the preprocessor: the bytes, or an open file for one that streams."""
    data = case.source()
    return io.BytesIO(data) if problem.preprocessor.streams else data


def _predict(problem: Problem, case: Case, params: Params) -> Prediction:
    """One input through the three parts, as the executor runs them (all its items in one batch)."""
    pre = problem.preprocessor
    shape, dtype = pre.layout
    plan = pre.plan(_source(problem, case), case.args, params) if pre.expands else ONE_ITEM
    rows = np.full((len(plan.refs), *shape), 7, dtype)
    facts = pre.fill(_source(problem, case), plan.refs, list(rows))
    assert len(facts) == len(plan.refs) and not any(isinstance(f, BaseException) for f in facts), facts
    assert not (rows == 7).all(), "fill wrote nothing into the rows"
    outputs = problem.postprocessor.decode(case.outputs(len(facts)), facts, params)
    assert len(outputs) == len(facts)
    return problem.reducer.reduce(plan.facts, outputs, params)


@pytest.mark.parametrize("name", sorted(CASES))
def test_parts_fit_from_source_to_prediction(name: str) -> None:
    problem = _problem(name)
    assert isinstance(_predict(problem, CASES[name], problem.Params()), Prediction)


@pytest.mark.parametrize("name", sorted(CASES))
def test_both_surfaces_take_its_params_and_write_its_predictions(name: str) -> None:
    problem, case = _problem(name), CASES[name]
    served = 0
    for surface, encoder, defaults in (
        (automl, automl.AutomlEncoder(), lambda p: automl.params(p, {})),
        (vertex, vertex.VertexEncoder(), lambda p: vertex.params(p, None)),
    ):
        if name not in surface.CATALOG:
            continue
        served += 1
        prediction = _predict(problem, case, defaults(problem))
        head = json.dumps({"instance": {"content": "gs://b/x"}}) if surface is vertex else "gs://b/x"
        line = json.loads(encoder.result_line(head, prediction))
        assert ("prediction" in line) if surface is vertex else ("annotations" in line)
    assert served, f"{name} is served by no surface"


@pytest.mark.parametrize("catalog", [automl.CATALOG, vertex.CATALOG], ids=["automl", "vertex"])
def test_catalogs_name_only_registered_problems_and_real_params(catalog: dict) -> None:
    for name, row in catalog.items():
        fields = _problem(name).Params.model_fields
        assert name in PROBLEMS.names()
        assert set(row.params.values()) <= set(fields), f"{name}: {set(row.params.values()) - set(fields)}"
