"""Image object detection through the HTTP app: each detector convention is a real ONNX graph run by ONNX Runtime.

The detectors answer constant boxes in model-input pixels, so where each box must land in each original image is
computed by hand here (model pixel = original pixel * scale + pad) and compared with what a user reads back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from batchline.errors import InvalidArgument
from batchline.models.repository import ModelRepository
from batchline.problems.image.detector import nms
from tests.support import (
    BASE,
    assert_error,
    edit_manifest,
    image_bytes,
    make_color_model,
    make_detector_model,
    make_yolo_model,
    output_folder,
    predict_body,
    read_jsonl,
    submit,
    wait_done,
    yolo_head,
)

SIZE = 64  # the detectors' input side, in pixels
WIDE, TALL = (128, 64), (64, 128)  # width, height of the test images
# Boxes in model pixels, xyxy; both lie inside the picture under letterbox and stretch, for both images.
RED_BOX, GREEN_BOX = (18, 20, 44, 42), (24, 26, 40, 36)
PADDING_BOX = (10, 2, 30, 12)  # rows 2..12: in the grey band above a letterboxed 128x64 image (rows 16..48)
FIVE_BOXES = [((8 * i, 2, 8 * i + 6, 60), 0, score) for i, score in enumerate((0.7, 0.9, 0.3, 0.8, 0.6))]
Box = tuple[float, float, float, float]


def expected_box(model_box: Box, image_size: tuple[int, int], resize: str) -> Box:
    """A box in model-input pixels mapped back by hand to the original image, relative to its size."""
    width, height = image_size
    if resize == "stretch":
        scale_x, scale_y, pad_x, pad_y = SIZE / width, SIZE / height, 0, 0
    else:
        scale_x = scale_y = min(SIZE / width, SIZE / height)
        pad_x, pad_y = (SIZE - round(width * scale_x)) // 2, (SIZE - round(height * scale_y)) // 2
    x1, y1, x2, y2 = model_box
    return (
        (x1 - pad_x) / scale_x / width,
        (y1 - pad_y) / scale_y / height,
        (x2 - pad_x) / scale_x / width,
        (y2 - pad_y) / scale_y / height,
    )


BATCH_KEYS = ("display_name", "image_object_detection", "bounding_box", "normalized_vertices")
ONLINE_KEYS = ("displayName", "imageObjectDetection", "boundingBox", "normalizedVertices")


def boxes_of(annotations: list[dict], keys: tuple[str, str, str, str]) -> list[tuple[str, float, Box]]:
    """(label, score, xyxy) of each annotation, in the order given; `keys` names the fields of the surface."""
    name, detail, bounding_box, vertices = keys
    found = []
    for a in annotations:
        top_left, bottom_right = a[detail][bounding_box][vertices]
        box = (top_left["x"], top_left["y"], bottom_right["x"], bottom_right["y"])
        found.append((a[name], a[detail]["score"], box))
    return found


def install(data_dir: Path, source: Path) -> str:
    return ModelRepository(data_dir / "models").import_folder(source).manifest.id


def run_batch(
    client: TestClient, data_dir: Path, model: str, images: dict[str, bytes], params: dict | None = None
) -> tuple[dict, Path]:
    """Write the images under gs://b/det/, batch-predict them, and return the done operation and output folder."""
    bucket = data_dir / "buckets" / "b"
    (bucket / "det").mkdir(parents=True, exist_ok=True)
    for name, data in images.items():
        (bucket / "det" / name).write_bytes(data)
    (bucket / "det.csv").write_text("\n".join(f"gs://b/det/{name}" for name in images))
    reply = submit(client, ["gs://b/det.csv"], params, model=model)
    assert reply.status_code == 200, reply.text
    op = wait_done(client, reply.json()["name"])
    return op, output_folder(data_dir, op)


def results(folder: Path) -> dict[str, list[tuple[str, float, Box]]]:
    lines = read_jsonl(folder, "image_object_detection_*.jsonl")
    return {line["ID"]: boxes_of(line["annotations"], BATCH_KEYS) for line in lines}


