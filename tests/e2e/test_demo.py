"""`make run`'s script, as the README promises it: serve, batch-predict the example images, scenes and a video, print
results, stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


def test_demo_script_predicts_the_example_images_and_scenes(tmp_path: Path) -> None:
    data = tmp_path / "demo-data"
    env = {**os.environ, "DATA": str(data), "PORT": str(free_port()), "BIN": str(Path(sys.executable).parent)}
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh")], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shapes-classifier" in done.stdout
    assert "image_classification_1.jsonl" in done.stdout
    results = list(data.glob("buckets/demo/out/prediction-shapes_classifier-*/image_classification_1.jsonl"))
    assert len(results) == 1 and len(results[0].read_text().splitlines()) == 12
    # Each example image is named after its shape; the example model gets them all right.
    for line in map(json.loads, results[0].read_text().splitlines()):
        shape = line["ID"].rsplit("_", 1)[1].split(".")[0]
        assert line["annotations"][0]["display_name"] == shape, line
    # Then the example scenes through the example detector: a line per scene, and one scene drawn with its boxes.
    scenes = sorted(p.name for p in (REPO / "examples" / "scenes").iterdir())
    detections = list(data.glob("buckets/demo/out/prediction-shapes_detector-*/image_object_detection_1.jsonl"))
    assert len(detections) == 1
    lines = [json.loads(line) for line in detections[0].read_text().splitlines()]
    assert sorted(line["ID"].rsplit("/", 1)[1] for line in lines) == scenes
    assert all(line["annotations"] for line in lines)  # every example scene has shapes the detector finds
    drawn = data / "boxes.png"
    assert drawn.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "boxes.png" in done.stdout
    # And a generated video through the example tracker: an OK index line, tracks with ids, a contact sheet.
    (index,) = data.glob("buckets/demo/out/prediction-shapes_tracker-*/video_object_tracking.csv")
    assert index.read_text() == "gs://demo/videos/00000.mp4,0,inf,video_object_trackinng_1.json,OK\n"
    payloads = json.loads((index.parent / "video_object_trackinng_1.json").read_text())
    assert len({p["video_object_tracking"]["instance_id"] for p in payloads}) >= 3  # several shapes, over 3 shots
    sheet = data / "tracks.png"
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "tracks.png" in done.stdout
