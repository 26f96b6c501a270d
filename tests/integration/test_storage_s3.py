"""s3:// through s3fs, against a real S3 server (moto's `moto_server`).

s3fs (botocore) finds the server through the standard AWS_ENDPOINT_URL, with dummy credentials (see conftest.py):
batchline itself has no S3 setting.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from batchline.api.app import create_app
from batchline.config import Settings
from batchline.errors import InvalidArgument, NotFound, PermissionDenied
from batchline.storage import Storage
from tests.integration.conftest import S3Server
from tests.support import COLOR_LABELS, COLORS, image_bytes

PREFIX = "/v1/projects/p/locations/us-central1"


@pytest.fixture
def s3_settings(settings: Settings, s3_server: S3Server) -> Settings:
    """The shared test settings (colour model, 4 inputs a shard, 2 s leases), with the moto server running."""
    return settings


@pytest.fixture
def s3(s3_settings: Settings) -> Storage:
    return Storage(s3_settings)


@pytest.fixture
def upload(s3_server: S3Server):
    """upload(uri, data): put an object in the server as another client would (not through batchline)."""
    fs = s3_server.make_fs()

    def put(uri: str, data: bytes) -> str:
        fs.pipe_file(uri.removeprefix("s3://"), data)
        return uri

    return put


def objects_under(s3_server: S3Server, uri: str) -> list[str]:
    """Every object below a prefix, asked of the server afresh (no listing cache)."""
    return sorted("s3://" + p for p in s3_server.make_fs().find(uri.removeprefix("s3://")))


# ---------------------------------------------------------------------------------------------- Storage on S3


def test_read_an_object(s3: Storage, s3_bucket: str, upload) -> None:
    data = image_bytes("red", "PNG")
    upload(f"s3://{s3_bucket}/img/red.png", data)
    upload(f"s3://{s3_bucket}/img/with space/red 1.png", data)

    assert s3.read(f"s3://{s3_bucket}/img/red.png") == data
    assert s3.read(f"s3://{s3_bucket}/img/with space/red 1.png") == data
    assert s3.exists(f"s3://{s3_bucket}/img/red.png")


def test_a_missing_object_or_bucket_is_not_found(s3: Storage, s3_bucket: str) -> None:
    with pytest.raises(NotFound, match="missing.jpg"):
        s3.read(f"s3://{s3_bucket}/img/missing.jpg")
    with pytest.raises(NotFound):
        s3.read("s3://no-such-bucket-here/img/x.jpg")
    assert not s3.exists(f"s3://{s3_bucket}/img/missing.jpg")


def test_reading_over_max_bytes_is_invalid_argument(s3: Storage, s3_bucket: str, upload) -> None:
    uri = upload(f"s3://{s3_bucket}/big.bin", b"x" * 5000)
    with pytest.raises(InvalidArgument):
        s3.read(uri, max_bytes=4999)
    assert s3.read(uri, max_bytes=5000) == b"x" * 5000


def test_keys_climbing_out_of_the_bucket_are_denied(s3: Storage, s3_bucket: str) -> None:
    for uri in (f"s3://{s3_bucket}/../x", f"s3://{s3_bucket}/a/../../x"):
        with pytest.raises(PermissionDenied):
            s3.read(uri)
        with pytest.raises(PermissionDenied):
            s3.publish(uri, b"x")


def test_publish_exists_list_files_move_delete_tree(s3: Storage, s3_server: S3Server, s3_bucket: str) -> None:
    run = f"s3://{s3_bucket}/out/run"
    s3.publish(f"{run}/a.jsonl", b"A\n")
    s3.publish(f"{run}/.staging/shard-000000.results.jsonl", b"S0\n")
    s3.publish(f"{run}/.staging/shard-000001.results.jsonl", b"S1\n")
    s3.publish(f"{run}/a.jsonl", b"A2\n")  # overwrites

    assert s3.read(f"{run}/a.jsonl") == b"A2\n"
    assert s3.exists(f"{run}/a.jsonl") and s3.exists(f"{run}/.staging/shard-000001.results.jsonl")
    assert s3.list_files(run) == [f"{run}/.staging", f"{run}/a.jsonl"]
    assert s3.list_files(run + "/") == [f"{run}/.staging", f"{run}/a.jsonl"]
    assert s3.list_files(f"s3://{s3_bucket}/out/none") == []

    s3.move(f"{run}/.staging/shard-000000.results.jsonl", f"{run}/b.jsonl")
    assert s3.read(f"{run}/b.jsonl") == b"S0\n"
    assert not s3.exists(f"{run}/.staging/shard-000000.results.jsonl")

    s3.delete_tree(f"{run}/.staging")
    s3.delete_tree(f"{run}/.staging")  # nothing left: no error
    assert s3.list_files(run) == [f"{run}/a.jsonl", f"{run}/b.jsonl"]
    assert objects_under(s3_server, f"s3://{s3_bucket}") == [f"{run}/a.jsonl", f"{run}/b.jsonl"]


def test_objects_written_by_another_client_are_seen(s3: Storage, s3_bucket: str, upload) -> None:
    folder = f"s3://{s3_bucket}/shared"
    s3.publish(f"{folder}/mine.txt", b"1")
    assert s3.list_files(folder) == [f"{folder}/mine.txt"]

    upload(f"{folder}/theirs.txt", b"2")

    assert s3.list_files(folder) == [f"{folder}/mine.txt", f"{folder}/theirs.txt"]
    assert s3.read(f"{folder}/theirs.txt") == b"2"


# --------------------------------------------------------------------------------------- a whole job on S3


def expected_score(color: str) -> float:
    """The colour model's top softmax score for a flat image of `color` (lossless formats only)."""
    logits = 10 * np.array(COLORS[color], dtype=np.float64) / 255
    top = logits[COLOR_LABELS.index(color)]
    return float(1 / np.exp(logits - top).sum())