def predict(client: TestClient, model: str, data: bytes, **params: str) -> list[tuple[str, float, Box]]:
    reply = client.post(f"{BASE}/models/{model}:predict", json=predict_body(data, **params))
    assert reply.status_code == 200, reply.text
    return boxes_of(reply.json()["payload"], ONLINE_KEYS)


def assert_boxes(found: list[tuple[str, float, Box]], expected: list[tuple[str, float, Box]]) -> None:
    assert [(label, score) for label, score, _ in found] == [(label, pytest.approx(s)) for label, s, _ in expected]
    for (_, _, box), (_, _, want) in zip(found, expected, strict=True):
        assert box == pytest.approx(want, abs=1e-6)


TWO_IMAGES = {"wide.jpg": image_bytes("red", "JPEG", WIDE), "tall.png": image_bytes("blue", "PNG", TALL)}
IMAGE_SIZES = {"gs://b/det/wide.jpg": WIDE, "gs://b/det/tall.png": TALL}


# -- raw YOLO head


@pytest.mark.parametrize("resize", ["letterbox", "stretch"])
def test_yolo_boxes_land_where_they_are_in_each_original_image(
    client: TestClient, data_dir: Path, tmp_path: Path, resize: str
) -> None:
    head = yolo_head([(GREEN_BOX, 1, 0.6), (RED_BOX, 0, 0.9), ((2, 2, 10, 10), 2, 0.3)])
    model = install(data_dir, make_yolo_model(tmp_path / "yolo", head, resize=resize))
    _, folder = run_batch(client, data_dir, model, TWO_IMAGES)
    found = results(folder)
    assert set(found) == set(IMAGE_SIZES)
    for uri, size in IMAGE_SIZES.items():
        expected = [
            ("red", 0.9, expected_box(RED_BOX, size, resize)),
            ("green", 0.6, expected_box(GREEN_BOX, size, resize)),
        ]
        assert_boxes(found[uri], expected)


def test_letterboxed_wide_image_box_by_hand(client: TestClient, data_dir: Path, tmp_path: Path) -> None:
    # 128x64 into 64x64: scale 0.5, 32 rows of picture, 16 rows of grey above. x: 18/0.5/128, y: (20-16)/0.5/64
    model = install(data_dir, make_yolo_model(tmp_path / "yolo", yolo_head([(RED_BOX, 0, 0.9)])))
    (found,) = predict(client, model, TWO_IMAGES["wide.jpg"])
    assert found[2] == pytest.approx((0.28125, 0.125, 0.6875, 0.8125), abs=1e-6)


def test_batch_output_has_the_automl_object_detection_layout(
    client: TestClient, data_dir: Path, tmp_path: Path
) -> None:
    head = yolo_head([(GREEN_BOX, 1, 0.6), (RED_BOX, 0, 0.9)])
    model = install(data_dir, make_yolo_model(tmp_path / "yolo", head))
    op, folder = run_batch(client, data_dir, model, {"wide.jpg": TWO_IMAGES["wide.jpg"]})
    assert op["response"] == {
        "@type": "type.googleapis.com/google.cloud.automl.v1.BatchPredictResult",
        "metadata": {"max_bounding_box_count": "100"},
    }
    assert sorted(p.name for p in folder.iterdir()) == ["image_object_detection_1.jsonl"]
    (line,) = read_jsonl(folder, "image_object_detection_1.jsonl")
    assert list(line) == ["ID", "annotations"] and line["ID"] == "gs://b/det/wide.jpg"
    first, second = line["annotations"]
    assert list(first) == ["annotation_spec_id", "display_name", "image_object_detection"]
    assert first["annotation_spec_id"] == first["display_name"] == "red"
    assert second["annotation_spec_id"] == second["display_name"] == "green"
    detection = first["image_object_detection"]
    assert list(detection) == ["bounding_box", "score"] and list(detection["bounding_box"]) == ["normalized_vertices"]
    vertices = detection["bounding_box"]["normalized_vertices"]
    assert [list(v) for v in vertices] == [["x", "y"], ["x", "y"]]
    assert detection["score"] == pytest.approx(0.9) and second["image_object_detection"]["score"] == pytest.approx(0.6)


