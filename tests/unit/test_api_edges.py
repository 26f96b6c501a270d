"""The edges of both HTTP surfaces, in process: cancelling what is done, request limits, wrong methods and paths.

Every refusal is the google.rpc error shape {"error": {"code", "message", "status"}} with a message that names the
field or the limit.
"""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException
from starlette.requests import Request

from batchline.api.app import create_app, create_vertex_app
from batchline.api.http import read_body
from batchline.api.limits import MAX_PREDICT_BODY_BYTES
from batchline.config import Settings
from batchline.errors import PayloadTooLarge
from batchline.problems.image.decode import MAX_IMAGE_BYTES
from batchline.services import Services
from tests.support import BASE, assert_error, image_bytes, predict_body, submit, wait_done

MODEL = f"{BASE[4:]}/models/colors"


def batch_body(uris: list[str] | None = None, params: dict | None = None, prefix: str = "gs://b/out") -> dict:
    return {
        "inputConfig": {"gcsSource": {"inputUris": uris or ["gs://b/in.csv"]}},
        "outputConfig": {"gcsDestination": {"outputUriPrefix": prefix}},
        "params": params or {},
    }


def job_body(uris: list[str] | None = None, **fields: object) -> dict:
    body = {
        "displayName": "edges",
        "model": f"{MODEL}@1",
        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": uris or ["gs://b/in.jsonl"]}},
        "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": "gs://b/out"}},
    }
    return {**body, **fields}


# ---------------------------------------------------------------------------------------------------- cancel


def test_cancel_of_a_done_batch_operation_is_failed_precondition(client: TestClient, data_dir: Path) -> None:
    (data_dir / "buckets" / "b" / "in.csv").write_text("gs://b/gone.jpg\n")
    name = submit(client, ["gs://b/in.csv"]).json()["name"]
    done = wait_done(client, name)

    assert_error(client.post(f"/v1/{name}:cancel"), 400, "FAILED_PRECONDITION", "already ended", "not done")
    assert client.get(f"/v1/{name}").json() == done  # the operation is as it was


@pytest.mark.parametrize("verb", ["deploy", "undeploy"])
def test_cancel_of_a_deploy_operation_is_failed_precondition(client: TestClient, verb: str) -> None:
    op = client.post(f"{BASE}/models/colors:{verb}").json()
    assert op["done"] is True

    assert_error(client.post(f"/v1/{op['name']}:cancel"), 400, "FAILED_PRECONDITION", "already ended")
    assert client.get(f"/v1/{op['name']}").json() == op


# ---------------------------------------------------------------------------------------------------- fields


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (batch_body(params={"score_threshold": "5" * 25_001}), ["params.score_threshold", "25000"]),
        (batch_body(params={"k" * 25_001: "1"}), ["params.", "25000"]),
        (batch_body(params={f"p{i}": "1" for i in range(101)}), ["params", "at most 100"]),
        (batch_body(uris=[f"gs://b/in{i}.csv" for i in range(1001)]), ["inputConfig.gcsSource.inputUris", "1000"]),
        (batch_body(uris=["gs://b/" + "x" * 2_100]), ["inputConfig.gcsSource.inputUris.0", "2000"]),
        (batch_body(prefix="gs://b/" + "x" * 2_100), ["outputConfig.gcsDestination.outputUriPrefix", "2000"]),
    ],
)
def test_batch_predict_fields_over_their_limits_are_400(client: TestClient, body: dict, words: list[str]) -> None:
    reply = client.post(f"{BASE}/models/colors:batchPredict", json=body)
    assert_error(reply, 400, "INVALID_ARGUMENT", *words)
    assert len(reply.json()["error"]["message"]) < 1000  # a 25,001-character key is not echoed back


def test_a_param_of_25000_characters_passes_the_length_check(client: TestClient) -> None:
    reply = client.post(f"{BASE}/models/colors:batchPredict", json=batch_body(params={"score_threshold": "5" * 25_000}))
    assert_error(reply, 400, "INVALID_ARGUMENT", "score_threshold")  # refused for its value, not its length
    assert "25000 characters" not in reply.json()["error"]["message"]