def wait_done(client: TestClient, name: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        op = client.post(f"/v1/{name}:wait", json={"timeout": "10s"}).json()
        if op.get("done") or time.monotonic() > deadline:
            return op


def batch_predict(client: TestClient, inputs: list[str], output: str) -> dict[str, Any]:
    body = {
        "inputConfig": {"gcsSource": {"inputUris": inputs}},
        "outputConfig": {"gcsDestination": {"outputUriPrefix": output}},
    }
    reply = client.post(f"{PREFIX}/models/colors:batchPredict", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def read_lines(s3: Storage, uri: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in s3.read(uri).decode().splitlines()]


def test_a_batch_job_reads_and_writes_s3(
    s3_settings: Settings, s3_server: S3Server, s3_bucket: str, upload, data_dir: Path
) -> None:
    """Images, CSV and results all in the S3 server (the job store on SQLite)."""
    img = f"s3://{s3_bucket}/img"
    good = {
        f"{img}/red.jpg": ("red", image_bytes("red", "JPEG")),
        f"{img}/green.png": ("green", image_bytes("green", "PNG")),
        f"{img}/blue.gif": ("blue", image_bytes("blue", "GIF")),
        f"{img}/with space/red 2.png": ("red", image_bytes("red", "PNG")),
        f"{img}/blue2.png": ("blue", image_bytes("blue", "PNG")),
    }
    for uri, (_, data) in good.items():
        upload(uri, data)
    missing = f"{img}/missing.jpg"
    order = [*list(good)[:4], missing, *list(good)[4:]]  # shard 0: 4 results; shard 1: 1 error, 1 result
    csv_a = "\n".join(f'"{u}"' if " " in u else u for u in order[:3]) + "\n"
    csv_b = "\r\n".join([*(f'"{u}"' if " " in u else u for u in order[3:]), order[0]]) + "\r\n"  # a repeat counts once
    inputs = [
        upload(f"s3://{s3_bucket}/in/a.csv", csv_a.encode()),
        upload(f"s3://{s3_bucket}/in/b.csv", csv_b.encode()),
    ]

    with TestClient(create_app(s3_settings)) as client:
        op = batch_predict(client, inputs, f"s3://{s3_bucket}/out")
        assert op["done"] is False
        op = wait_done(client, op["name"])

    assert op.get("done") is True and "error" not in op, op
    assert op["response"]["@type"].endswith("google.cloud.automl.v1.BatchPredictResult")
    out_dir = op["metadata"]["batchPredictDetails"]["outputInfo"]["gcsOutputDirectory"]
    assert out_dir.startswith(f"s3://{s3_bucket}/out/prediction-colors-")
    assert [f["code"] for f in op["metadata"]["partialFailures"]] == [5]
    assert not (data_dir / "buckets" / s3_bucket).exists()  # nothing went to the embedded buckets

    s3 = Storage(s3_settings)
    names = ["errors_1.jsonl", "image_classification_1.jsonl", "image_classification_2.jsonl"]
    assert objects_under(s3_server, out_dir) == [f"{out_dir}/{n}" for n in names]  # and no .staging left
    results = [line for n in names[1:] for line in read_lines(s3, f"{out_dir}/{n}")]
    assert [r["ID"] for r in results] == [u for u in order if u in good]
    for line in results:
        color = good[line["ID"]][0]
        assert list(line) == ["ID", "annotations"]
        (annotation,) = line["annotations"]  # score_threshold 0.5: the top class only
        assert {k: v for k, v in annotation.items() if k != "classification"} == {
            "annotation_spec_id": color,
            "display_name": color,
        }
        score = annotation["classification"]["score"]
        if line["ID"].endswith(".png"):
            assert score == pytest.approx(expected_score(color), abs=1e-5)
        else:  # lossy formats shift the colours a little
            assert score > 0.99
    (error,) = read_lines(s3, f"{out_dir}/errors_1.jsonl")
    assert error["ID"] == missing
    assert set(error["error"]) == {"code", "message"} and error["error"]["code"] == 5
    assert missing in error["error"]["message"]
