"""Durability of a Vertex AI job with real processes: SIGKILL the server mid-job; the next start finishes it, and
the job resource and predictions_*.jsonl / errors_*.jsonl hold every instance exactly once."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import PROJECT_LOCATION, ServerProcess, make_data_dir
from tests.e2e.helpers import bucket_path
from tests.e2e.test_resume import BROKEN, SHARD_SIZE, _inputs

NOT_JSON = "{this line is not json"
NO_CONTENT = {"mimeType": "image/png"}


def _instances(data: Path) -> tuple[list[str], dict[str, str | None]]:
    """Write gs://b/instances.jsonl from the AutoML resume test's images (broken ones included), with two
    malformed instances, one in the first shard and one in the last; (its lines, content URI -> label or None)."""
    expected = _inputs(data)
    lines = [json.dumps({"content": uri, "mimeType": "image/png"}) for uri in expected]
    lines.insert(3, NOT_JSON)
    lines.insert(len(lines) - 2, json.dumps(NO_CONTENT))
    bucket_path(data, "gs://b/instances.jsonl").write_text("\n".join(lines) + "\n")
    return lines, expected


def _job(server: ServerProcess, name: str) -> dict:
    reply = httpx.get(f"{server.vertex_url}/v1/{name}", timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _done_count(job: dict) -> int:
    stats = job["completionStats"]
    return int(stats["successfulCount"]) + int(stats["failedCount"])


def _wait_for_progress(server: ServerProcess, name: str, done: int) -> dict:
    deadline = time.monotonic() + 90
    while (job := _job(server, name))["state"] != "JOB_STATE_SUCCEEDED":
        if job["state"] == "JOB_STATE_RUNNING" and _done_count(job) >= done:
            return job
        assert time.monotonic() < deadline, f"no progress: {job}"
        time.sleep(0.1)
    raise AssertionError(f"the job ended before it could be interrupted: {job}")


def _wait_until_done(server: ServerProcess, name: str) -> dict:
    deadline = time.monotonic() + 150
    while (job := _job(server, name))["state"] not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"):
        assert time.monotonic() < deadline, f"the job did not finish after the restart: {job}"
        time.sleep(0.5)
    return job


def _job_row(data: Path, job_id: str) -> tuple[str, int]:
    """(state, committed shards) straight from the job store, read while no server runs."""
    with closing(sqlite3.connect(data / "batchline.db")) as db:
        state = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
        shards = db.execute("SELECT COUNT(*) FROM job_shards WHERE job_id = ?", (job_id,)).fetchone()[0]
    return state, shards


def _read(out: Path, stem: str) -> list[dict]:
    files = sorted(out.glob(f"{stem}_*.jsonl"))
    assert [f.name for f in files] == [f"{stem}_{n:05d}.jsonl" for n in range(1, len(files) + 1)]  # no gaps
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


@pytest.mark.timeout(240)
def test_a_killed_server_resumes_a_vertex_job_and_writes_every_instance_once(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path)
    lines, expected = _instances(data)
    total_shards = -(-len(lines) // SHARD_SIZE)
    env = {"BATCHLINE_SHARD_SIZE": str(SHARD_SIZE), "BATCHLINE_LEASE_SECONDS": "2"}
    server = ServerProcess(data, env, log_dir=tmp_path, vertex=True)
    try:
        server.start()
        reply = httpx.post(
            f"{server.vertex_url}/v1/{PROJECT_LOCATION}/batchPredictionJobs",
            json={
                "displayName": "resume",
                "model": f"{PROJECT_LOCATION}/models/colors",
                "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://b/instances.jsonl"]}},
                "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": "gs://b/out"}},
                "modelParameters": {"confidenceThreshold": 0.2},
            },
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        name = reply.json()["name"]
        running = _wait_for_progress(server, name, len(lines) // 10)
        server.kill()
        assert int(running["completionStats"]["incompleteCount"]) == len(lines) - _done_count(running)
        assert running["outputInfo"]["gcsOutputDirectory"].startswith("gs://b/out/prediction-colors-")

        state, committed = _job_row(data, name.rsplit("/", 1)[1])
        assert state == "RUNNING", state
        assert 0 < committed < total_shards, f"{committed} of {total_shards} shards committed at the kill"

        server.start()
        job = _wait_until_done(server, name)
    finally:
        server.stop()

    assert job["state"] == "JOB_STATE_SUCCEEDED" and "error" not in job, job.get("error")
    assert job["startTime"] == running["startTime"]  # a takeover keeps the first start
    failed = len(BROKEN) + 2
    assert job["completionStats"] == {
        "successfulCount": str(len(lines) - failed),
        "failedCount": str(failed),
        "incompleteCount": "0",
    }
    # Each failure is listed once, even those of the shards the first server committed before it died.
    assert len(job["partialFailures"]) == failed
    assert all(re.search(r"is not JSON|no \"content\"|gs://b/broken/", f["message"]) for f in job["partialFailures"])

    out = bucket_path(data, job["outputInfo"]["gcsOutputDirectory"])
    assert out.name.startswith("prediction-colors-")
    assert sorted({p.name.split("_")[0] for p in out.iterdir()}) == ["errors", "predictions"]  # no .staging
    predictions, errors = _read(out, "predictions"), _read(out, "errors")
    found = {p["instance"]["content"]: p["prediction"]["displayNames"][0] for p in predictions}
    assert len(found) == len(predictions) == len(lines) - failed
    assert found == {uri: label for uri, label in expected.items() if label is not None}
    failed_instances = [e["instance"] for e in errors]  # as given: a dict, or the text of a line that is not JSON
    assert len(failed_instances) == failed
    codes = {
        i["content"]: e["error"]["code"]
        for i, e in zip(failed_instances, errors, strict=True)
        if isinstance(i, dict) and "content" in i
    }
    assert codes == BROKEN
    assert NOT_JSON in failed_instances and NO_CONTENT in failed_instances