def test_predict_params_are_bounded_too(client: TestClient) -> None:
    body = predict_body(image_bytes("red"), score_threshold="5" * 25_001)
    assert_error(client.post(f"{BASE}/models/colors:predict", json=body), 400, "INVALID_ARGUMENT", "params", "25000")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"uris": [f"gs://b/in{i}.jsonl" for i in range(1001)]}, ["inputConfig.gcsSource.uris", "1000"]),
        ({"uris": ["gs://b/" + "x" * 2_100]}, ["inputConfig.gcsSource.uris.0", "2000"]),
        ({"labels": {"k" * 64: "v"}}, ["labels", "63"]),
        ({"labels": {"team": "v" * 64}}, ["labels.team", "63"]),
        ({"labels": {f"k{i}": "v" for i in range(65)}}, ["labels", "64"]),
        ({"displayName": "n" * 129}, ["displayName", "128"]),
    ],
)
def test_vertex_job_fields_over_their_limits_are_400(vertex: TestClient, fields: dict, words: list[str]) -> None:
    body = job_body(fields.pop("uris", None), **fields)
    assert_error(vertex.post(f"{BASE}/batchPredictionJobs", json=body), 400, "INVALID_ARGUMENT", *words)


# ---------------------------------------------------------------------------------------------------- bodies


def _big_batch_body() -> bytes:
    """About 2 MB of valid JSON: a body a client may well build, with every URI listed in it."""
    return json.dumps(batch_body(uris=[f"gs://b/images/{i:07d}.jpg" for i in range(72_000)])).encode()


def test_a_2_mb_batch_predict_body_is_413(client: TestClient) -> None:
    body = _big_batch_body()
    assert len(body) > 2_000_000
    reply = client.post(
        f"{BASE}/models/colors:batchPredict", content=body, headers={"content-type": "application/json"}
    )
    assert_error(reply, 413, "INVALID_ARGUMENT", "too large", "1 MiB", "Content-Length")


def test_a_body_without_content_length_is_counted_and_413(client: TestClient) -> None:
    body = _big_batch_body()

    def chunks() -> Iterator[bytes]:  # a generator: httpx sends it chunked, with no Content-Length
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    reply = client.post(f"{BASE}/models/colors:batchPredict", content=chunks())
    assert "content-length" not in reply.request.headers
    assert_error(reply, 413, "INVALID_ARGUMENT", "too large", "1 MiB")


def test_a_2_mb_vertex_job_body_is_413(vertex: TestClient) -> None:
    reply = vertex.post(f"{BASE}/batchPredictionJobs", content=_big_batch_body())
    assert_error(reply, 413, "INVALID_ARGUMENT", "too large", "1 MiB")


def test_reading_a_body_stops_past_the_limit() -> None:
    """A body that never ends is read only up to the limit (and one byte), then refused."""
    pulled = 0

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    scope = {"type": "http", "method": "POST", "path": "/v1/x", "headers": [], "query_string": b""}
    with pytest.raises(PayloadTooLarge) as raised:
        asyncio.run(read_body(Request(scope, receive), limit=10_000))
    assert pulled == 11 and "10,000 bytes" in raised.value.message


def _png_of_size(total: int) -> bytes:
    """A real red PNG padded to `total` bytes by a private ancillary chunk, which decoders skip."""
    png = image_bytes("red", "PNG")
    iend = png.rindex(b"IEND") - 4
    data = b"\0" * (total - len(png) - 12)
    chunk = struct.pack(">I", len(data)) + b"pdNg" + data + struct.pack(">I", zlib.crc32(b"pdNg" + data))
    padded = png[:iend] + chunk + png[iend:]
    assert len(padded) == total
    return padded


def test_a_30_mb_image_is_still_predicted(client: TestClient) -> None:
    reply = client.post(f"{BASE}/models/colors:predict", json=predict_body(_png_of_size(MAX_IMAGE_BYTES)))
    assert reply.status_code == 200, reply.text[:500]
    assert reply.json()["payload"][0]["displayName"] == "red"


