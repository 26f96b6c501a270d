"""Video jobs given bad input: each line or instance fails clearly (the AutoML index row's STATUS, a Vertex error
line) and the rest of the job goes on; bad params are a 400 at submit; video models serve batch only."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import videos  # scripts/videos.py, on sys.path through tests/conftest.py
from fastapi.testclient import TestClient

from batchline.config import Settings
from batchline.models.repository import ModelRepository
from tests.support import (
    BASE,
    assert_error,
    both_surfaces,
    image_bytes,
    output_folder,
    read_jsonl,
    wait_done,
    wait_vertex_job,
)

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "examples" / "models"


@pytest.fixture
def apps(data_dir: Path) -> Iterator[tuple[TestClient, TestClient]]:
    repository = ModelRepository(data_dir / "models")
    for name in ("shapes-tracker", "shapes-video-classifier"):
        repository.import_folder(MODELS / name)
    with both_surfaces(Settings(data_dir=data_dir, examples_dir=data_dir / "no-examples", lease_seconds=2)) as both:
        yield both


@pytest.fixture
def automl(apps: tuple[TestClient, TestClient]) -> TestClient:
    return apps[0]


@pytest.fixture
def vertex(apps: tuple[TestClient, TestClient]) -> TestClient:
    return apps[1]


@pytest.fixture
def bucket(data_dir: Path) -> Path:
    """gs://b/ with one good 3-second video and the bad files of a careless user."""
    folder = data_dir / "buckets" / "b"
    spec = videos.VideoSpec(width=320, height=240, fps=24, seconds=3, shots=2, seed=5)
    good = videos.make_video(folder / "good.mp4", spec)
    data = (folder / "good.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (folder / "corrupt.mp4").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8)))
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "image.mp4").write_bytes(image_bytes("red", "PNG"))
    _audio_only(folder / "audio.mp4")
    (folder / "good.json").write_text(json.dumps(good.as_json()))
    return folder


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for i in range(20):
            frame.pts = i * 1024
            frame.time_base = Fraction(1, 16000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


BAD_ROWS = {
    "gs://b/truncated.mp4,0,inf": "INVALID_ARGUMENT",
    "gs://b/corrupt.mp4,0,inf": "INVALID_ARGUMENT",
    "gs://b/empty.mp4,0,inf": "INVALID_ARGUMENT",
    "gs://b/image.mp4,0,inf": "INVALID_ARGUMENT",
    "gs://b/audio.mp4,0,inf": "INVALID_ARGUMENT",
    "gs://b/good.mp4,2,1": "INVALID_ARGUMENT",  # end before start
    "gs://b/good.mp4,30,inf": "INVALID_ARGUMENT",  # start past the video's end
    "gs://b/good.mp4,abc,inf": "INVALID_ARGUMENT",
    "gs://b/good.mp4,-1,2": "INVALID_ARGUMENT",
    "gs://b/good.mp4,1.01,1.02": "INVALID_ARGUMENT",  # between two of the video's frames: no frame in it
    "gs://b/missing.mp4,0,inf": "NOT_FOUND",
}


def test_each_bad_line_fails_in_the_index_and_the_good_ones_are_tracked(automl: TestClient, bucket: Path) -> None:
    rows = ["gs://b/good.mp4,0,inf", *BAD_ROWS, "gs://b/good.mp4, 0.5, 2.25"]
    (bucket / "in.csv").write_text("\n".join(rows) + "\n")
    body = {
        "inputConfig": {"gcsSource": {"inputUris": ["gs://b/in.csv"]}},
        "outputConfig": {"gcsDestination": {"outputUriPrefix": "gs://b/out"}},
    }
    # 11 of 13 lines fail: past AutoML's default failure share, so the job fails, its index written all the same.
    reply = automl.post(f"{BASE}/models/shapes-tracker:batchPredict", json=body)
    op = wait_done(automl, reply.json()["name"], timeout=300)
    assert op["error"]["code"] == 3 and "11 of 13" in op["error"]["message"], op
    folder = output_folder(bucket.parent.parent, op)
    index = list(csv.reader(io.StringIO((folder / "video_object_tracking.csv").read_text())))
    assert [",".join(row[:3]) for row in index[:-1]] == rows[:-1] and index[-1][:3] == [
        "gs://b/good.mp4",
        "0.5",
        "2.25",
    ]
    statuses = {",".join(row[:3]): row[4] for row in index}
    assert statuses["gs://b/good.mp4,0,inf"] == "OK" and statuses["gs://b/good.mp4,0.5,2.25"] == "OK"
    for row, status in BAD_ROWS.items():
        assert statuses[row].startswith(status + ": "), (row, statuses[row])
    assert "/" not in statuses["gs://b/corrupt.mp4,0,inf"].replace("gs://b/", ""), "a server path in a message"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["video_object_tracking.csv", "video_object_trackinng_1.json", "video_object_trackinng_13.json"]
    tracks = json.loads((folder / "video_object_trackinng_13.json").read_text())
    times = [float(p["video_object_tracking"]["time_offset"].rstrip("s")) for p in tracks]
    assert tracks and min(times) >= 0.5 and max(times) < 2.25 and times == sorted(times)


def test_bad_vertex_instances_are_error_lines_and_the_job_succeeds(vertex: TestClient, bucket: Path) -> None:
    instances = [
        {"content": "gs://b/good.mp4", "mimeType": "video/mp4", "timeSegmentStart": "0s", "timeSegmentEnd": "inf"},
        {"content": "gs://b/corrupt.mp4", "mimeType": "video/mp4"},
        {"content": "gs://b/good.mp4", "mimeType": "video/mp4", "timeSegmentStart": "abc"},
        {"content": "gs://b/good.mp4", "mimeType": "video/mp4", "timeSegmentStart": "2s", "timeSegmentEnd": "1s"},
        {"content": "gs://b/good.mp4", "mimeType": "image/png"},
        {"content": base64.b64encode((bucket / "good.mp4").read_bytes()).decode(), "mimeType": "video/mp4"},
    ]
    (bucket / "in.jsonl").write_text("".join(json.dumps(i) + "\n" for i in instances))
    body = {
        "displayName": "bad videos",
        "model": "projects/p/locations/us-central1/models/shapes-video-classifier",
        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://b/in.jsonl"]}},
        "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": "gs://b/vertex"}},
    }
    reply = vertex.post(f"{BASE}/batchPredictionJobs", json=body)
    assert reply.status_code == 200, reply.text
    job = wait_vertex_job(vertex, reply.json()["name"])
    assert job["state"] == "JOB_STATE_SUCCEEDED", job
    assert job["completionStats"] == {"successfulCount": "2", "failedCount": "4", "incompleteCount": "0"}
    folder = bucket.parent.parent / "buckets" / job["outputInfo"]["gcsOutputDirectory"].removeprefix("gs://")
    errors = read_jsonl(folder, "errors_*.jsonl")
    assert [e["error"]["code"] for e in errors] == [3, 3, 3, 3]
    predictions = read_jsonl(folder, "predictions_*.jsonl")
    assert all(entry["type"] == "segment-classification" for line in predictions for entry in line["prediction"])
    assert predictions[0]["prediction"][0]["timeSegmentEnd"] == "3s"  # an inf end is the video's real end


