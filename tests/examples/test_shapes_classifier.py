"""The shipped example model, run as a user would run it: a real batch job over freshly generated images."""

from __future__ import annotations

import json
import time
from pathlib import Path

import shapes  # scripts/shapes.py, on sys.path through tests/conftest.py
from fastapi.testclient import TestClient

from batchline.api.app import create_app
from batchline.config import Settings

REPO = Path(__file__).resolve().parents[2]
N_IMAGES = 400


def test_shipped_model_is_registered_and_scores_95_percent(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bucket = data / "buckets" / "fresh"
    # A seed the training script never uses: these images are new to the model.
    truth = {f"gs://fresh/{path.name}": label for path, label in shapes.write_dataset(bucket, N_IMAGES, seed=20261124)}
    (bucket / "batch.csv").write_text("\n".join(truth))
    settings = Settings(data_dir=data, examples_dir=REPO / "examples" / "models")
    with TestClient(create_app(settings)) as client:
        models = client.get("/v1/projects/p/locations/us-central1/models").json()["model"]
        assert "shapes_classifier" in [m["displayName"] for m in models]
        body = {
            "inputConfig": {"gcsSource": {"inputUris": ["gs://fresh/batch.csv"]}},
            "outputConfig": {"gcsDestination": {"outputUriPrefix": "gs://fresh/out"}},
            "params": {"score_threshold": "0"},
        }
        name = client.post("/v1/projects/p/locations/us-central1/models/shapes-classifier:batchPredict", json=body)
        name = name.json()["name"]
        deadline = time.monotonic() + 120
        while not (op := client.get(f"/v1/{name}").json()).get("done") and time.monotonic() < deadline:
            time.sleep(0.1)
    assert "response" in op, op
    out = data / "buckets" / op["metadata"]["batchPredictDetails"]["outputInfo"]["gcsOutputDirectory"][5:]
    lines = [json.loads(line) for f in sorted(out.glob("image_classification_*.jsonl")) for line in f.open()]
    assert len(lines) == N_IMAGES and not list(out.glob("errors_*.jsonl"))
    correct = sum(line["annotations"][0]["display_name"] == truth[line["ID"]] for line in lines)
    assert correct / N_IMAGES >= 0.95, f"top-1 accuracy {correct / N_IMAGES:.1%} on fresh images"
