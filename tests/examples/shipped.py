"""Run a shipped example model as a user would: a fresh data dir that registers examples/models on start, and a
real batch job over the files the test wrote into gs://b/."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from batchline.api.app import create_app
from batchline.config import Settings
from tests.support import BASE, output_folder, read_jsonl, submit, wait_done

REPO = Path(__file__).resolve().parents[2]


def bucket(tmp_path: Path) -> Path:
    """The folder behind gs://b/ in the data dir `batch_predict` uses."""
    return tmp_path / "data" / "buckets" / "b"


def batch_predict(tmp_path: Path, model_id: str, uris: list[str], params: dict[str, str]) -> list[dict]:
    """The result lines of a batch job over `uris` with the shipped model; every input must succeed."""
    data = tmp_path / "data"
    (bucket(tmp_path) / "batch.csv").write_text("\n".join(uris) + "\n")
    with TestClient(create_app(Settings(data_dir=data, examples_dir=REPO / "examples" / "models"))) as client:
        registered = [m["name"].rsplit("/", 1)[1] for m in client.get(f"{BASE}/models").json()["model"]]
        assert model_id in registered, registered
        reply = submit(client, ["gs://b/batch.csv"], params, model=model_id)
        assert reply.status_code == 200, reply.text
        op = wait_done(client, reply.json()["name"], timeout=180)
    assert "response" in op, op
    folder = output_folder(data, op)
    assert not list(folder.glob("errors_*.jsonl"))
    lines = read_jsonl(folder, "image_*.jsonl")
    assert len(lines) == len(uris)
    return lines
