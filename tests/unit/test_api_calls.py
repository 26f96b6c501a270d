"""Plain AutoML v1 calls through the HTTP app: shapes the clients parse, and clear errors for bad requests."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from google.cloud import automl_v1  # registers the AutoML message types used to parse operations strictly
from google.longrunning import operations_pb2
from google.protobuf import json_format

from tests.support import (
    BASE,
    assert_error,
    image_bytes,
    link_many,
    predict_body,
    submit,
    wait_done,
    write_big_png,
    write_image,
)


def strict_operation(body: dict) -> operations_pb2.Operation:
    """Parse as the operations client does: unknown fields anywhere are an error."""
    op = json_format.Parse(json.dumps(body), operations_pb2.Operation(), ignore_unknown_fields=False)
    metadata = automl_v1.OperationMetadata.pb()()
    assert op.metadata.Unpack(metadata)
    return op


def test_predict_returns_labels_highest_first(client: TestClient) -> None:
    reply = client.post(f"{BASE}/models/colors:predict", json=predict_body(image_bytes("green"), score_threshold="0"))
    assert reply.status_code == 200, reply.text
    payload = reply.json()["payload"]
    assert [p["displayName"] for p in payload][0] == "green" and len(payload) == 3
    scores = [p["classification"]["score"] for p in payload]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"payload": {"image": {"imageBytes": "%%% not base64"}}}, ["base64"]),
        ({"payload": {}}, ["payload.image"]),
        (predict_body(image_bytes("red"), score_threshold="1.5"), ["score_threshold", "between 0 and 1"]),
        (predict_body(image_bytes("red"), score_threshold="abc"), ["score_threshold", "'abc'"]),
        (predict_body(image_bytes("red"), colour="red"), ["unknown params", "colour"]),
        (predict_body(b"\0" * (30 * 1024 * 1024 + 1)), ["30 MB"]),
        (predict_body(b"not an image"), ["cannot be decoded"]),
    ],
)
def test_predict_bad_input_is_400(client: TestClient, body: dict, words: list[str]) -> None:
    assert_error(client.post(f"{BASE}/models/colors:predict", json=body), 400, "INVALID_ARGUMENT", *words)


def test_malformed_json_is_400(client: TestClient) -> None:
    reply = client.post(
        f"{BASE}/models/colors:batchPredict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(reply, 400, "INVALID_ARGUMENT", "not valid JSON")


@pytest.mark.parametrize("threshold", ["1.5", "abc", "-0.1"])
def test_batch_predict_bad_params_is_400_and_records_nothing(client: TestClient, threshold: str) -> None:
    assert_error(
        submit(client, ["gs://b/in.csv"], {"score_threshold": threshold}), 400, "INVALID_ARGUMENT", "score_threshold"
    )
    assert client.get(f"{BASE}/operations").json()["operations"] == []


def test_batch_predict_missing_fields_is_400(client: TestClient) -> None:
    reply = client.post(f"{BASE}/models/colors:batchPredict", json={"inputConfig": {"gcsSource": {"inputUris": []}}})
    assert_error(reply, 400, "INVALID_ARGUMENT", "outputConfig", "inputUris")


def test_unknown_model_is_404(client: TestClient) -> None:
    assert_error(client.get(f"{BASE}/models/nope"), 404, "NOT_FOUND", "nope")
    assert_error(submit(client, ["gs://b/x.csv"], model="nope"), 404, "NOT_FOUND", "nope")
    assert_error(client.post(f"{BASE}/models/nope:predict", json=predict_body(b"x")), 404, "NOT_FOUND")


def test_unknown_operation_is_404(client: TestClient) -> None:
    assert_error(client.get(f"{BASE}/operations/123"), 404, "NOT_FOUND", "123")
    assert_error(client.delete(f"{BASE}/operations/123"), 404, "NOT_FOUND")
    assert_error(client.post(f"{BASE}/operations/123:cancel"), 404, "NOT_FOUND")


def test_operations_parse_strictly_at_every_stage(client: TestClient, data_dir: Path) -> None:
    write_image(data_dir / "buckets" / "b" / "r.jpg", "red")
    (data_dir / "buckets" / "b" / "in.csv").write_text("gs://b/r.jpg\ngs://b/missing.jpg\n")
    submitted = submit(client, ["gs://b/in.csv"]).json()
    assert submitted["done"] is False
    assert submitted["metadata"]["batchPredictDetails"]["inputConfig"] == {
        "gcsSource": {"inputUris": ["gs://b/in.csv"]}
    }
    strict_operation(submitted)
    done = wait_done(client, submitted["name"])
    op = strict_operation(done)
    assert op.done and op.response.type_url.endswith("BatchPredictResult")
    metadata = automl_v1.OperationMetadata.pb()()
    op.metadata.Unpack(metadata)
    assert metadata.batch_predict_details.output_info.gcs_output_directory.startswith("gs://b/out/prediction-colors-")
    assert metadata.progress_percent == 100 and len(metadata.partial_failures) == 1
    assert metadata.partial_failures[0].code == 5


def test_deploy_and_undeploy(client: TestClient) -> None:
    assert client.get(f"{BASE}/models/colors").json()["deploymentState"] == "UNDEPLOYED"
    op = client.post(f"{BASE}/models/colors:deploy", json={}).json()
    assert op["done"] and op["response"] == {"@type": "type.googleapis.com/google.protobuf.Empty"}
    assert "deployModelDetails" in op["metadata"]
    strict_operation(op)
    assert client.get(f"{BASE}/models/colors").json()["deploymentState"] == "DEPLOYED"
    strict_operation(client.post(f"{BASE}/models/colors:undeploy").json())
    assert client.get(f"{BASE}/models/colors").json()["deploymentState"] == "UNDEPLOYED"


def test_delete_model(client: TestClient) -> None:
    op = client.delete(f"{BASE}/models/colors").json()
    assert op["done"] and op["response"] == {"@type": "type.googleapis.com/google.protobuf.Empty"}
    assert "deleteDetails" in op["metadata"]
    strict_operation(op)
    assert_error(client.get(f"{BASE}/models/colors"), 404, "NOT_FOUND", "colors")
    assert_error(client.delete(f"{BASE}/models/colors"), 404, "NOT_FOUND")
    assert client.get(f"{BASE}/models").json()["model"] == []


def test_models_get_and_list(client: TestClient) -> None:
    model = client.get(f"{BASE}/models/colors").json()
    assert model["name"] == "projects/p/locations/us-central1/models/colors"
    assert model["displayName"] == "colors" and "imageClassificationModelMetadata" in model
    listed = client.get(f"{BASE}/models").json()
    assert listed["model"] == [model] and listed["nextPageToken"] == ""
    filtered = client.get(f"{BASE}/models", params={"filter": "image_object_detection_model_metadata:*"}).json()
    assert filtered["model"] == []


def test_list_operations_pages_and_filters(client: TestClient) -> None:
    names = [client.post(f"{BASE}/models/colors:deploy").json()["name"] for _ in range(3)]
    first = client.get(f"{BASE}/operations", params={"pageSize": 2}).json()
    second = client.get(f"{BASE}/operations", params={"pageSize": 2, "pageToken": first["nextPageToken"]}).json()
    assert [o["name"] for o in first["operations"] + second["operations"]] == names[::-1]
    assert second["nextPageToken"] == ""
    assert client.get(f"{BASE}/operations", params={"filter": "done = false"}).json()["operations"] == []
    assert_error(client.get(f"{BASE}/operations", params={"filter": "foo"}), 400, "INVALID_ARGUMENT", "filter")
    other = client.get("/v1/projects/other/locations/us-central1/operations").json()
    assert other["operations"] == []


def test_cancel_then_delete(client: TestClient, data_dir: Path) -> None:
    bucket = data_dir / "buckets" / "b"
    paths = link_many(write_big_png(data_dir / "big.png", "red"), bucket / "many", 3000)
    (bucket / "in.csv").write_text("\n".join(f"gs://b/many/{p.name}" for p in paths))
    name = submit(client, ["gs://b/in.csv"]).json()["name"]
    assert_error(client.delete(f"/v1/{name}"), 400, "FAILED_PRECONDITION", "cancel it first")
    assert client.post(f"/v1/{name}:cancel").json() == {}
    started = time.monotonic()
    op = wait_done(client, name)
    assert time.monotonic() - started < 5
    assert op["error"]["code"] == 1
    strict_operation(op)
    assert client.delete(f"/v1/{name}").json() == {}
    assert_error(client.get(f"/v1/{name}"), 404, "NOT_FOUND")


def test_wait_returns_the_done_operation(client: TestClient) -> None:
    (Path(client.app.state.services.settings.data_dir) / "buckets" / "b" / "in.csv").write_text("gs://b/gone.jpg\n")
    name = submit(client, ["gs://b/in.csv"]).json()["name"]
    op = client.post(f"/v1/{name}:wait", json={"timeout": "20s"}).json()
    assert op["done"] is True
    assert_error(client.post(f"/v1/{name}:wait", json={"timeout": "soon"}), 400, "INVALID_ARGUMENT", "duration")


def test_unknown_route_is_404_json(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing/here"), 404, "NOT_FOUND")
    assert_error(client.post(f"{BASE}/models/colors:explode"), 404, "NOT_FOUND", ":explode")
