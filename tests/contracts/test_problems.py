"""The contract every problem keeps, whatever its scenario: its parts fit each other and both surfaces.

Each registered problem needs a case here (a manifest, a source its preprocessor takes, and model outputs for a
batch): a problem added without one fails `test_every_problem_has_a_contract_case`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from PIL import Image

from batchline.domain.predictions import Prediction
from batchline.models.manifest import Manifest
from batchline.problems import PROBLEMS, problem_for
from batchline.problems.base import ONE_ITEM, Problem
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


@dataclass(frozen=True)
class Case:
    manifest: dict[str, Any]
    source: Callable[[], bytes]
    outputs: Callable[[int], dict[str, np.ndarray]]


CASES = {
    "image_classification": Case(
        {"input": {"size": [16, 16]}, "output": {"scores": "logits", "activation": "softmax"}}, _png, _scores
    ),
    "image_object_detection": Case(
        {"input": {"size": [16, 16], "resize": "letterbox"}, "output": {"format": "yolo", "predictions": "output0"}},
        _png,
        _yolo_head,
    ),
}


def _problem(name: str) -> Problem:
    case = CASES[name]
    return problem_for(Manifest.model_validate({"id": "m", "display_name": "m", "problem": name, "labels": LABELS,
                                                **case.manifest}))  # fmt: skip


def test_every_problem_has_a_contract_case() -> None:
    assert sorted(CASES) == PROBLEMS.names()


@pytest.mark.parametrize("name", sorted(CASES))
def test_parts_fit_from_source_to_prediction(name: str) -> None:
    problem, case = _problem(name), CASES[name]
    pre = problem.preprocessor
    shape, dtype = pre.layout
    plan = pre.plan(case.source(), {}, problem.Params()) if pre.expands else ONE_ITEM
    rows = np.full((len(plan.refs), *shape), 7, dtype)
    facts = pre.fill(case.source(), plan.refs, list(rows))
    assert len(facts) == len(plan.refs) and not any(isinstance(f, BaseException) for f in facts)
    assert not (rows == 7).all(), "fill wrote nothing into the rows"

    outputs = problem.postprocessor.decode(case.outputs(len(facts)), facts, problem.Params())
    assert len(outputs) == len(facts)
    prediction = problem.reducer.reduce(plan.facts, outputs, problem.Params())
    assert isinstance(prediction, Prediction)


@pytest.mark.parametrize("name", sorted(CASES))
def test_both_surfaces_take_its_params_and_write_its_predictions(name: str) -> None:
    problem, case = _problem(name), CASES[name]
    pre = problem.preprocessor
    _, facts = pre.batch([case.source(), case.source()])
    served = 0
    for surface, encoder, defaults in (
        (automl, automl.AutomlEncoder(), lambda p: automl.params(p, {})),
        (vertex, vertex.VertexEncoder(), lambda p: vertex.params(p, None)),
    ):
        if name not in surface.CATALOG:
            continue
        served += 1
        params = defaults(problem)
        predictions = problem.predictions(case.outputs(2), facts, params)
        head = json.dumps({"instance": {"content": "gs://b/x"}}) if surface is vertex else "gs://b/x"
        line = json.loads(encoder.result_line(head, predictions[0]))
        assert ("prediction" in line) if surface is vertex else ("annotations" in line)
    assert served, f"{name} is served by no surface"


@pytest.mark.parametrize("catalog", [automl.CATALOG, vertex.CATALOG], ids=["automl", "vertex"])
def test_catalogs_name_only_registered_problems_and_real_params(catalog: dict) -> None:
    for name, row in catalog.items():
        fields = _problem(name).Params.model_fields
        assert name in PROBLEMS.names()
        assert set(row.params.values()) <= set(fields), f"{name}: {set(row.params.values()) - set(fields)}"
