"""Every batch job writes into a folder of its own: 32 jobs submitted at once to one output prefix, through two
real servers sharing one data dir (one SQLite database, one bucket folder), with one model, so many of them are
created in the same millisecond."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import PROJECT_LOCATION, make_data_dir
from tests.e2e.helpers import bucket_path, read_batch_output
from tests.support import write_image

pytestmark = pytest.mark.timeout(120)

JOBS = 32
IMAGES_PER_JOB = 3
COLOURS = ("red", "green", "blue")
OUTPUT_PREFIX = "gs://b/out/"
FOLDER = re.compile(r"prediction-colors-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _inputs(data: Path) -> list[list[str]]:
    """One CSV per job, gs://b/csv/jobNN.csv, listing images no other job lists; the IDs of each job, in order."""
    per_job = []
    for job in range(JOBS):
        ids = [f"gs://b/img/job{job:02d}/image{k}.jpg" for k in range(IMAGES_PER_JOB)]
        for k, uri in enumerate(ids):
            write_image(bucket_path(data, uri), COLOURS[(job + k) % len(COLOURS)])
        csv = bucket_path(data, f"gs://b/csv/job{job:02d}.csv")
        csv.parent.mkdir(parents=True, exist_ok=True)
        csv.write_text("\n".join(ids) + "\n")
        per_job.append(ids)
    return per_job


def _body(csv: str, prefix: str = OUTPUT_PREFIX) -> dict:
    return {
        "inputConfig": {"gcsSource": {"inputUris": [csv]}},
        "outputConfig": {"gcsDestination": {"outputUriPrefix": prefix}},
        "params": {"score_threshold": "0.0"},
    }


def _submit(url: str, body: dict, barrier: threading.Barrier | None = None) -> str:
    with httpx.Client(timeout=60) as client:
        client.get(f"{url}/v1/{PROJECT_LOCATION}/models/colors").raise_for_status()  # connected before the barrier
        if barrier is not None:
            barrier.wait()
        reply = client.post(f"{url}/v1/{PROJECT_LOCATION}/models/colors:batchPredict", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()["name"]


def _wait_all_done(url: str, names: list[str], timeout: float = 90) -> list[dict]:
    deadline = time.monotonic() + timeout
    done: dict[str, dict] = {}
    with httpx.Client(timeout=10) as client:
        while len(done) < len(names):
            assert time.monotonic() < deadline, f"{len(names) - len(done)} jobs not done within {timeout} s"
            for name in names:
                if name not in done:
                    op = client.get(f"{url}/v1/{name}").json()
                    if op.get("done"):
                        done[name] = op
            time.sleep(0.2)
    return [done[name] for name in names]


def test_concurrent_jobs_to_one_prefix_on_two_servers_each_get_their_own_folder(tmp_path: Path, start_server) -> None:
    data = make_data_dir(tmp_path)
    per_job = _inputs(data)
    servers = [start_server(data), start_server(data)]
    # A job on each server first, elsewhere: its decoder processes start then, not amid the burst below (the
    # tighter the burst, the more jobs share a millisecond).
    warm_up = [_submit(s.url, _body("gs://b/csv/job00.csv", "gs://b/warm-up/")) for s in servers]
    _wait_all_done(servers[0].url, warm_up)
    barrier = threading.Barrier(JOBS)

    with ThreadPoolExecutor(JOBS) as pool:
        bodies = [_body(f"gs://b/csv/job{job:02d}.csv") for job in range(JOBS)]
        names = list(pool.map(lambda job: _submit(servers[job % 2].url, bodies[job], barrier), range(JOBS)))
    ops = _wait_all_done(servers[0].url, names)

    for op in ops:
        assert "error" not in op, op
    folders = [op["metadata"]["batchPredictDetails"]["outputInfo"]["gcsOutputDirectory"] for op in ops]
    assert len(set(folders)) == JOBS, sorted(folders)
    for folder in folders:
        assert folder.startswith(OUTPUT_PREFIX) and FOLDER.fullmatch(folder.removeprefix(OUTPUT_PREFIX)), folder
    on_disk = sorted(p.name for p in bucket_path(data, OUTPUT_PREFIX).iterdir())
    assert on_disk == sorted(f.removeprefix(OUTPUT_PREFIX) for f in folders)

    for job, folder in enumerate(folders):
        results, errors = read_batch_output(bucket_path(data, folder))
        assert sorted(results) == sorted(per_job[job]), f"job {job} in {folder}"
        assert errors == {}, f"job {job} in {folder}"
