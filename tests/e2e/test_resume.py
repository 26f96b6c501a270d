"""Durability with real processes: SIGKILL or SIGTERM the server in the middle of a batch job; the next finishes it."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import PROJECT_LOCATION, make_data_dir
from tests.e2e.helpers import bucket_path, read_batch_output, top_label
from tests.support import link_many, write_big_png

COLORS = ("red", "green", "blue")
PER_COLOUR = 1000  # 3,000 images of 512x384 PNG: ~15 s of work on two cores, so the kill lands mid-way
SHARD_SIZE = 50
BROKEN = {  # input ID -> google.rpc code of its error line
    "gs://b/broken/garbage.jpg": 3,
    "gs://b/broken/truncated.png": 3,
    "gs://b/broken/empty.gif": 3,
    "gs://b/broken/never-uploaded.jpg": 5,
}


def _inputs(data: Path) -> dict[str, str | None]:
    """Write the bucket and gs://b/batch.csv; input ID -> expected label (None for the broken ones)."""
    colour_ids: list[tuple[str, str]] = []
    for color in COLORS:
        source = write_big_png(data.parent / f"{color}.png", color)
        for path in link_many(source, bucket_path(data, f"gs://b/img/{color}"), PER_COLOUR):
            colour_ids.append((f"gs://b/img/{color}/{path.name}", color))
    colour_ids.sort(key=lambda pair: pair[0].rsplit("/", 1)[1] + pair[1])  # interleave colours

    broken_dir = bucket_path(data, "gs://b/broken")
    broken_dir.mkdir(parents=True)
    (broken_dir / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage " * 50)
    (broken_dir / "truncated.png").write_bytes(write_big_png(data.parent / "whole.png", "red").read_bytes()[:200])
    (broken_dir / "empty.gif").write_bytes(b"")

    ordered: list[tuple[str, str | None]] = list(colour_ids)
    broken = list(BROKEN)
    ordered.insert(5, (broken[0], None))  # first shard: committed before the kill
    ordered.insert(len(ordered) // 2, (broken[1], None))
    ordered.insert(len(ordered) - 10, (broken[2], None))  # last shard: written by the second server
    ordered.insert(len(ordered) - 3, (broken[3], None))
    bucket_path(data, "gs://b/batch.csv").write_text("\n".join(uri for uri, _ in ordered) + "\n")
    return dict(ordered)


def _get(server, name: str) -> dict:
    reply = httpx.get(f"{server.url}/v1/{name}", timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _job_row(data: Path, op_id: str) -> tuple[str, int]:
    """(state, committed shards) straight from the job store, read while no server runs."""
    with closing(sqlite3.connect(data / "batchline.db")) as db:
        state = db.execute("SELECT state FROM jobs WHERE id = ?", (op_id,)).fetchone()[0]
        shards = db.execute("SELECT COUNT(*) FROM job_shards WHERE job_id = ?", (op_id,)).fetchone()[0]
    return state, shards


def _submit(server) -> str:
    reply = httpx.post(
        f"{server.url}/v1/{PROJECT_LOCATION}/models/colors:batchPredict",
        json={
            "inputConfig": {"gcsSource": {"inputUris": ["gs://b/batch.csv"]}},
            "outputConfig": {"gcsDestination": {"outputUriPrefix": "gs://b/out/"}},
            "params": {"score_threshold": "0.2"},
        },
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["name"]


def _wait_for_progress(server, name: str, percent: int) -> None:
    deadline = time.monotonic() + 90
    while True:
        op = _get(server, name)
        assert not op.get("done"), f"the job ended before it could be interrupted: {op}"
        if op["metadata"]["progressPercent"] >= percent:
            return
        assert time.monotonic() < deadline, f"no progress: {op}"
        time.sleep(0.1)


def _wait_until_done(server, name: str) -> dict:
    deadline = time.monotonic() + 150
    while not (op := _get(server, name)).get("done"):
        assert time.monotonic() < deadline, f"the job did not finish after the restart: {op}"
        time.sleep(0.5)
    return op


def _check_output(data: Path, op: dict, expected: dict[str, str | None]) -> None:
    """The job succeeded and wrote every input exactly once, with the right label or its error."""
    assert "error" not in op, op["error"]
    assert op["response"]["@type"].endswith("google.cloud.automl.v1.BatchPredictResult")
    assert op["metadata"]["progressPercent"] == 100
    out_uri = op["metadata"]["batchPredictDetails"]["outputInfo"]["gcsOutputDirectory"]
    assert out_uri.startswith("gs://b/out/prediction-colors-")

    results, errors = read_batch_output(bucket_path(data, out_uri))  # gap-free numbering, no staging / .tmp
    assert len(results) + len(errors) == len(expected)
    assert set(results) | set(errors) == set(expected)
    assert {uri: e["code"] for uri, e in errors.items()} == BROKEN
    wrong = {uri: a for uri, a in results.items() if top_label(a) != expected[uri]}
    assert not wrong, f"{len(wrong)} wrong labels, e.g. {next(iter(wrong.items()))}"

    # Each failure is reported once, even for the shard the first server committed before it died.
    failures = op["metadata"]["partialFailures"]
    reported = sorted(uri for f in failures for uri in BROKEN if f["message"].startswith(uri + ": "))
    assert len(failures) == len(BROKEN) and reported == sorted(BROKEN), failures
    assert not list(bucket_path(data, "gs://b/out").rglob("*.tmp"))


@pytest.mark.timeout(240)
def test_a_killed_server_resumes_the_job_and_writes_every_input_once(tmp_path: Path, start_server):
    data = make_data_dir(tmp_path)
    expected = _inputs(data)
    total_shards = -(-len(expected) // SHARD_SIZE)
    env = {"BATCHLINE_SHARD_SIZE": str(SHARD_SIZE), "BATCHLINE_LEASE_SECONDS": "2"}

    first = start_server(data, env)
    name = _submit(first)
    op_id = name.rsplit("/", 1)[1]
    _wait_for_progress(first, name, 10)
    first.kill()

    state, committed = _job_row(data, op_id)
    assert state == "RUNNING", state
    assert 0 < committed < total_shards, f"{committed} of {total_shards} shards committed at the kill"

    second = start_server(data, env)
    op = _wait_until_done(second, name)
    _check_output(data, op, expected)


@pytest.mark.timeout(240)
def test_sigterm_stops_the_server_promptly_and_the_next_start_finishes_the_job(tmp_path: Path, start_server):
    """Ctrl-C / `docker stop` in the middle of a job: the server exits in seconds, not when the job is done,
    and leaves the job to the next start, which finishes it."""
    data = make_data_dir(tmp_path)
    expected = _inputs(data)
    env = {"BATCHLINE_SHARD_SIZE": str(SHARD_SIZE), "BATCHLINE_LEASE_SECONDS": "2"}

    first = start_server(data, env)
    name = _submit(first)
    _wait_for_progress(first, name, 10)
    stopping = time.monotonic()
    first.stop(timeout=30)
    took = time.monotonic() - stopping
    assert took < 5, f"the server took {took:.1f} s to stop"

    state, committed = _job_row(data, name.rsplit("/", 1)[1])
    assert state == "RUNNING", f"a stopped server must leave its job to the next start, not end it ({state})"
    assert committed < -(-len(expected) // SHARD_SIZE)

    second = start_server(data, env)
    _check_output(data, _wait_until_done(second, name), expected)
