"""The Vertex AI v1 surface in process: batchPredictionJobs, models and operations over the shared services.

The worker does not run here: jobs stay PENDING unless a test moves them through the store as a worker would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from batchline.api.app import create_app
from batchline.config import Settings
from batchline.domain.jobs import JobKind, JobState, ShardRecord
from batchline.services import Services
from tests.support import assert_error, submit

BASE = "/v1/projects/p/locations/us-central1"
MODEL = f"{BASE[4:]}/models/colors"


@pytest.fixture
def automl(settings: Settings, services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(settings, services, run_worker=False, own_services=False)) as client:
        yield client


@pytest.fixture
def inputs(data_dir: Path) -> str:
    (data_dir / "buckets" / "b" / "in.jsonl").write_text('{"content": "gs://b/red.jpg", "mimeType": "image/jpeg"}\n')
    return "gs://b/in.jsonl"


def job_body(uri: str = "gs://b/in.jsonl", **fields: object) -> dict:
    body = {
        "displayName": "nightly",
        "model": f"{MODEL}@1",
        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [uri]}},
        "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": "gs://b/out"}},
    }
    return {**body, **fields}


def create(vertex: TestClient, **fields: object) -> dict:
    reply = vertex.post(f"{BASE}/batchPredictionJobs", json=job_body(**fields))
    assert reply.status_code == 200, reply.text
    return reply.json()


def job_id(job: dict) -> str:
    return job["name"].rsplit("/", 1)[-1]


def run_to_end(services: Services, job: dict, state: JobState, succeeded: int = 2, failed: int = 1) -> None:
    """What a worker does to a job: claim it, commit a shard, finish it."""
    claimed = services.store.claim("w", 30, kinds=(JobKind.VERTEX_BATCH_PREDICTION,))
    assert claimed is not None and claimed.id == job_id(job)
    services.store.update(claimed.id, total=succeeded + failed, output_dir="gs://b/out/prediction-colors-x")
    failures = [{"code": 5, "message": '{"instance":{"content":"gs://b/gone.jpg"}}: gs://b/gone.jpg does not exist'}]
    services.store.commit_shard(claimed.id, "w", ShardRecord(0, succeeded, failed), failures[:failed])
    error = {"code": 13, "message": "boom"} if state == JobState.FAILED else None
    assert services.store.finish(claimed.id, "w", state, error=error, failed=failed, processed=succeeded + failed)


# ---------------------------------------------------------------------------------------------------- create


def test_create_returns_the_pending_job_with_everything_asked(vertex: TestClient, inputs: str) -> None:
    job = create(
        vertex,
        labels={"team": "a"},
        modelParameters={"confidenceThreshold": 0.2, "maxPredictions": 2},
        instanceConfig={"keyField": "id"},
        manualBatchTuningParameters={"batchSize": 16},
    )

    assert job["name"].startswith(f"{BASE[4:]}/batchPredictionJobs/")
    assert job["state"] == "JOB_STATE_PENDING"
    assert job["displayName"] == "nightly"
    assert job["model"] == f"{MODEL}@1" and job["modelVersionId"] == "1"
    assert job["inputConfig"] == {"instancesFormat": "jsonl", "gcsSource": {"uris": [inputs]}}
    assert job["outputConfig"]["gcsDestination"] == {"outputUriPrefix": "gs://b/out"}
    assert job["modelParameters"] == {"confidenceThreshold": 0.2, "maxPredictions": 2}
    assert job["instanceConfig"] == {"keyField": "id"}
    assert job["manualBatchTuningParameters"] == {"batchSize": 16}
    assert job["labels"] == {"team": "a"}
    assert job["completionStats"] == {"successfulCount": "0", "failedCount": "0", "incompleteCount": "0"}
    assert job["createTime"].endswith("Z") and job["updateTime"].endswith("Z")
    assert not {"startTime", "endTime", "error", "outputInfo"} & set(job)
    assert vertex.get(f"/v1/{job['name']}").json() == job


def test_create_takes_snake_case_and_a_bare_model_id(vertex: TestClient, inputs: str) -> None:
    body = {
        "display_name": "snake",
        "model": "colors",
        "input_config": {"instances_format": "file-list", "gcs_source": {"uris": [inputs]}},
        "output_config": {"predictions_format": "jsonl", "gcs_destination": {"output_uri_prefix": "gs://b/out"}},
    }
    reply = vertex.post(f"{BASE}/batchPredictionJobs", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["inputConfig"]["instancesFormat"] == "file-list"


@pytest.mark.parametrize(
    ("fields", "http", "status", "words"),
    [
        ({"inputConfig": {"instancesFormat": "tf-record", "gcsSource": {"uris": ["gs://b/x"]}}}, 400,
         "INVALID_ARGUMENT", ["instancesFormat", "'tf-record'", "jsonl, csv, file-list"]),
        ({"outputConfig": {"predictionsFormat": "csv", "gcsDestination": {"outputUriPrefix": "gs://b/o"}}}, 400,
         "INVALID_ARGUMENT", ["predictionsFormat", "'csv'", "jsonl"]),
        ({"outputConfig": {"predictionsFormat": "bigquery", "bigqueryDestination": {"outputUri": "bq://p"}}}, 400,
         "INVALID_ARGUMENT", ["predictionsFormat"]),
        ({"modelParameters": {"confidenceThreshold": "0.5"}}, 400, "INVALID_ARGUMENT",
         ["confidenceThreshold", "number between 0 and 1", "'0.5'"]),
        ({"modelParameters": {"maxPredictions": 2.5}}, 400, "INVALID_ARGUMENT", ["maxPredictions", "whole number"]),
        ({"modelParameters": {"confidenceThreshold": 1.5}}, 400, "INVALID_ARGUMENT", ["between 0 and 1"]),
        ({"modelParameters": {"score_threshold": 0.5}}, 400, "INVALID_ARGUMENT",
         ["score_threshold", "confidenceThreshold, maxPredictions"]),
        ({"modelParameters": [0.5]}, 400, "INVALID_ARGUMENT", ["modelParameters must be an object"]),
        ({"model": f"{MODEL}@7"}, 404, "NOT_FOUND", ["no version '7'", "1 (alias default)"]),
        ({"model": f"{BASE[4:]}/models/nope"}, 404, "NOT_FOUND", ["'nope'"]),
        ({"instanceConfig": {"includedFields": ["a"], "excludedFields": ["b"]}}, 400, "INVALID_ARGUMENT",
         ["includedFields or excludedFields"]),
        ({"instanceConfig": {"instanceType": "tensor"}}, 400, "INVALID_ARGUMENT", ["instanceType", "object or array"]),
        ({"outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": "gs://nobucket/o"}}},
         404, "NOT_FOUND", ["gs://nobucket"]),
        ({"displayName": ""}, 400, "INVALID_ARGUMENT", ["displayName"]),
        ({"state": "JOB_STATE_SUCCEEDED"}, 400, "INVALID_ARGUMENT", ["state"]),
        ({"generateExplanation": True}, 400, "INVALID_ARGUMENT", ["generateExplanation"]),
        ({"manualBatchTuningParameters": {"batchSize": 100_000}}, 400, "INVALID_ARGUMENT",
         ["batchSize", "less than or equal to 1024"]),
    ],
)  # fmt: skip
def test_create_refuses_bad_input_saying_what_to_fix(
    vertex: TestClient, inputs: str, fields: dict, http: int, status: str, words: list[str]
) -> None:
    reply = vertex.post(f"{BASE}/batchPredictionJobs", json=job_body(**fields))

    assert_error(reply, http, status, *words)
    assert vertex.get(f"{BASE}/batchPredictionJobs").json()["batchPredictionJobs"] == []


def test_create_accepts_machine_fields_it_has_no_use_for(vertex: TestClient, inputs: str) -> None:
    job = create(vertex, dedicatedResources={"machineSpec": {"machineType": "n1-standard-4"}}, serviceAccount="sa")
    assert job["state"] == "JOB_STATE_PENDING"


# ----------------------------------------------------------------------------------- one store, two surfaces


def test_each_surface_sees_only_its_own_jobs(vertex: TestClient, automl: TestClient, inputs: str, data_dir) -> None:
    (data_dir / "buckets" / "b" / "in.csv").write_text("gs://b/red.jpg\n")
    vertex_job = create(vertex)
    operation = submit(automl, ["gs://b/in.csv"]).json()

    assert [o["name"] for o in automl.get(f"{BASE}/operations").json()["operations"]] == [operation["name"]]
    assert_error(automl.get(f"{BASE}/operations/{job_id(vertex_job)}"), 404, "NOT_FOUND")
    assert_error(automl.post(f"{BASE}/operations/{job_id(vertex_job)}:cancel"), 404, "NOT_FOUND")
    listed = vertex.get(f"{BASE}/batchPredictionJobs").json()["batchPredictionJobs"]
    assert [j["name"] for j in listed] == [vertex_job["name"]]
    automl_id = operation["name"].rsplit("/", 1)[-1]
    assert_error(vertex.get(f"{BASE}/batchPredictionJobs/{automl_id}"), 404, "NOT_FOUND")
    assert_error(vertex.delete(f"{BASE}/batchPredictionJobs/{automl_id}"), 404, "NOT_FOUND")


def test_a_job_of_another_location_is_not_found(vertex: TestClient, inputs: str) -> None:
    job = create(vertex)
    assert_error(
        vertex.get(f"/v1/projects/p/locations/europe-west4/batchPredictionJobs/{job_id(job)}"), 404, "NOT_FOUND"
    )


# ---------------------------------------------------------------------------------------------- the view


def test_a_finished_job_shows_stats_times_output_and_failures(
    vertex: TestClient, services: Services, inputs: str
) -> None:
    job = create(vertex)
    run_to_end(services, job, JobState.SUCCEEDED, succeeded=2, failed=1)

    got = vertex.get(f"/v1/{job['name']}").json()

    assert got["state"] == "JOB_STATE_SUCCEEDED"
    assert got["completionStats"] == {"successfulCount": "2", "failedCount": "1", "incompleteCount": "0"}
    assert got["outputInfo"] == {"gcsOutputDirectory": "gs://b/out/prediction-colors-x"}
    assert got["partialFailures"] == [
        {"code": 5, "message": '{"instance":{"content":"gs://b/gone.jpg"}}: gs://b/gone.jpg does not exist'}
    ]
    assert "error" not in got
    assert got["createTime"] <= got["startTime"] <= got["endTime"] <= got["updateTime"]
    assert got["resourcesConsumed"]["replicaHours"] >= 0


def test_a_failed_job_shows_its_error(vertex: TestClient, services: Services, inputs: str) -> None:
    job = create(vertex)
    run_to_end(services, job, JobState.FAILED)

    got = vertex.get(f"/v1/{job['name']}").json()

    assert got["state"] == "JOB_STATE_FAILED"
    assert got["error"] == {"code": 13, "message": "boom"}


def test_a_running_job_counts_what_is_not_done_yet_as_incomplete(
    vertex: TestClient, services: Services, inputs: str
) -> None:
    job = create(vertex)
    services.store.claim("w", 30, kinds=(JobKind.VERTEX_BATCH_PREDICTION,))
    services.store.update(job_id(job), total=10)
    services.store.commit_shard(job_id(job), "w", ShardRecord(0, 4, 0), [])

    got = vertex.get(f"/v1/{job['name']}").json()

    assert got["state"] == "JOB_STATE_RUNNING" and "startTime" in got and "endTime" not in got
    assert got["completionStats"] == {"successfulCount": "4", "failedCount": "0", "incompleteCount": "6"}


# ---------------------------------------------------------------------------------------------------- list


def test_list_filters_as_the_sdk_writes_them_and_pages(vertex: TestClient, services: Services, inputs: str) -> None:
    first = create(vertex, displayName="a-job", labels={"team": "a", "env": "prod"})
    second = create(vertex, displayName="b-job", labels={"team": "b"})
    third = create(vertex, displayName="a-job", labels={"team": "a"})
    run_to_end(services, first, JobState.SUCCEEDED)

    def names(filter_text: str = "", **query: str) -> list[str]:
        reply = vertex.get(f"{BASE}/batchPredictionJobs", params={"filter": filter_text, **query})
        assert reply.status_code == 200, reply.text
        return [j["displayName"] + ":" + j["labels"]["team"] for j in reply.json()["batchPredictionJobs"]]

    assert names() == ["a-job:a", "b-job:b", "a-job:a"]  # newest first
    assert names('display_name="a-job"') == ["a-job:a", "a-job:a"]
    assert names("displayName = a-job AND labels.team=a") == ["a-job:a", "a-job:a"]
    assert names('labels.team="b"') == ["b-job:b"]
    assert names('labels.team!="a"') == ["b-job:b"]
    assert names("labels.env:*") == ["a-job:a"] == names("labels:env")
    assert names("state=JOB_STATE_SUCCEEDED") == ["a-job:a"]
    assert names('state="JOB_STATE_PENDING"') == ["a-job:a", "b-job:b"] == names("state=JOB_STATE_QUEUED")
    assert names("state!=JOB_STATE_PENDING") == ["a-job:a"]
    assert names("state=JOB_STATE_PAUSED") == []
    assert names(f'create_time>="{second["createTime"]}"') == ["a-job:a", "b-job:b"]
    assert names(f'create_time="{second["createTime"]}"') == ["b-job:b"]
    assert names(f'create_time>"{second["createTime"]}"') == ["a-job:a"]
    assert names(f'create_time<"{second["createTime"]}" AND state=JOB_STATE_SUCCEEDED') == ["a-job:a"]
    assert names('create_time>"2999-01-01T00:00:00Z"') == []

    page = vertex.get(f"{BASE}/batchPredictionJobs", params={"pageSize": 2}).json()
    assert [job_id(j) for j in page["batchPredictionJobs"]] == [job_id(third), job_id(second)]
    rest = vertex.get(f"{BASE}/batchPredictionJobs", params={"pageSize": 2, "pageToken": page["nextPageToken"]})
    assert [job_id(j) for j in rest.json()["batchPredictionJobs"]] == [job_id(first)]
    assert rest.json()["nextPageToken"] == ""


@pytest.mark.parametrize(
    ("filter_text", "words"),
    [
        ("owner=me", ["'owner'"]),
        ("state=DONE", ["unknown state 'DONE'", "JOB_STATE_SUCCEEDED"]),
        ('display_name="a" OR display_name="b"', ["unsupported filter", "AND"]),
        ("create_time>yesterday", ["RFC 3339"]),
        ("state>JOB_STATE_RUNNING", ["state takes = !="]),
    ],
)
def test_list_refuses_a_filter_it_does_not_understand(vertex: TestClient, filter_text: str, words: list[str]) -> None:
    reply = vertex.get(f"{BASE}/batchPredictionJobs", params={"filter": filter_text})
    assert_error(reply, 400, "INVALID_ARGUMENT", *words)


# ------------------------------------------------------------------------------------------- cancel, delete


def test_cancel_of_a_pending_job_ends_it_cancelled(vertex: TestClient, inputs: str) -> None:
    job = create(vertex)

    reply = vertex.post(f"/v1/{job['name']}:cancel", json={})

    assert reply.status_code == 200 and reply.json() == {}
    got = vertex.get(f"/v1/{job['name']}").json()
    assert got["state"] == "JOB_STATE_CANCELLED" and got["error"]["code"] == 1 and "endTime" in got


def test_cancel_of_a_running_job_makes_it_cancelling(vertex: TestClient, services: Services, inputs: str) -> None:
    job = create(vertex)
    services.store.claim("w", 30, kinds=(JobKind.VERTEX_BATCH_PREDICTION,))

    assert vertex.post(f"/v1/{job['name']}:cancel", json={}).status_code == 200

    assert vertex.get(f"/v1/{job['name']}").json()["state"] == "JOB_STATE_CANCELLING"


def test_cancel_of_a_finished_job_is_failed_precondition(vertex: TestClient, services: Services, inputs: str) -> None:
    job = create(vertex)
    run_to_end(services, job, JobState.SUCCEEDED)

    reply = vertex.post(f"/v1/{job['name']}:cancel", json={})

    assert_error(reply, 400, "FAILED_PRECONDITION", "JOB_STATE_SUCCEEDED", "already ended")


def test_delete_of_an_unfinished_job_says_cancel_first(vertex: TestClient, services: Services, inputs: str) -> None:
    pending = create(vertex)
    assert_error(vertex.delete(f"/v1/{pending['name']}"), 400, "FAILED_PRECONDITION", "cancel it first")
    services.store.claim("w", 30, kinds=(JobKind.VERTEX_BATCH_PREDICTION,))
    assert_error(vertex.delete(f"/v1/{pending['name']}"), 400, "FAILED_PRECONDITION", "JOB_STATE_RUNNING", "cancel")
    assert vertex.get(f"/v1/{pending['name']}").status_code == 200


def test_delete_returns_a_done_operation_pollable_under_ui_and_v1(
    vertex: TestClient, automl: TestClient, inputs: str
) -> None:
    job = create(vertex)
    vertex.post(f"/v1/{job['name']}:cancel", json={})

    operation = vertex.delete(f"/v1/{job['name']}").json()

    assert operation["name"].startswith(f"{BASE[4:]}/operations/")
    assert operation["done"] is True
    assert operation["response"] == {"@type": "type.googleapis.com/google.protobuf.Empty"}
    assert operation["metadata"]["@type"].endswith("google.cloud.aiplatform.v1.DeleteOperationMetadata")
    assert vertex.get(f"/ui/{operation['name']}").json() == operation
    assert vertex.get(f"/v1/{operation['name']}").json() == operation
    assert_error(vertex.get(f"/v1/{job['name']}"), 404, "NOT_FOUND")
    assert_error(automl.get(f"/v1/{operation['name']}"), 404, "NOT_FOUND")  # not an AutoML operation
    assert automl.get(f"{BASE}/operations").json()["operations"] == []


def test_an_unknown_operation_or_verb_is_not_found(vertex: TestClient, inputs: str) -> None:
    job = create(vertex)
    assert_error(vertex.get(f"/ui{BASE[3:]}/operations/nope"), 404, "NOT_FOUND")
    assert_error(vertex.get(f"/ui{BASE[3:]}/operations/{job_id(job)}"), 404, "NOT_FOUND")  # a job is no operation
    assert_error(vertex.post(f"/v1/{job['name']}:pause", json={}), 404, "NOT_FOUND", ":cancel")


# ---------------------------------------------------------------------------------------------------- models


def test_models_list_and_get_with_versions(vertex: TestClient) -> None:
    listed = vertex.get(f"{BASE}/models").json()

    assert set(listed) == {"models", "nextPageToken"}
    (model,) = listed["models"]
    assert model["name"] == MODEL and model["displayName"] == "colors"
    assert model["versionId"] == "1" and model["versionAliases"] == ["default"]
    assert model["createTime"].endswith("Z") and "jsonl" in model["supportedInputStorageFormats"]
    assert vertex.get(f"{BASE}/models/colors").json() == model
    assert vertex.get(f"{BASE}/models/colors@1").json() == model
    assert vertex.get(f"{BASE}/models/colors@default").json() == model
    assert_error(vertex.get(f"{BASE}/models/colors@2"), 404, "NOT_FOUND", "no version '2'")
    assert_error(vertex.get(f"{BASE}/models/nope"), 404, "NOT_FOUND")
