"""The shipped video models, run as a user would: real batch jobs, AutoML and Vertex AI, over videos generated fresh
by scripts/videos.py, scored against their ground truth with standard evaluators (motmetrics, scikit-learn)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import motmetrics as mm
import numpy as np
import pytest
import videos  # scripts/videos.py, on sys.path through tests/conftest.py
from fastapi.testclient import TestClient
from sklearn.metrics import accuracy_score, f1_score

from batchline.config import Settings
from tests.examples.shipped import REPO
from tests.support import BASE, both_surfaces, output_folder, read_jsonl, wait_done, wait_vertex_job

SAMPLE_RATE = 5  # the example video models' video.frame_rate

# Tracking videos: sizes, rates and codecs of the range; seeds the tests use nowhere else.
TRACKING = [
    videos.VideoSpec(width=320, height=240, fps=24, codec="h264", seconds=6, seed=2026120101, kind="tracking"),
    videos.VideoSpec(width=640, height=480, fps=30, codec="mpeg4", seconds=6, seed=2026120102, kind="tracking"),
    videos.VideoSpec(width=1280, height=720, fps=60, codec="h264", seconds=4, seed=2026120103, kind="tracking"),
    videos.VideoSpec(width=640, height=360, fps=25, codec="h264", seconds=6, seed=2026120104, kind="tracking"),
]
CLASSIFICATION = [
    videos.VideoSpec(width=w, height=h, fps=fps, codec=codec, seconds=8, shots=4, seed=seed, kind="classification")
    for (w, h, fps, codec, seed) in [
        (320, 240, 24, "h264", 2026120111),
        (640, 480, 30, "mpeg4", 2026120112),
        (1280, 720, 30, "h264", 2026120113),
        (640, 360, 25, "h264", 2026120114),
    ]
]


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    with both_surfaces(Settings(data_dir=tmp_path / "data", examples_dir=REPO / "examples" / "models")) as both:
        yield both


@pytest.fixture
def automl(apps: tuple[TestClient, TestClient]) -> TestClient:
    return apps[0]


@pytest.fixture
def vertex(apps: tuple[TestClient, TestClient]) -> TestClient:
    return apps[1]


def _write(tmp_path: Path, specs: list[videos.VideoSpec], folder: str) -> list[tuple[str, videos.GroundTruth]]:
    bucket = tmp_path / "data" / "buckets" / "b"
    made = []
    for i, spec in enumerate(specs):
        name = f"{folder}/{i}.{'avi' if spec.codec == 'mpeg4' else 'mp4'}"
        (bucket / name).parent.mkdir(parents=True, exist_ok=True)
        made.append((f"gs://b/{name}", videos.make_video(bucket / name, spec)))
    return made


def _batch_predict(automl: TestClient, tmp_path: Path, model: str, rows: list[str], params: dict) -> Path:
    (tmp_path / "data" / "buckets" / "b" / "in.csv").write_text("\n".join(rows) + "\n")
    body = {
        "inputConfig": {"gcsSource": {"inputUris": ["gs://b/in.csv"]}},
        "outputConfig": {"gcsDestination": {"outputUriPrefix": "gs://b/out"}},
        "params": params,
    }
    reply = automl.post(f"{BASE}/models/{model}:batchPredict", json=body)
    assert reply.status_code == 200, reply.text
    op = wait_done(automl, reply.json()["name"], timeout=600)
    assert "response" in op, op
    return output_folder(tmp_path / "data", op)


def _index(folder: Path, name: str) -> list[list[str]]:
    with (folder / name).open(newline="") as f:
        return list(csv.reader(f))


# -- tracking


def test_shapes_tracker_reaches_mota_and_idf1_of_0_7_through_automl(automl: TestClient, tmp_path: Path) -> None:
    made = _write(tmp_path, TRACKING, "tracking")
    folder = _batch_predict(automl, tmp_path, "shapes-tracker", [f"{uri},0,inf" for uri, _ in made], {})

    index = _index(folder, "video_object_tracking.csv")
    assert [row[:3] for row in index] == [[uri, "0", "inf"] for uri, _ in made]
    assert all(row[4] == "OK" and row[3] == f"video_object_trackinng_{i}.json" for i, row in enumerate(index, 1))
    accumulator = mm.MOTAccumulator(auto_id=True)
    for (_, truth), row in zip(made, index, strict=True):
        payloads = json.loads((folder / row[3]).read_text())
        _accumulate(accumulator, truth, _automl_boxes(payloads, truth))
    summary = mm.metrics.create().compute(accumulator, metrics=["mota", "idf1", "num_switches"])
    mota, idf1 = float(summary["mota"].iloc[0]), float(summary["idf1"].iloc[0])
    print(f"shapes-tracker over {len(made)} videos: MOTA {mota:.3f}, IDF1 {idf1:.3f}")
    assert mota >= 0.7 and idf1 >= 0.7, summary


def test_shapes_tracker_writes_tracks_as_seed_004_through_vertex(vertex: TestClient, tmp_path: Path) -> None:
    made = _write(tmp_path, TRACKING[:2], "tracking")
    lines = [
        {"content": uri, "mimeType": "video/mp4", "timeSegmentStart": "0.0s", "timeSegmentEnd": "Infinity"}
        for uri, _ in made
    ]
    predictions = _vertex_job(vertex, tmp_path, "shapes-tracker", lines, {"confidenceThreshold": 0.5})
    accumulator = mm.MOTAccumulator(auto_id=True)
    for (uri, truth), line in zip(made, predictions, strict=True):
        assert line["instance"]["content"] == uri
        tracks = line["prediction"]
        assert tracks and all(set(t) == {"id", "displayName", "timeSegmentStart", "timeSegmentEnd", "confidence",
                                          "frames"} for t in tracks)  # fmt: skip
        assert all(t["frames"][0]["timeOffset"] == t["timeSegmentStart"] for t in tracks)
        _accumulate(accumulator, truth, _vertex_boxes(tracks, truth))
    summary = mm.metrics.create().compute(accumulator, metrics=["mota", "idf1"])
    assert float(summary["mota"].iloc[0]) >= 0.7 and float(summary["idf1"].iloc[0]) >= 0.7, summary


def _automl_boxes(payloads: list[dict], truth: videos.GroundTruth) -> dict[int, list[tuple[int, np.ndarray]]]:
    """Sampled frame index -> (instance id, box in pixels) of each tracked box."""
    found: dict[int, list[tuple[int, np.ndarray]]] = {}
    for payload in payloads:
        box = payload["video_object_tracking"]
        top_left, bottom_right = box["bounding_box"]["normalized_vertices"]
        corners = [
            top_left.get("x", 0.0),
            top_left.get("y", 0.0),
            bottom_right.get("x", 0.0),
            bottom_right.get("y", 0.0),
        ]
        frame = round(float(box["time_offset"].rstrip("s")) * truth.fps)
        found.setdefault(frame, []).append((int(box["instance_id"]), _pixels(corners, truth)))
    return found


def _vertex_boxes(tracks: list[dict], truth: videos.GroundTruth) -> dict[int, list[tuple[int, np.ndarray]]]:
    found: dict[int, list[tuple[int, np.ndarray]]] = {}
    for number, track in enumerate(tracks, 1):
        for f in track["frames"]:
            frame = round(float(f["timeOffset"].rstrip("s")) * truth.fps)
            found.setdefault(frame, []).append((number, _pixels([f["xMin"], f["yMin"], f["xMax"], f["yMax"]], truth)))
    return found


def _pixels(box: list[float], truth: videos.GroundTruth) -> np.ndarray:
    return np.array(box) * [truth.width, truth.height, truth.width, truth.height]


def _accumulate(accumulator: mm.MOTAccumulator, truth: videos.GroundTruth, found: dict) -> None:
    """One event per sampled frame: ground-truth objects against tracked boxes, matched at IoU >= 0.5. A box on an
    object the ground truth marks hidden (mostly covered or off the frame) is neither a hit nor a false positive.
    Ids are made unique across the videos of one accumulator (each video numbers its own from 1)."""
    offset = accumulator.next_video = getattr(accumulator, "next_video", 0) + 1_000_000
    step = truth.fps / SAMPLE_RATE
    for frame_index in sorted({round(k * step) for k in range(int(truth.frame_count / step) + 1)}):
        if frame_index >= truth.frame_count:
            continue
        frame = truth.frames[frame_index]
        objects = frame["objects"]
        hidden = [np.array(o["box"], float) for o in frame.get("hidden", [])]
        boxes = [(i, b) for i, b in found.get(frame_index, []) if not any(_iou(b, h) >= 0.5 for h in hidden)]
        distances = np.array(
            [
                [1 - iou if (iou := _iou(np.array(o["box"], float), b)) >= 0.5 else np.nan for _, b in boxes]
                for o in objects
            ]  # fmt: skip
        ).reshape(len(objects), len(boxes))
        accumulator.update([offset + o["id"] for o in objects], [offset + i for i, _ in boxes], distances)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


# -- classification


def test_shapes_video_classifier_labels_segments_and_shots_through_automl(automl: TestClient, tmp_path: Path) -> None:
    made = _write(tmp_path, CLASSIFICATION, "classification")
    # Each video whole (for its shots), and each of its shots as a segment of its own (for segment labels).
    rows = [f"{uri},0,inf" for uri, _ in made]
    rows += [f"{uri},{shot['start_s']:.6f},{shot['end_s']:.6f}" for uri, truth in made for shot in truth.shots]
    params = {"shot_classification": "true", "1s_interval_classification": "true", "score_threshold": "0.3"}
    folder = _batch_predict(automl, tmp_path, "shapes-video-classifier", rows, params)

    index = _index(folder, "video_classification.csv")
    assert [",".join(row[:3]) for row in index] == rows and {row[4] for row in index} == {"OK"}
    labels = {",".join(row[:3]): json.loads((folder / row[3]).read_text()) for row in index}
    segment_truth, segment_found, cut_truth, cut_found = [], [], [], []
    for uri, truth in made:
        whole = labels[f"{uri},0,inf"]
        # Four shapes in turn: no label holds for the whole video, but each shot and each second has one.
        assert {p["video_classification"]["type"] for p in whole} >= {"shot", "1s_interval"}
        # Per sampled frame: does a shot start there? A true cut shows at the first sample on or after it.
        picked = np.ceil(np.arange(0, truth.duration_s, 1 / SAMPLE_RATE) * truth.fps - 0.5 - 1e-9)  # frame indices
        cuts_at = [shot["start_frame"] for shot in truth.shots[1:]]
        cut_truth += [any(p >= c > q for c in cuts_at) for q, p in zip([-1, *picked[:-1]], picked, strict=True)]
        starts = [start for start, _ in _shots(whole)[1:]]
        cut_found += [any(abs(p / truth.fps - start) < 0.5 / truth.fps for start in starts) for p in picked]
        for shot in truth.shots:
            segment = labels[f"{uri},{shot['start_s']:.6f},{shot['end_s']:.6f}"]
            best = max((p for p in segment if p["video_classification"]["type"] == "segment"),
                       key=lambda p: p["video_classification"]["classification_annotation"]["score"])  # fmt: skip
            segment_truth.append(shot["label"])
            segment_found.append(best["display_name"])
    cuts, top1 = f1_score(cut_truth, cut_found), accuracy_score(segment_truth, segment_found)
    print(f"shapes-video-classifier: shot boundary F1 {cuts:.3f}, segment top-1 {top1:.3f}")
    assert cuts >= 0.9 and top1 >= 0.9


def _shots(payloads: list[dict]) -> list[tuple[float, str]]:
    """(start s, best label) of each shot the output names."""
    best: dict[float, tuple[float, str]] = {}
    for p in payloads:
        found = p["video_classification"]
        if found["type"] != "shot":
            continue
        start = float(found["time_segment"]["start_time_offset"].rstrip("s"))
        score = found["classification_annotation"]["score"]
        if score > best.get(start, (-1.0, ""))[0]:
            best[start] = (score, p["display_name"])
    return sorted((start, label) for start, (_, label) in best.items())


def test_shapes_video_classifier_through_vertex(vertex: TestClient, tmp_path: Path) -> None:
    made = _write(tmp_path, CLASSIFICATION[:1], "classification")
    (uri, truth) = made[0]
    shot = truth.shots[1]
    lines = [{"content": uri, "mimeType": "video/mp4", "timeSegmentStart": f"{shot['start_s']}s",
              "timeSegmentEnd": f"{shot['end_s']}s"}]  # fmt: skip
    (line,) = _vertex_job(vertex, tmp_path, "shapes-video-classifier", lines, {"shotClassification": True})
    kinds = {entry["type"] for entry in line["prediction"]}
    assert kinds == {"segment-classification", "shot-classification"}
    segment = [e for e in line["prediction"] if e["type"] == "segment-classification"]
    assert segment[0]["displayName"] == shot["label"]
    assert segment == sorted(segment, key=lambda e: -e["confidence"])


def _vertex_job(vertex: TestClient, tmp_path: Path, model: str, instances: list[dict], parameters: dict) -> list[dict]:
    bucket = tmp_path / "data" / "buckets" / "b"
    (bucket / "in.jsonl").write_text("".join(json.dumps(i) + "\n" for i in instances))
    body = {
        "displayName": "video",
        "model": f"projects/p/locations/us-central1/models/{model}",
        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://b/in.jsonl"]}},
        "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": "gs://b/vertex"}},
        "modelParameters": parameters,
    }
    reply = vertex.post(f"{BASE}/batchPredictionJobs", json=body)
    assert reply.status_code == 200, reply.text
    job = wait_vertex_job(vertex, reply.json()["name"], timeout=600)
    assert job["state"] == "JOB_STATE_SUCCEEDED" and job["completionStats"]["failedCount"] == "0", job
    folder = tmp_path / "data" / "buckets" / job["outputInfo"]["gcsOutputDirectory"].removeprefix("gs://")
    return read_jsonl(folder, "predictions_*.jsonl")
