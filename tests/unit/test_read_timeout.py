"""An input whose read or decode hangs fails with DEADLINE_EXCEEDED; its job, and the jobs after it, go on."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from batchline.api.app import create_app
from batchline.config import Settings
from tests.support import output_folder, read_jsonl, submit, wait_done, write_image


@pytest.fixture
def client(data_dir: Path):
    settings = Settings(
        data_dir=data_dir, examples_dir=data_dir / "no-examples", read_timeout_seconds=1.5, decode_processes=1
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_a_hung_decoder_fails_its_inputs_and_the_job_goes_on(client: TestClient, data_dir: Path) -> None:
    bucket = data_dir / "buckets" / "b"
    names = [f"gs://b/img/{i:02d}.jpg" for i in range(40)]
    for name in names:
        write_image(bucket / name.removeprefix("gs://b/"), "red")
    (bucket / "all.csv").write_text("\n".join(names) + "\n")
    (bucket / "one.csv").write_text(names[0] + "\n")
    assert "response" in wait_done(client, submit(client, ["gs://b/one.csv"]).json()["name"])  # decoders started

    for decoder in multiprocessing.active_children():  # a decoder stuck in a read, as on a hung network mount
        os.kill(decoder.pid, signal.SIGSTOP)
    op = wait_done(client, submit(client, ["gs://b/all.csv"]).json()["name"], timeout=60)

    assert "response" in op, op  # fewer than half failed
    folder = output_folder(data_dir, op)
    errors = read_jsonl(folder, "errors_*.jsonl")
    results = read_jsonl(folder, "image_classification_*.jsonl")
    assert errors and results and len(errors) + len(results) == 40
    assert {e["error"]["code"] for e in errors} == {4}
    assert "BATCHLINE_READ_TIMEOUT_SECONDS" in errors[0]["error"]["message"]
    assert "response" in wait_done(client, submit(client, ["gs://b/all.csv"]).json()["name"], timeout=60)
