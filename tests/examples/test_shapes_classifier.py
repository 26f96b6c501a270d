"""The shipped example model, run as a user would run it: a real batch job over freshly generated images."""

from __future__ import annotations

from pathlib import Path

import shapes  # scripts/shapes.py, on sys.path through tests/conftest.py

from tests.examples.shipped import batch_predict, bucket

N_IMAGES = 400


def test_shipped_model_is_registered_and_scores_95_percent(tmp_path: Path) -> None:
    # A seed the training script never uses: these images are new to the model.
    written = shapes.write_dataset(bucket(tmp_path) / "fresh", N_IMAGES, seed=20261124)
    truth = {f"gs://b/fresh/{path.name}": label for path, label in written}
    lines = batch_predict(tmp_path, "shapes-classifier", list(truth), {"score_threshold": "0"})
    correct = sum(line["annotations"][0]["display_name"] == truth[line["ID"]] for line in lines)
    assert correct / N_IMAGES >= 0.95, f"top-1 accuracy {correct / N_IMAGES:.1%} on fresh images"
