"""gs:// on Google Cloud Storage (Settings.storage == "gcs") through gcsfs, against a real GCS emulator.

The emulator speaks the GCS JSON API; gcsfs finds it through STORAGE_EMULATOR_HOST (see conftest.py).
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
from tests.integration.conftest import GcsEmulator
from tests.support import COLOR_LABELS, COLORS, image_bytes

PREFIX = "/v1/projects/p/locations/us-central1"


@pytest.fixture
def gcs_settings(settings: Settings, gcs_emulator: GcsEmulator) -> Settings:
    """The shared test settings (colour model, 4 inputs a shard, 2 s leases) with gs:// on GCS."""
    return settings.model_copy(update={"storage": "gcs"})


@pytest.fixture
def gcs(gcs_settings: Settings) -> Storage:
    return Storage(gcs_settings)


@pytest.fixture
def upload(gcs_emulator: GcsEmulator):
    """upload(uri, data): put an object in the emulator as another client would (not through batchline)."""
    fs = gcs_emulator.make_fs()

    def put(uri: str, data: bytes) -> str:
        fs.pipe_file(uri.removeprefix("gs://"), data)
        return uri

    return put


def objects_under(gcs_emulator: GcsEmulator, uri: str) -> list[str]:
    """Every object below a prefix, asked of the emulator afresh (no listing cache)."""
    return sorted("gs://" + p for p in gcs_emulator.make_fs().find(uri.removeprefix("gs://")))


# --------------------------------------------------------------------------------------------- Storage on GCS


def test_read_an_object(gcs: Storage, gcs_bucket: str, upload) -> None:
    data = image_bytes("red", "PNG")
    upload(f"gs://{gcs_bucket}/img/red.png", data)
    upload(f"gs://{gcs_bucket}/img/with space/red 1.png", data)

    assert gcs.read(f"gs://{gcs_bucket}/img/red.png") == data
    assert gcs.read(f"gs://{gcs_bucket}/img/with space/red 1.png") == data
    assert gcs.exists(f"gs://{gcs_bucket}/img/red.png")


def test_a_missing_object_or_bucket_is_not_found(gcs: Storage, gcs_bucket: str) -> None:
    with pytest.raises(NotFound):
        gcs.read(f"gs://{gcs_bucket}/img/missing.jpg")
    with pytest.raises(NotFound):
        gcs.read("gs://no-such-bucket-here/img/x.jpg")
    assert not gcs.exists(f"gs://{gcs_bucket}/img/missing.jpg")


def test_reading_over_max_bytes_is_invalid_argument(gcs: Storage, gcs_bucket: str, upload) -> None:
    uri = upload(f"gs://{gcs_bucket}/big.bin", b"x" * 5000)
    with pytest.raises(InvalidArgument):
        gcs.read(uri, max_bytes=4999)
    assert gcs.read(uri, max_bytes=5000) == b"x" * 5000


def test_keys_climbing_out_of_the_bucket_are_denied(gcs: Storage, gcs_bucket: str) -> None:
    for uri in (f"gs://{gcs_bucket}/../x", f"gs://{gcs_bucket}/a/../../x"):
        with pytest.raises(PermissionDenied):
            gcs.read(uri)
        with pytest.raises(PermissionDenied):
            gcs.publish(uri, b"x")


def test_publish_exists_list_files_move_delete_tree(gcs: Storage, gcs_emulator: GcsEmulator, gcs_bucket: str) -> None:
    run = f"gs://{gcs_bucket}/out/run"
    gcs.publish(f"{run}/a.jsonl", b"A\n")
    gcs.publish(f"{run}/.staging/shard-000000.results.jsonl", b"S0\n")
    gcs.publish(f"{run}/.staging/shard-000001.results.jsonl", b"S1\n")
    gcs.publish(f"{run}/a.jsonl", b"A2\n")  # overwrites

    assert gcs.read(f"{run}/a.jsonl") == b"A2\n"
    assert gcs.exists(f"{run}/a.jsonl") and gcs.exists(f"{run}/.staging/shard-000001.results.jsonl")
    assert gcs.list_files(run) == [f"{run}/.staging", f"{run}/a.jsonl"]
    assert gcs.list_files(run + "/") == [f"{run}/.staging", f"{run}/a.jsonl"]
    assert gcs.list_files(f"gs://{gcs_bucket}/out/none") == []

    started = time.monotonic()
    gcs.move(f"{run}/.staging/shard-000000.results.jsonl", f"{run}/b.jsonl")
    assert time.monotonic() - started < 10, "a move stalled (gcsfs retrying an API the emulator lacks?)"
    assert gcs.read(f"{run}/b.jsonl") == b"S0\n"
    assert not gcs.exists(f"{run}/.staging/shard-000000.results.jsonl")

    gcs.delete_tree(f"{run}/.staging")
    gcs.delete_tree(f"{run}/.staging")  # nothing left: no error
    assert gcs.list_files(run) == [f"{run}/a.jsonl", f"{run}/b.jsonl"]
    assert objects_under(gcs_emulator, f"gs://{gcs_bucket}") == [f"{run}/a.jsonl", f"{run}/b.jsonl"]