def test_nms_keeps_the_best_of_overlapping_boxes_of_one_class_only(
    client: TestClient, data_dir: Path, tmp_path: Path
) -> None:
    best, overlapping, far = (10, 10, 40, 40), (12, 12, 42, 42), (46, 46, 60, 60)  # IoU(best, overlapping) = 0.77
    head = yolo_head([(overlapping, 0, 0.8), (best, 0, 0.9), (best, 1, 0.7), (far, 0, 0.6)])
    model = install(data_dir, make_yolo_model(tmp_path / "yolo", head, resize="stretch"))
    found = predict(client, model, image_bytes("red", "PNG", (SIZE, SIZE)))
    expected_boxes = [tuple(v / SIZE for v in box) for box in (best, best, far)]
    assert_boxes(found, list(zip(["red", "green", "red"], [0.9, 0.7, 0.6], expected_boxes, strict=True)))


@pytest.mark.parametrize("count", [300, 1500])  # all IoUs at once, and one kept box's IoUs at a time
def test_nms_keeps_what_plain_greedy_suppression_keeps(count: int) -> None:
    rng = np.random.default_rng(count)
    corners = rng.uniform(0, 300, (count, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 80, (count, 2))], axis=1)
    scores, classes = rng.uniform(0, 1, count), rng.integers(0, 3, count)

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union

    expected: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(classes[k] != classes[i] or iou(boxes[k], boxes[i]) <= 0.45 for k in expected):
            expected.append(int(i))
    assert nms(boxes, scores, classes, 0.45, count).tolist() == expected
    assert nms(boxes, scores, classes, 0.45, 10).tolist() == expected[:10]


def test_transposed_yolo_head_gives_the_same_boxes(client: TestClient, data_dir: Path, tmp_path: Path) -> None:
    head = yolo_head([(GREEN_BOX, 1, 0.6), (RED_BOX, 0, 0.9), ((2, 2, 10, 10), 2, 0.3)])  # 3 anchors, 7 rows
    usual = install(data_dir, make_yolo_model(tmp_path / "usual", head, model_id="usual"))
    transposed = install(data_dir, make_yolo_model(tmp_path / "transposed", head.T, model_id="transposed"))
    image = TWO_IMAGES["tall.png"]
    found = predict(client, transposed, image)
    assert [label for label, _, _ in found] == ["red", "green"]
    assert found == predict(client, usual, image)


def test_sigmoid_activation_turns_class_logits_into_scores(client: TestClient, data_dir: Path, tmp_path: Path) -> None:
    head = yolo_head([(RED_BOX, 0, 2.0), (GREEN_BOX, 1, -1.0)], others=-10.0)  # sigmoid: 0.881, 0.269 (< 0.5)
    model = install(data_dir, make_yolo_model(tmp_path / "yolo", head, activation="sigmoid", resize="stretch"))
    found = predict(client, model, image_bytes("red", "PNG", (SIZE, SIZE)))
    assert_boxes(found, [("red", 1 / (1 + np.exp(-2.0)), tuple(v / SIZE for v in RED_BOX))])


# -- post-NMS tensors


def make_torchvision_model(folder: Path, detections: list[tuple[Box, int, float]]) -> Path:
    """torchvision's export: no batch axis, xyxy in model pixels, int64 labels where 0 is the background."""
    outputs = {
        "boxes": np.array([box for box, _, _ in detections], dtype=np.float32).reshape(-1, 4),
        "scores": np.array([score for _, _, score in detections], dtype=np.float32),
        "labels": np.array([label + 1 for _, label, _ in detections], dtype=np.int64),
    }
    output = {"format": "boxes", "boxes": "boxes", "scores": "scores", "classes": "labels", "class_offset": 1}
    return make_detector_model(folder, outputs, output, model_id="torchvision", batch_axis=False, batch_size=1)


def test_torchvision_boxes_without_batch_axis_map_back(client: TestClient, data_dir: Path, tmp_path: Path) -> None:
    model = install(data_dir, make_torchvision_model(tmp_path / "tv", [(GREEN_BOX, 1, 0.6), (RED_BOX, 2, 0.95)]))
    _, folder = run_batch(client, data_dir, model, TWO_IMAGES)
    found = results(folder)
    for uri, size in IMAGE_SIZES.items():
        expected = [("blue", 0.95, expected_box(RED_BOX, size, "letterbox"))]
        assert_boxes(found[uri], [*expected, ("green", 0.6, expected_box(GREEN_BOX, size, "letterbox"))])


