"""`batchline jobs ...` as a user runs it, against a real `batchline serve --vertex-port`."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import REPO, ServerProcess, make_data_dir, server_env
from tests.e2e.helpers import bucket_path
from tests.support import link_many, write_big_png, write_image

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("vertex-cli")
    data = make_data_dir(root)
    write_image(bucket_path(data, "gs://b/img/red.jpg"), "red")
    bucket_path(data, "gs://b/in").mkdir()
    bucket_path(data, "gs://b/in/one.jsonl").write_text('{"content": "gs://b/img/red.jpg"}\n')
    paths = link_many(write_big_png(root / "big.png", "red"), bucket_path(data, "gs://b/long"), 2000)
    bucket_path(data, "gs://b/in/long.txt").write_text("\n".join(f"gs://b/long/{p.name}" for p in paths) + "\n")
    process = ServerProcess(data, log_dir=root, vertex=True)
    process.start()
    yield process
    process.stop()


def jobs(server: ServerProcess, command: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "batchline", "jobs", *shlex.split(command), "--server", server.vertex_url]
    return subprocess.run(argv, cwd=REPO, env=server_env(server.data_dir), capture_output=True, text=True, timeout=120)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def test_create_get_list_cancel_delete(server: ServerProcess) -> None:
    created = ok(
        jobs(
            server,
            "create --model colors --input gs://b/in/long.txt --format file-list --output gs://b/out "
            "--display-name cli-job --label team=cli --param confidenceThreshold=0.3",
        )
    )
    name = created.strip().splitlines()[-1]
    assert name.startswith("projects/local/locations/us-central1/batchPredictionJobs/")
    job_id = name.rsplit("/", 1)[-1]

    shown = json.loads(ok(jobs(server, f"get {job_id}")))
    assert shown["displayName"] == "cli-job" and shown["modelParameters"] == {"confidenceThreshold": 0.3}
    listed = ok(jobs(server, "list --filter 'labels.team=\"cli\"'"))
    assert job_id in listed and "cli-job" in listed
    assert job_id not in ok(jobs(server, "list --filter state=JOB_STATE_SUCCEEDED"))
    refused = jobs(server, f"delete {job_id}")
    assert refused.returncode != 0 and "cancel it first" in refused.stderr

    ok(jobs(server, f"cancel {name}"))
    deadline = time.monotonic() + 60
    while json.loads(ok(jobs(server, f"get {job_id}")))["state"] != "JOB_STATE_CANCELLED":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    again = jobs(server, f"cancel {job_id}")
    assert again.returncode != 0 and "FAILED_PRECONDITION" in again.stderr
    ok(jobs(server, f"delete {job_id}"))
    gone = jobs(server, f"get {job_id}")
    assert gone.returncode != 0 and "NOT_FOUND" in gone.stderr


def test_create_refuses_an_unknown_model_version(server: ServerProcess) -> None:
    result = jobs(server, "create --model colors@9 --input gs://b/in/one.jsonl --output gs://b/out")
    assert result.returncode != 0 and "no version '9'" in result.stderr


def test_create_wait_shows_progress_and_the_output(server: ServerProcess) -> None:
    result = jobs(server, "create --project p --model colors --input gs://b/in/one.jsonl --output gs://b/out --wait")

    out = ok(result)
    assert "succeeded: 1, failed: 0" in out and "output: gs://b/out/prediction-colors-" in out
    assert "JOB_STATE_SUCCEEDED" in result.stderr  # the progress bar's last description
