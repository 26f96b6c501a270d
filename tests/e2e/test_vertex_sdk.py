"""The unmodified google-cloud-aiplatform client over REST against a real `batchline serve --vertex-port`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform, aiplatform_v1
from google.protobuf import struct_pb2

from tests.e2e.conftest import PROJECT_LOCATION, ServerProcess, make_data_dir
from tests.e2e.helpers import bucket_path
from tests.integration.conftest import GcsEmulator, gcs_emulator  # noqa: F401 (a fixture, used by name)
from tests.support import image_bytes, link_many, write_big_png, write_image

pytestmark = pytest.mark.timeout(180)

MODEL = f"{PROJECT_LOCATION}/models/colors"
STATE = aiplatform_v1.JobState
IMAGES = {"gs://b/img/red.jpg": "red", "gs://b/img/green.png": "green", "gs://b/img/blue.jpg": "blue"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("vertex")
    data = make_data_dir(root)
    for uri, color in IMAGES.items():
        write_image(bucket_path(data, uri), color)
    bucket_path(data, "gs://b/in").mkdir()
    instances = [{"content": uri, "mimeType": "image/jpeg"} for uri in IMAGES]
    lines = [json.dumps(i) for i in instances] + ["{this is not json", '{"mimeType": "image/jpeg"}']
    bucket_path(data, "gs://b/in/images.jsonl").write_text("\n".join(lines) + "\n")
    bucket_path(data, "gs://b/in/keyed.csv").write_text(
        "id,content\n" + "".join(f"k{i},{u}\n" for i, u in enumerate(IMAGES))
    )
    source = write_big_png(root / "big.png", "red")  # a job long enough to cancel while it runs
    paths = link_many(source, bucket_path(data, "gs://b/long"), 2000)
    bucket_path(data, "gs://b/in/long.txt").write_text("\n".join(f"gs://b/long/{p.name}" for p in paths) + "\n")
    process = ServerProcess(data, {"BATCHLINE_SHARD_SIZE": "4"}, log_dir=root, vertex=True)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def jobs(server: ServerProcess) -> aiplatform_v1.JobServiceClient:
    return aiplatform_v1.JobServiceClient(
        client_options={"api_endpoint": server.vertex_url}, transport="rest", credentials=AnonymousCredentials()
    )


@pytest.fixture
def sdk(server: ServerProcess) -> ServerProcess:
    init_sdk(server)
    return server


def init_sdk(server: ServerProcess) -> None:
    """The SDK pointed at the server's Vertex port, as the README shows."""
    aiplatform.init(
        api_endpoint=server.vertex_url,
        api_transport="rest",
        credentials=AnonymousCredentials(),
        project="p",
        location="us-central1",
    )


def job_proto(uri: str, fmt: str = "jsonl", **fields: object) -> dict:
    return {
        "display_name": "e2e",
        "model": f"{MODEL}@1",
        "input_config": {"instances_format": fmt, "gcs_source": {"uris": [uri]}},
        "output_config": {"predictions_format": "jsonl", "gcs_destination": {"output_uri_prefix": "gs://b/out"}},
        **fields,
    }


def read_lines(folder: Path, pattern: str) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob(pattern)) for line in f.read_text().splitlines()]