def test_background_rows_under_the_threshold_are_ignored(client: TestClient, data_dir: Path, tmp_path: Path) -> None:
    background = ((0, 0, 0, 0), -1, 0.0)  # a zero-score padding row of class 0, the background: no label of ours
    model = install(data_dir, make_torchvision_model(tmp_path / "tv", [(RED_BOX, 2, 0.95), background]))
    _, folder = run_batch(client, data_dir, model, TWO_IMAGES)
    for uri, size in IMAGE_SIZES.items():
        assert_boxes(results(folder)[uri], [("blue", 0.95, expected_box(RED_BOX, size, "letterbox"))])


def make_tensorflow_model(folder: Path, detections: list[tuple[Box, int, float]], count: int) -> Path:
    """The TensorFlow Object Detection API's outputs: [batch, rows, ...], yxyx relative to the input, float classes,
    and num_detections: rows past it are padding."""
    yxyx = [[y1 / SIZE, x1 / SIZE, y2 / SIZE, x2 / SIZE] for (x1, y1, x2, y2), _, _ in detections]
    outputs = {
        "detection_boxes": np.array(yxyx, dtype=np.float32),
        "detection_scores": np.array([score for _, _, score in detections], dtype=np.float32),
        "detection_classes": np.array([label for _, label, _ in detections], dtype=np.float32),
        "num_detections": np.array(count, dtype=np.float32),
    }
    output = {
        "format": "boxes",
        "boxes": "detection_boxes",
        "scores": "detection_scores",
        "classes": "detection_classes",
        "count": "num_detections",
        "box_order": "yxyx",
        "box_units": "normalized",
    }
    return make_detector_model(folder, outputs, output, model_id="tf", resize="stretch")


def test_tensorflow_boxes_stop_at_num_detections(client: TestClient, data_dir: Path, tmp_path: Path) -> None:
    padding = ((0, 0, 64, 64), 7, 0.99)  # past num_detections: a high score, and a class no label has
    model = install(
        data_dir, make_tensorflow_model(tmp_path / "tf", [(RED_BOX, 2, 0.9), (GREEN_BOX, 0, 0.7), padding], 2)
    )
    _, folder = run_batch(client, data_dir, model, TWO_IMAGES)
    found = results(folder)
    for uri, size in IMAGE_SIZES.items():
        expected = [("blue", 0.9, expected_box(RED_BOX, size, "stretch"))]
        assert_boxes(found[uri], [*expected, ("red", 0.7, expected_box(GREEN_BOX, size, "stretch"))])


# -- params


def test_max_bounding_box_count_keeps_the_best_boxes_of_each_image(
    client: TestClient, data_dir: Path, tmp_path: Path
) -> None:
    model = install(data_dir, make_yolo_model(tmp_path / "yolo", yolo_head(FIVE_BOXES), resize="stretch"))
    op, folder = run_batch(client, data_dir, model, TWO_IMAGES, {"max_bounding_box_count": "2", "score_threshold": "0"})
    assert op["response"]["metadata"] == {"max_bounding_box_count": "2"}
    found = results(folder)
    assert set(found) == set(IMAGE_SIZES)
    for boxes in found.values():
        assert [score for _, score, _ in boxes] == pytest.approx([0.9, 0.8])


@pytest.fixture(params=["yolo", "torchvision"])
def five_box_model(request: pytest.FixtureRequest, data_dir: Path, tmp_path: Path) -> str:
    """The same five red boxes (scores 0.7, 0.9, 0.3, 0.8, 0.6), from a raw head or from post-NMS tensors."""
    if request.param == "yolo":
        return install(data_dir, make_yolo_model(tmp_path / "yolo", yolo_head(FIVE_BOXES)))
    return install(data_dir, make_torchvision_model(tmp_path / "tv", FIVE_BOXES))


