"""Object detection through the unmodified google-cloud-automl client, over REST, against a real `batchline serve`.

The detector's head is a constant (tests/support.py), so where each box must land in each original image is
computed by hand below: this checks the wire format end to end and the letterbox mapping, through the client's
own parsing of the replies.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import automl_v1
from PIL import Image

from tests.e2e.conftest import PROJECT_LOCATION, ServerProcess, make_data_dir
from tests.e2e.helpers import bucket_path, read_batch_output
from tests.support import make_yolo_model

pytestmark = pytest.mark.timeout(120)

MODEL = f"{PROJECT_LOCATION}/models/boxes"
# The head, in 64x64 model-input pixels: cx, cy, w, h, then scores for red, green, blue.
HEAD = np.array(
    [
        [32, 32, 32, 16, 0.9, 0.0, 0.0],  # a red box in the middle
        [16, 16, 8, 8, 0.0, 0.6, 0.0],  # a green one near the top-left corner
        [48, 48, 8, 8, 0.0, 0.0, 0.3],  # a blue one under the default 0.5 threshold
    ]
).T
# Letterboxed into 64x64, a 128x64 image is scaled by 0.5 with 16 rows of grey above and below; a 64x128 one
# with 16 columns left and right. The green box pokes into the padding there and is clamped to the image.
EXPECTED = {
    "gs://b/det/wide.jpg": {"red": (0.25, 0.25, 0.75, 0.75), "green": (0.1875, 0.0, 0.3125, 0.125)},
    "gs://b/det/tall.png": {"red": (0.0, 0.375, 1.0, 0.625), "green": (0.0, 0.1875, 0.125, 0.3125)},
}
SIZES = {"gs://b/det/wide.jpg": (128, 64), "gs://b/det/tall.png": (64, 128)}


def _image(size: tuple[int, int], fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 120, 150)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    from batchline.models.repository import ModelRepository

    root = tmp_path_factory.mktemp("official-detection")
    data = make_data_dir(root)
    ModelRepository(data / "models").import_folder(make_yolo_model(root / "boxes-src", HEAD, model_id="boxes"))
    for uri, size in SIZES.items():
        bucket_path(data, uri).parent.mkdir(parents=True, exist_ok=True)
        bucket_path(data, uri).write_bytes(_image(size, "PNG" if uri.endswith(".png") else "JPEG"))
    bucket_path(data, "gs://b/det/broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    bucket_path(data, "gs://b/det.csv").write_text("gs://b/det/wide.jpg\ngs://b/det/tall.png\ngs://b/det/broken.jpg\n")

    server = ServerProcess(data, log_dir=root).start()
    opts = ClientOptions(api_endpoint=server.url)
    pred = automl_v1.PredictionServiceClient(transport="rest", credentials=AnonymousCredentials(), client_options=opts)
    automl = automl_v1.AutoMlClient(transport="rest", credentials=AnonymousCredentials(), client_options=opts)
    yield {"data": data, "pred": pred, "automl": automl}
    server.stop()


def _boxes(annotations: list[dict]) -> dict[str, tuple[float, ...]]:
    found = {}
    for a in annotations:
        top_left, bottom_right = a["image_object_detection"]["bounding_box"]["normalized_vertices"]
        found[a["display_name"]] = (top_left["x"], top_left["y"], bottom_right["x"], bottom_right["y"])
    return found


def test_batch_predict_writes_boxes_in_the_automl_layout(env):
    op = env["pred"].batch_predict(
        name=MODEL,
        input_config=automl_v1.BatchPredictInputConfig(gcs_source=automl_v1.GcsSource(input_uris=["gs://b/det.csv"])),
        output_config=automl_v1.BatchPredictOutputConfig(
            gcs_destination=automl_v1.GcsDestination(output_uri_prefix="gs://b/out-det/")
        ),
    )
    result = op.result(timeout=60)

    assert dict(result.metadata) == {"max_bounding_box_count": "100"}
    out_uri = op.metadata.batch_predict_details.output_info.gcs_output_directory
    assert out_uri.startswith("gs://b/out-det/prediction-boxes-"), out_uri
    results, errors = read_batch_output(bucket_path(env["data"], out_uri), stem="image_object_detection")
    assert set(errors) == {"gs://b/det/broken.jpg"} and errors["gs://b/det/broken.jpg"]["code"] == 3
    for uri, expected in EXPECTED.items():
        annotations = results[uri]
        assert [a["display_name"] for a in annotations] == ["red", "green"]  # by score; blue is under 0.5
        assert [a["image_object_detection"]["score"] for a in annotations] == pytest.approx([0.9, 0.6])
        found = _boxes(annotations)
        for label, box in expected.items():
            assert found[label] == pytest.approx(box, abs=1e-6), (uri, label)


def test_online_predict_returns_boxes_and_honours_max_bounding_box_count(env):
    reply = env["pred"].predict(
        name=MODEL,
        payload={"image": {"image_bytes": _image((128, 64), "JPEG")}},
        params={"max_bounding_box_count": "1", "score_threshold": "0.2"},
    )
    assert reply.metadata["max_bounding_box_count"] == "1"
    assert len(reply.payload) == 1
    best = reply.payload[0]
    assert best.display_name == "red" and best.image_object_detection.score == pytest.approx(0.9)
    vertices = best.image_object_detection.bounding_box.normalized_vertices
    assert [c for v in vertices for c in (v.x, v.y)] == pytest.approx([0.25, 0.25, 0.75, 0.75])

    everything = env["pred"].predict(
        name=MODEL, payload={"image": {"image_bytes": _image((128, 64), "JPEG")}}, params={"score_threshold": "0.2"}
    )
    assert [p.display_name for p in everything.payload] == ["red", "green", "blue"]


def test_bad_max_bounding_box_count_is_rejected(env):
    for value in ("0", "-1", "x"):
        with pytest.raises(exceptions.BadRequest, match="max_bounding_box_count"):
            env["pred"].predict(
                name=MODEL,
                payload={"image": {"image_bytes": _image((64, 64), "PNG")}},
                params={"max_bounding_box_count": value},
            )


def test_detector_reports_object_detection_metadata(env):
    model = env["automl"].get_model(name=MODEL)
    assert automl_v1.Model.pb(model).WhichOneof("model_metadata") == "image_object_detection_model_metadata"
    models = env["automl"].list_models(parent=PROJECT_LOCATION)
    kinds = {m.display_name: automl_v1.Model.pb(m).WhichOneof("model_metadata") for m in models}
    assert kinds == {"boxes": "image_object_detection_model_metadata", "colors": "image_classification_model_metadata"}