@pytest.mark.parametrize(
    ("model", "params", "words"),
    [
        ("shapes-video-classifier", {"shot_classification": "maybe"}, ["shot_classification", "true or false"]),
        ("shapes-tracker", {"min_bounding_box_size": "2"}, ["min_bounding_box_size", "between 0 and 1"]),
        ("shapes-tracker", {"frame_rate": "0"}, ["frame_rate"]),
        ("shapes-tracker", {"segment_classification": "true"}, ["unknown params", "segment_classification"]),
    ],
)
def test_bad_params_are_400_at_submit(automl: TestClient, model: str, params: dict, words: list[str]) -> None:
    body = {
        "inputConfig": {"gcsSource": {"inputUris": ["gs://b/in.csv"]}},
        "outputConfig": {"gcsDestination": {"outputUriPrefix": "gs://b/out"}},
        "params": params,
    }
    assert_error(automl.post(f"{BASE}/models/{model}:batchPredict", json=body), 400, "INVALID_ARGUMENT", *words)


def test_predict_on_a_video_model_says_it_serves_batch_only(automl: TestClient) -> None:
    body = {"payload": {"image": {"imageBytes": base64.b64encode(image_bytes("red")).decode()}}}
    reply = automl.post(f"{BASE}/models/shapes-tracker:predict", json=body)
    assert_error(reply, 400, "INVALID_ARGUMENT", "batch prediction only")


def test_video_models_carry_their_metadata(automl: TestClient) -> None:
    tracker = automl.get(f"{BASE}/models/shapes-tracker").json()
    classifier = automl.get(f"{BASE}/models/shapes-video-classifier").json()
    assert "videoObjectTrackingModelMetadata" in tracker and "videoClassificationModelMetadata" in classifier