@pytest.mark.parametrize(
    ("params", "scores"),
    [
        ({}, [0.9, 0.8, 0.7, 0.6]),
        ({"score_threshold": "0.65"}, [0.9, 0.8, 0.7]),
        ({"score_threshold": "0"}, [0.9, 0.8, 0.7, 0.6, 0.3]),
        ({"score_threshold": "0", "max_bounding_box_count": "2"}, [0.9, 0.8]),
    ],
)
def test_score_threshold_and_max_count_online(
    client: TestClient, five_box_model: str, params: dict, scores: list[float]
) -> None:
    found = predict(client, five_box_model, TWO_IMAGES["wide.jpg"], **params)
    assert [score for _, score, _ in found] == pytest.approx(scores)


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_bad_max_bounding_box_count_is_400_on_batch_and_online(
    client: TestClient, data_dir: Path, tmp_path: Path, value: str
) -> None:
    model = install(data_dir, make_yolo_model(tmp_path / "yolo", yolo_head(FIVE_BOXES)))
    params = {"max_bounding_box_count": value}
    reply = submit(client, ["gs://b/det.csv"], params, model=model)
    assert_error(reply, 400, "INVALID_ARGUMENT", "max_bounding_box_count", repr(value))
    assert client.get(f"{BASE}/operations").json()["operations"] == []
    reply = client.post(f"{BASE}/models/{model}:predict", json=predict_body(TWO_IMAGES["wide.jpg"], **params))
    assert_error(reply, 400, "INVALID_ARGUMENT", "max_bounding_box_count", repr(value))


# -- bad models and bad images


@pytest.mark.parametrize(
    ("build", "old", "new", "words"),
    [
        ("yolo", "predictions: output0", "predictions: output", ["output.predictions", "'output'", "['output0']"]),
        ("torchvision", "boxes: boxes", "boxes: bboxes", ["output.boxes", "'bboxes'", "'boxes', 'scores', 'labels'"]),
        ("tf", "count: num_detections", "count: num", ["output.count", "'num'", "'num_detections'"]),
    ],
)
def test_output_name_missing_from_the_graph_fails_at_import(
    tmp_path: Path, build: str, old: str, new: str, words: list[str]
) -> None:
    builders = {
        "yolo": lambda folder: make_yolo_model(folder, yolo_head(FIVE_BOXES)),
        "torchvision": lambda folder: make_torchvision_model(folder, FIVE_BOXES),
        "tf": lambda folder: make_tensorflow_model(folder, FIVE_BOXES, 5),
    }
    source = builders[build](tmp_path / "src")
    edit_manifest(source, old, new)
    models = tmp_path / "models"
    with pytest.raises(InvalidArgument) as caught:
        ModelRepository(models).import_folder(source)
    for word in words:
        assert word in caught.value.message
    assert not any(models.iterdir())


def test_yolo_output_on_a_classifier_is_rejected_at_import(tmp_path: Path) -> None:
    source = make_color_model(tmp_path / "src")
    edit_manifest(source, "scores: logits\n  activation: softmax", "format: yolo\n  predictions: logits")
    with pytest.raises(InvalidArgument) as caught:
        ModelRepository(tmp_path / "models").import_folder(source)
    assert "output.format must be one of ['scores'] for image_classification" in caught.value.message
    assert not any((tmp_path / "models").iterdir())


def test_center_crop_detector_is_rejected_at_import(tmp_path: Path) -> None:
    source = make_yolo_model(tmp_path / "src", yolo_head(FIVE_BOXES), resize="center_crop")
    with pytest.raises(InvalidArgument) as caught:
        ModelRepository(tmp_path / "models").import_folder(source)
    assert "center_crop" in caught.value.message and "letterbox" in caught.value.message
    assert not any((tmp_path / "models").iterdir())


def test_boxes_partly_outside_the_image_are_clamped(client: TestClient, data_dir: Path, tmp_path: Path) -> None:
    # 128x64 letterboxed: picture rows 16..48 of 64. This box starts in the grey band and ends past the right edge.
    model = install(data_dir, make_yolo_model(tmp_path / "yolo", yolo_head([((10, 8, 70, 30), 0, 0.9)])))
    (found,) = predict(client, model, TWO_IMAGES["wide.jpg"])
    assert found[2] == pytest.approx((10 / 0.5 / 128, 0.0, 1.0, (30 - 16) / 0.5 / 64), abs=1e-6)