def wait_state(jobs: aiplatform_v1.JobServiceClient, name: str, wanted: set, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.get_batch_prediction_job(name=name)
        if job.state in wanted:
            return job
        time.sleep(0.2)
    raise AssertionError(f"{name} still {job.state.name} after {timeout}s")


# ------------------------------------------------------------------------------- JobServiceClient, over REST


def test_job_service_client_create_get_list_cancel_delete(jobs: aiplatform_v1.JobServiceClient) -> None:
    parent = PROJECT_LOCATION
    created = jobs.create_batch_prediction_job(
        parent=parent,
        batch_prediction_job=job_proto("gs://b/in/long.txt", "file-list", labels={"team": "cancel-me"}),
    )

    assert created.name.startswith(f"{parent}/batchPredictionJobs/")
    assert created.state == STATE.JOB_STATE_PENDING
    assert created.model == f"{MODEL}@1" and created.model_version_id == "1"
    got = jobs.get_batch_prediction_job(name=created.name)
    assert (got.display_name, dict(got.labels)) == ("e2e", {"team": "cancel-me"})
    assert list(got.input_config.gcs_source.uris) == ["gs://b/in/long.txt"]
    listed = jobs.list_batch_prediction_jobs(
        request={"parent": parent, "filter": 'display_name="e2e" AND labels.team="cancel-me"'}
    )
    assert [j.name for j in listed] == [created.name]

    jobs.cancel_batch_prediction_job(name=created.name)
    cancelled = wait_state(jobs, created.name, {STATE.JOB_STATE_CANCELLED})
    assert cancelled.error.code == 1 and cancelled.end_time
    with pytest.raises(exceptions.BadRequest) as refused:  # HTTP 400, FAILED_PRECONDITION
        jobs.cancel_batch_prediction_job(name=created.name)
    assert "already ended" in refused.value.message

    operation = jobs.delete_batch_prediction_job(name=created.name)
    operation.result(timeout=30)
    polled = jobs.get_operation(request={"name": operation.operation.name})  # GET /ui/{name}
    assert polled.done and polled.name == operation.operation.name
    with pytest.raises(exceptions.NotFound):
        jobs.get_batch_prediction_job(name=created.name)


def test_delete_of_a_job_not_ended_says_cancel_first(jobs: aiplatform_v1.JobServiceClient) -> None:
    created = jobs.create_batch_prediction_job(
        parent=PROJECT_LOCATION, batch_prediction_job=job_proto("gs://b/in/long.txt", "file-list")
    )

    with pytest.raises(exceptions.BadRequest) as refused:
        jobs.delete_batch_prediction_job(name=created.name)

    assert "cancel it first" in refused.value.message
    jobs.cancel_batch_prediction_job(name=created.name)
    wait_state(jobs, created.name, {STATE.JOB_STATE_CANCELLED})
    jobs.delete_batch_prediction_job(name=created.name).result(timeout=30)


def test_bad_requests_say_what_to_fix(jobs: aiplatform_v1.JobServiceClient) -> None:
    def create(**fields: object) -> None:
        jobs.create_batch_prediction_job(parent=PROJECT_LOCATION, batch_prediction_job=job_proto(**fields))

    with pytest.raises(exceptions.BadRequest, match="instancesFormat 'tf-record'"):
        create(uri="gs://b/in/images.jsonl", fmt="tf-record")
    wrong_type = struct_pb2.Value(struct_value={"confidenceThreshold": "high"})
    with pytest.raises(exceptions.BadRequest, match="confidenceThreshold must be a number"):
        create(uri="gs://b/in/images.jsonl", model_parameters=wrong_type)
    with pytest.raises(exceptions.NotFound, match="no version '3'"):
        create(uri="gs://b/in/images.jsonl", model=f"{MODEL}@3")


# ------------------------------------------------------------------------------ the aiplatform SDK (high level)


def test_sdk_model_versions_batch_predict_list_and_cancel(sdk: ServerProcess) -> None:
    model = aiplatform.Model("colors")

    assert model.resource_name == MODEL and model.version_id == "1" and model.display_name == "colors"
    assert model.versioned_resource_name == f"{MODEL}@1"
    assert aiplatform.Model(f"{MODEL}@default").version_id == "1"
    with pytest.raises(exceptions.NotFound):
        aiplatform.Model(f"{MODEL}@2")

    job = model.batch_predict(
        job_display_name="sdk-long",
        gcs_source="gs://b/in/long.txt",
        instances_format="file-list",
        gcs_destination_prefix="gs://b/out",
        model_parameters={"confidenceThreshold": 0.1},
        labels={"team": "sdk"},
        sync=False,
    )
    job.wait_for_resource_creation()
    listed = aiplatform.BatchPredictionJob.list(filter='labels.team="sdk" AND display_name="sdk-long"')
    assert [j.resource_name for j in listed] == [job.resource_name]
    assert aiplatform.BatchPredictionJob.list(filter='labels.team="sdk" AND state=JOB_STATE_SUCCEEDED') == []

    job.cancel()

    deadline = time.monotonic() + 60
    while aiplatform.BatchPredictionJob(job.resource_name).state != STATE.JOB_STATE_CANCELLED:
        assert time.monotonic() < deadline, "the job was not cancelled"
        time.sleep(0.2)
    cancelled = aiplatform.BatchPredictionJob.list(filter='labels.team="sdk" AND state=JOB_STATE_CANCELLED')
    assert [j.resource_name for j in cancelled] == [job.resource_name]
    # A fresh handle: `job`'s own background wait (sync=False) ends in the RuntimeError of a cancelled job.
    aiplatform.BatchPredictionJob(job.resource_name).delete()


# --------------------------------------------------------------------------------------------- jobs that run


def test_batch_predict_sync_writes_predictions_and_errors(sdk: ServerProcess) -> None:
    job = aiplatform.Model("colors").batch_predict(
        job_display_name="sdk-sync",
        gcs_source="gs://b/in/images.jsonl",
        gcs_destination_prefix="gs://b/out",
        model_parameters={"confidenceThreshold": 0.5, "maxPredictions": 1},
        sync=True,
    )

    assert job.state == STATE.JOB_STATE_SUCCEEDED  # two bad instances do not fail the job
    stats = job.completion_stats
    assert (stats.successful_count, stats.failed_count, stats.incomplete_count) == (3, 2, 0)
    assert len(job.partial_failures) == 2
    out = bucket_path(sdk.data_dir, job.output_info.gcs_output_directory)
    assert out.name.startswith("prediction-colors-")
    names = sorted(p.name for p in out.iterdir())  # 4 inputs a shard here: errors in shards 1 and 2
    assert names == ["errors_00001.jsonl", "errors_00002.jsonl", "predictions_00001.jsonl"]
    predictions = read_lines(out, "predictions_*.jsonl")
    assert {p["instance"]["content"]: p["prediction"]["displayNames"] for p in predictions} == {
        uri: [color] for uri, color in IMAGES.items()
    }
    errors = read_lines(out, "errors_*.jsonl")
    assert [e["instance"] for e in errors] == ["{this is not json", {"mimeType": "image/jpeg"}]
    assert all(e["error"]["code"] == 3 for e in errors)


def test_csv_with_a_key_field_writes_keys(sdk: ServerProcess, jobs: aiplatform_v1.JobServiceClient) -> None:
    created = jobs.create_batch_prediction_job(
        parent=PROJECT_LOCATION,
        batch_prediction_job=job_proto("gs://b/in/keyed.csv", "csv", instance_config={"key_field": "id"}),
    )
    job = aiplatform.BatchPredictionJob(created.name)
    job.wait_for_completion()

    out = bucket_path(sdk.data_dir, job.output_info.gcs_output_directory)
    lines = [json.loads(line) for line in (out / "predictions_00001.jsonl").read_text().splitlines()]
    assert [(line["key"], line["prediction"]["displayNames"][0]) for line in lines] == [
        ("k0", "red"),
        ("k1", "green"),
        ("k2", "blue"),
    ]
    assert all("instance" not in line for line in lines)


def test_iter_outputs_through_a_gcs_emulator(
    gcs_emulator: GcsEmulator,  # noqa: F811 (the fixture imported above)
    tmp_path,
) -> None:
    """Input and output in GCS-protocol storage, read and written by batchline through gcsfs; the SDK reads the
    results with google-cloud-storage."""
    bucket = gcs_emulator.create_bucket("vertex-e2e")
    fs = gcs_emulator.make_fs()
    for uri, color in IMAGES.items():
        fs.pipe_file(uri.replace("gs://b/", f"{bucket}/"), image_bytes(color, "PNG" if uri.endswith("png") else "JPEG"))
    lines = [json.dumps({"content": uri.replace("gs://b/", f"gs://{bucket}/")}) for uri in IMAGES]
    fs.pipe_file(f"{bucket}/in/batch-1.jsonl", ("\n".join(lines[:2]) + "\n").encode())
    fs.pipe_file(f"{bucket}/in/batch-2.jsonl", (lines[2] + "\n").encode())
    env = {"BATCHLINE_STORAGE": "gcs", "STORAGE_EMULATOR_HOST": gcs_emulator.url}
    server = ServerProcess(make_data_dir(tmp_path), env, log_dir=tmp_path, vertex=True)
    server.start()
    try:
        init_sdk(server)
        job = aiplatform.Model("colors").batch_predict(
            job_display_name="gcs",
            gcs_source=f"gs://{bucket}/in/batch-*.jsonl",
            gcs_destination_prefix=f"gs://{bucket}/out",
            sync=True,
        )

        blobs = list(job.iter_outputs())
        names = sorted(b.name.rsplit("/", 1)[-1] for b in blobs)
        assert names == ["predictions_00001.jsonl"]
        text = next(b for b in blobs if b.name.endswith("predictions_00001.jsonl")).download_as_text()
        found = {json.loads(line)["instance"]["content"]: json.loads(line)["prediction"] for line in text.splitlines()}
        assert {uri: p["displayNames"][0] for uri, p in found.items()} == {
            uri.replace("gs://b/", f"gs://{bucket}/"): color for uri, color in IMAGES.items()
        }
    finally:
        server.stop()
