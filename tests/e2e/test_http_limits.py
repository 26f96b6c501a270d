"""Request bodies over the limit, against a real `batchline serve`: refused with 413 whether the client says the
length (Content-Length) or streams the body chunked without one, and never read whole into the server's memory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import PROJECT_LOCATION, ServerProcess, make_data_dir

pytestmark = pytest.mark.timeout(180)

STREAMED_BYTES = 40 * 2**20  # the 40 MB body that hostile testing sent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("http-limits")
    process = ServerProcess(make_data_dir(root), log_dir=root, vertex=True)
    process.start()
    yield process
    process.stop()


def urls(server: ServerProcess) -> dict[str, str]:
    return {
        "batchPredict": f"{server.url}/v1/{PROJECT_LOCATION}/models/colors:batchPredict",
        "vertex job": f"{server.vertex_url}/v1/{PROJECT_LOCATION}/batchPredictionJobs",
    }


def chunked(total: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """A body of `total` bytes as a generator: httpx sends it with Transfer-Encoding: chunked, no Content-Length."""
    for _ in range(total // chunk):
        yield b" " * chunk


def peak_memory_kib(server: ServerProcess) -> int:
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])


def assert_413(reply: httpx.Response, *words: str) -> None:
    assert reply.status_code == 413, reply.text
    error = reply.json()["error"]
    assert error["code"] == 413 and error["status"] == "INVALID_ARGUMENT"
    for word in ("too large", "1 MiB", *words):
        assert word in error["message"], error["message"]


@pytest.mark.parametrize("route", ["batchPredict", "vertex job"])
def test_a_2_mb_body_with_its_length_is_413(server: ServerProcess, route: str) -> None:
    uris = [f"gs://b/images/{i:07d}.jpg" for i in range(72_000)]
    body = json.dumps({"inputConfig": {"gcsSource": {"inputUris": uris}}}).encode()
    assert len(body) > 2_000_000
    reply = httpx.post(urls(server)[route], content=body, headers={"content-type": "application/json"}, timeout=30)
    assert_413(reply, "Content-Length")


@pytest.mark.parametrize("route", ["batchPredict", "vertex job"])
def test_a_40_mb_chunked_body_is_413_and_never_held(server: ServerProcess, route: str) -> None:
    url = urls(server)[route]
    assert_413(httpx.post(url, content=chunked(2 * 2**20), timeout=30))  # warm: what a first request allocates
    before = peak_memory_kib(server)

    reply = httpx.post(url, content=chunked(STREAMED_BYTES), headers={"content-type": "application/json"}, timeout=60)
    assert reply.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in reply.request.headers
    assert_413(reply)
    grown_mib = (peak_memory_kib(server) - before) / 1024
    assert grown_mib < 16, f"the server's peak memory grew by {grown_mib:.0f} MiB for a body it refused"
    assert httpx.get(f"{server.url}/v1/{PROJECT_LOCATION}/models", timeout=10).status_code == 200