def test_box_entirely_in_the_letterbox_padding_is_dropped(client: TestClient, data_dir: Path, tmp_path: Path) -> None:
    head = yolo_head([(PADDING_BOX, 0, 0.95), (RED_BOX, 1, 0.6)])
    model = install(data_dir, make_yolo_model(tmp_path / "yolo", head))
    assert [label for label, _, _ in predict(client, model, TWO_IMAGES["wide.jpg"])] == ["green"]


def test_box_in_the_padding_does_not_take_a_place_of_max_bounding_box_count(
    client: TestClient, data_dir: Path, tmp_path: Path
) -> None:
    head = yolo_head([(PADDING_BOX, 0, 0.95), (RED_BOX, 1, 0.6)])
    model = install(data_dir, make_yolo_model(tmp_path / "yolo", head))
    found = predict(client, model, TWO_IMAGES["wide.jpg"], max_bounding_box_count="1")
    assert [label for label, _, _ in found] == ["green"]


def test_image_without_detections_gets_an_empty_annotations_line(
    client: TestClient, data_dir: Path, tmp_path: Path
) -> None:
    model = install(data_dir, make_yolo_model(tmp_path / "yolo", yolo_head([(RED_BOX, 0, 0.4)])))
    op, folder = run_batch(client, data_dir, model, {"wide.jpg": TWO_IMAGES["wide.jpg"]})
    assert "response" in op
    assert read_jsonl(folder, "image_object_detection_*.jsonl") == [{"ID": "gs://b/det/wide.jpg", "annotations": []}]
    assert not list(folder.glob("errors_*.jsonl"))


def test_corrupt_image_is_an_error_line_and_the_others_are_predicted(
    client: TestClient, data_dir: Path, tmp_path: Path
) -> None:
    model = install(data_dir, make_yolo_model(tmp_path / "yolo", yolo_head([(RED_BOX, 0, 0.9)])))
    images = {**TWO_IMAGES, "broken.jpg": b"\xff\xd8 not a jpeg"}
    op, folder = run_batch(client, data_dir, model, images)
    assert "response" in op
    assert {uri: [label for label, _, _ in boxes] for uri, boxes in results(folder).items()} == {
        "gs://b/det/wide.jpg": ["red"],
        "gs://b/det/tall.png": ["red"],
    }
    (error,) = read_jsonl(folder, "errors_*.jsonl")
    assert error["ID"] == "gs://b/det/broken.jpg" and error["error"]["code"] == 3
    assert "cannot be decoded" in error["error"]["message"]


# -- online


def test_online_predict_returns_boxes_highest_score_first(client: TestClient, data_dir: Path, tmp_path: Path) -> None:
    head = yolo_head([(GREEN_BOX, 1, 0.6), (RED_BOX, 0, 0.9)])
    model = install(data_dir, make_yolo_model(tmp_path / "yolo", head))
    reply = client.post(f"{BASE}/models/{model}:predict", json=predict_body(TWO_IMAGES["tall.png"]))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["metadata"] == {"max_bounding_box_count": "100"}
    first, second = body["payload"]
    assert set(first) == {"annotationSpecId", "displayName", "imageObjectDetection"}
    assert first["annotationSpecId"] == first["displayName"] == "red" and second["displayName"] == "green"
    assert set(first["imageObjectDetection"]) == {"boundingBox", "score"}
    assert [set(v) for v in first["imageObjectDetection"]["boundingBox"]["normalizedVertices"]] == [{"x", "y"}] * 2
    assert_boxes(
        boxes_of(body["payload"], ONLINE_KEYS),
        [
            ("red", 0.9, expected_box(RED_BOX, TALL, "letterbox")),
            ("green", 0.6, expected_box(GREEN_BOX, TALL, "letterbox")),
        ],
    )


def test_detector_model_resource_has_object_detection_metadata(
    client: TestClient, data_dir: Path, tmp_path: Path
) -> None:
    model = install(data_dir, make_yolo_model(tmp_path / "yolo", yolo_head(FIVE_BOXES)))
    resource = client.get(f"{BASE}/models/{model}").json()
    assert resource["imageObjectDetectionModelMetadata"] == {"modelType": "onnx", "nodeCount": "1"}
    assert "imageClassificationModelMetadata" not in resource