def test_objects_written_by_another_client_are_seen(gcs: Storage, gcs_bucket: str, upload) -> None:
    folder = f"gs://{gcs_bucket}/shared"
    gcs.publish(f"{folder}/mine.txt", b"1")
    assert gcs.list_files(folder) == [f"{folder}/mine.txt"]

    upload(f"{folder}/theirs.txt", b"2")

    assert gcs.read(f"{folder}/theirs.txt") == b"2"


# ------------------------------------------------------------------------------------ a whole job on the emulator


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


def read_lines(gcs: Storage, uri: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gcs.read(uri).decode().splitlines()]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_batch_job_reads_and_writes_gcs(
    gcs_settings: Settings,
    gcs_emulator: GcsEmulator,
    gcs_bucket: str,
    upload,
    data_dir: Path,
    database: str,
    request: pytest.FixtureRequest,
) -> None:
    """Images, CSV and results all in the emulator; the job store on SQLite, then on PostgreSQL."""
    if database == "postgresql":
        gcs_settings = gcs_settings.model_copy(update={"database_url": request.getfixturevalue("fresh_postgres_url")})
    img = f"gs://{gcs_bucket}/img"
    good = {
        f"{img}/red.jpg": ("red", image_bytes("red", "JPEG")),
        f"{img}/green.png": ("green", image_bytes("green", "PNG")),
        f"{img}/blue.gif": ("blue", image_bytes("blue", "GIF")),
        f"{img}/with space/red 2.png": ("red", image_bytes("red", "PNG")),
        f"{img}/blue2.png": ("blue", image_bytes("blue", "PNG")),
        f"{img}/green3.jpeg": ("green", image_bytes("green", "JPEG")),
    }
    for uri, (_, data) in good.items():
        upload(uri, data)
    upload(f"{img}/broken.jpg", b"this is not a JPEG")
    missing, broken = f"{img}/missing.jpg", f"{img}/broken.jpg"
    order = [*list(good)[:4], missing, broken, *list(good)[4:]]  # shard 0: 4 results; shard 1: 2 errors, 2 results
    csv_a = "\n".join(f'"{u}"' if " " in u else u for u in order[:5]) + "\n"
    csv_b = "\r\n".join([*order[5:], order[0]]) + "\r\n"  # a repeat of an earlier input counts once
    inputs = [
        upload(f"gs://{gcs_bucket}/in/a.csv", csv_a.encode()),
        upload(f"gs://{gcs_bucket}/in/b.csv", csv_b.encode()),
    ]

    with TestClient(create_app(gcs_settings)) as client:
        op = batch_predict(client, inputs, f"gs://{gcs_bucket}/out")
        assert op["done"] is False
        op = wait_done(client, op["name"])

    assert op.get("done") is True and "error" not in op, op
    assert op["response"]["@type"].endswith("google.cloud.automl.v1.BatchPredictResult")
    out_dir = op["metadata"]["batchPredictDetails"]["outputInfo"]["gcsOutputDirectory"]
    assert out_dir.startswith(f"gs://{gcs_bucket}/out/prediction-colors-")
    assert sorted(f["code"] for f in op["metadata"]["partialFailures"]) == [3, 5]
    assert not (data_dir / "buckets" / gcs_bucket).exists()  # nothing went to the embedded buckets

    gcs = Storage(gcs_settings)
    names = ["errors_1.jsonl", "image_classification_1.jsonl", "image_classification_2.jsonl"]
    assert objects_under(gcs_emulator, out_dir) == [f"{out_dir}/{n}" for n in names]  # and no .staging left
    results = [line for n in names[1:] for line in read_lines(gcs, f"{out_dir}/{n}")]
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
    errors = {e["ID"]: e["error"] for e in read_lines(gcs, f"{out_dir}/errors_1.jsonl")}
    assert list(errors) == [missing, broken]
    assert errors[missing]["code"] == 5 and errors[broken]["code"] == 3
    assert all(set(e) == {"code", "message"} for e in errors.values())


def test_a_batch_job_with_a_missing_input_file_fails_with_its_name(
    gcs_settings: Settings, gcs_bucket: str, gcs_emulator: GcsEmulator
) -> None:
    missing_csv = f"gs://{gcs_bucket}/in/nowhere.csv"
    with TestClient(create_app(gcs_settings)) as client:
        op = wait_done(client, batch_predict(client, [missing_csv], f"gs://{gcs_bucket}/out")["name"])

    assert op.get("done") is True
    assert op["error"]["code"] == 3 and missing_csv in op["error"]["message"], op
    assert objects_under(gcs_emulator, f"gs://{gcs_bucket}/out") == []