def test_a_predict_body_over_its_limit_is_413(client: TestClient) -> None:
    body = b" " * (MAX_PREDICT_BODY_BYTES + 1)
    reply = client.post(f"{BASE}/models/colors:predict", content=body, headers={"content-type": "application/json"})
    assert_error(reply, 413, "INVALID_ARGUMENT", "too large", "41 MiB", "30 MB")


# ---------------------------------------------------------------------------------------------------- methods, paths


AUTOML_WRONG_METHODS = [
    ("GET", f"{BASE}/models/colors:batchPredict", "POST"),
    ("GET", f"{BASE}/models/colors:predict", "POST"),
    ("PUT", f"{BASE}/models/colors", "GET, DELETE"),
    ("POST", f"{BASE}/models/colors", "GET, DELETE"),
    ("POST", f"{BASE}/models", "GET"),
    ("GET", f"{BASE}/operations/123:cancel", "POST"),
    ("PATCH", f"{BASE}/operations", "GET"),
]
VERTEX_WRONG_METHODS = [
    ("GET", f"{BASE}/batchPredictionJobs/123:cancel", "POST"),
    ("PUT", f"{BASE}/models/colors", "GET"),
    ("DELETE", f"{BASE}/models/colors", "GET"),
    ("PUT", f"{BASE}/batchPredictionJobs/123", "GET, DELETE"),
    ("DELETE", f"{BASE}/batchPredictionJobs", "GET, POST"),
    ("POST", f"/ui{BASE[3:]}/operations/123", "GET"),
]


@pytest.mark.parametrize(("method", "path", "allow"), AUTOML_WRONG_METHODS)
def test_automl_wrong_method_is_405_unimplemented(client: TestClient, method: str, path: str, allow: str) -> None:
    reply = client.request(method, path)
    assert_error(reply, 405, "UNIMPLEMENTED", f"{method} is not allowed on {path}", f"this path takes {allow}")
    assert reply.headers["allow"] == allow


@pytest.mark.parametrize(("method", "path", "allow"), VERTEX_WRONG_METHODS)
def test_vertex_wrong_method_is_405_unimplemented(vertex: TestClient, method: str, path: str, allow: str) -> None:
    reply = vertex.request(method, path)
    assert_error(reply, 405, "UNIMPLEMENTED", f"{method} is not allowed on {path}", f"this path takes {allow}")
    assert reply.headers["allow"] == allow


def test_a_bare_post_to_a_model_names_its_methods(client: TestClient) -> None:
    assert_error(client.post(f"{BASE}/models/colors"), 405, "UNIMPLEMENTED", "colors:batchPredict", "colors:predict")


@pytest.mark.parametrize("path", ["/nope", "/v1/projects/p/locations/l/nothing", "/v2/projects/p"])
def test_unknown_path_is_404_not_found_on_both_apps(client: TestClient, vertex: TestClient, path: str) -> None:
    for app in (client, vertex):
        assert_error(app.get(path), 404, "NOT_FOUND", "no such route", path)


def test_unknown_verb_is_404_naming_the_verbs(client: TestClient, vertex: TestClient) -> None:
    assert_error(client.post(f"{BASE}/models/colors:train"), 404, "NOT_FOUND", ":train", "colors:batchPredict")
    assert_error(vertex.get(f"{BASE}/models/colors:train"), 404, "NOT_FOUND", ":train")


@pytest.mark.parametrize(
    ("http", "status"),
    [(401, "UNAUTHENTICATED"), (403, "PERMISSION_DENIED"), (418, "INVALID_ARGUMENT"), (429, "RESOURCE_EXHAUSTED"),
     (501, "UNIMPLEMENTED"), (502, "INTERNAL"), (503, "UNAVAILABLE")],
)  # fmt: skip
def test_any_http_error_gets_a_google_rpc_status(
    settings: Settings, services: Services, http: int, status: str
) -> None:
    for app in (create_app(settings, services, run_worker=False, own_services=False), create_vertex_app(services)):

        @app.get("/raises")
        def raises() -> None:
            raise HTTPException(http, "what went wrong")

        with TestClient(app) as test_client:
            assert_error(test_client.get("/raises"), http, status, "what went wrong")
