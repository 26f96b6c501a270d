"""The unmodified google-cloud-automl client, over REST, against a real `batchline serve` (CONTRACT.md section 1)."""

from __future__ import annotations

import time

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import automl_v1

from tests.e2e.conftest import PROJECT_LOCATION, ServerProcess, make_data_dir
from tests.e2e.helpers import (
    bucket_path,
    read_batch_output,
    top_label,
    write_two_colour_png,
)
from tests.support import image_bytes, link_many, make_color_model, write_big_png, write_image

pytestmark = pytest.mark.timeout(180)

MODEL = f"{PROJECT_LOCATION}/models/colors"
LONG_JOB_INPUTS = 3000

# gs://b/img/... -> the colour it is (None: it must fail, with this google.rpc code)
GOOD = {
    "gs://b/img/red.jpg": "red",
    "gs://b/img/green.jpg": "green",
    "gs://b/img/blue.jpg": "blue",
    "gs://b/img/red.png": "red",
    "gs://b/img/green.gif": "green",
    "gs://b/img/blue.jpeg": "blue",
    "gs://b/img/deep/er/red.jpg": "red",
    "gs://b/img/name with spaces blue.jpg": "blue",
}
MIXED = "gs://b/img/mostly red some green.png"
BROKEN = {
    "gs://b/img/corrupt.jpg": 3,  # not an image
    "gs://b/img/empty.png": 3,  # zero bytes
    "gs://b/img/notes.txt": 3,  # unsupported extension
    "gs://b/img/missing.jpg": 5,  # listed, not there
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("official")
    data = make_data_dir(root)
    for uri, color in GOOD.items():
        write_image(bucket_path(data, uri), color)
    write_two_colour_png(bucket_path(data, MIXED), "red", "green", left_share=0.55)
    bucket_path(data, "gs://b/img/corrupt.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg" * 10)
    bucket_path(data, "gs://b/img/empty.png").write_bytes(b"")
    bucket_path(data, "gs://b/img/notes.txt").write_text("hello")
    rows = [f'"{u}"' if " " in u else u for u in [*GOOD, MIXED, *BROKEN]]
    bucket_path(data, "gs://b/batch.csv").write_text("\n".join(rows) + "\n")

    # A job long enough to cancel while it runs: 3,000 inputs that each take real decoding.
    source = write_big_png(root / "big.png", "red")
    paths = link_many(source, bucket_path(data, "gs://b/long"), LONG_JOB_INPUTS)
    bucket_path(data, "gs://b/long.csv").write_text("\n".join(f"gs://b/long/{p.name}" for p in paths) + "\n")

    server = ServerProcess(data, {"BATCHLINE_SHARD_SIZE": "4", "BATCHLINE_LEASE_SECONDS": "3"}, log_dir=root)
    server.start()
    opts = ClientOptions(api_endpoint=server.url)
    pred = automl_v1.PredictionServiceClient(transport="rest", credentials=AnonymousCredentials(), client_options=opts)
    automl = automl_v1.AutoMlClient(transport="rest", credentials=AnonymousCredentials(), client_options=opts)
    yield {"data": data, "server": server, "pred": pred, "automl": automl, "ops": automl.transport.operations_client}
    server.stop()


def _batch_predict(pred, input_uri: str, output: str, params: dict[str, str] | None = None):
    return pred.batch_predict(
        name=MODEL,
        input_config=automl_v1.BatchPredictInputConfig(gcs_source=automl_v1.GcsSource(input_uris=[input_uri])),
        output_config=automl_v1.BatchPredictOutputConfig(
            gcs_destination=automl_v1.GcsDestination(output_uri_prefix=output)
        ),
        params=params or {},
    )


def test_batch_predict_writes_the_automl_output_layout(env):
    op = _batch_predict(env["pred"], "gs://b/batch.csv", "gs://b/out/", {"score_threshold": "0.2"})
    result = op.result(timeout=120)

    assert isinstance(result, automl_v1.BatchPredictResult)
    assert op.operation.name.startswith(f"{PROJECT_LOCATION}/operations/")
    details = op.metadata.batch_predict_details
    assert list(details.input_config.gcs_source.input_uris) == ["gs://b/batch.csv"]
    out_uri = details.output_info.gcs_output_directory
    assert out_uri.startswith("gs://b/out/prediction-colors-"), out_uri
    assert op.metadata.progress_percent == 100

    out_dir = bucket_path(env["data"], out_uri)
    assert (out_dir / "image_classification_1.jsonl").is_file()
    assert (out_dir / "errors_1.jsonl").is_file()
    results, errors = read_batch_output(out_dir)

    assert set(results) | set(errors) == {*GOOD, MIXED, *BROKEN}
    for uri, color in GOOD.items():
        annotations = results[uri]
        assert top_label(annotations) == color, (uri, annotations)
        assert annotations[0]["annotation_spec_id"] == color
        assert annotations[0]["classification"]["score"] > 0.99
        assert len(annotations) == 1  # the other two score ~0.0004, under the 0.2 threshold
    mixed = results[MIXED]
    assert [a["display_name"] for a in mixed] == ["red", "green"], mixed  # blue (~0.01) is under 0.2
    assert all(a["classification"]["score"] >= 0.2 for a in mixed)

    assert {uri: e["code"] for uri, e in errors.items()} == BROKEN
    assert "decode" in errors["gs://b/img/corrupt.jpg"]["message"]
    assert "missing.jpg" in errors["gs://b/img/missing.jpg"]["message"]
    assert ".txt" in errors["gs://b/img/notes.txt"]["message"]

    failures = op.metadata.partial_failures
    assert len(failures) == len(BROKEN)
    assert {f.code for f in failures} == set(BROKEN.values())


def test_online_predict_returns_labels_highest_score_first(env):
    blue = env["pred"].predict(
        name=MODEL, payload=automl_v1.ExamplePayload(image=automl_v1.Image(image_bytes=image_bytes("blue")))
    )
    assert [p.display_name for p in blue.payload] == ["blue"]  # default score_threshold 0.5
    assert blue.payload[0].classification.score > 0.99

    mixed = bucket_path(env["data"], MIXED).read_bytes()
    reply = env["pred"].predict(name=MODEL, payload={"image": {"image_bytes": mixed}}, params={"score_threshold": "0"})
    labels = [p.display_name for p in reply.payload]
    scores = [p.classification.score for p in reply.payload]
    assert labels == ["red", "green", "blue"]
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-4)
    assert all(p.annotation_spec_id == p.display_name for p in reply.payload)


def test_online_predict_rejects_what_is_not_an_image(env):
    with pytest.raises(exceptions.BadRequest) as raised:
        env["pred"].predict(name=MODEL, payload={"image": {"image_bytes": b"not an image at all"}})
    assert "decode" in raised.value.message


def test_get_and_list_models(env):
    automl = env["automl"]
    model = automl.get_model(name=MODEL)
    assert model.name == MODEL
    assert model.display_name == "colors"
    assert automl_v1.Model.pb(model).HasField("image_classification_model_metadata")
    assert model.create_time.year >= 2024

    listed = list(automl.list_models(parent=PROJECT_LOCATION))
    assert [m.name for m in listed] == [MODEL]
    image = {"parent": PROJECT_LOCATION, "filter": "image_classification_model_metadata:*"}
    assert [m.name for m in automl.list_models(request=image)] == [MODEL]
    text = {"parent": PROJECT_LOCATION, "filter": "text_extraction_model_metadata:*"}
    assert list(automl.list_models(request=text)) == []

    with pytest.raises(exceptions.NotFound):
        automl.get_model(name=f"{PROJECT_LOCATION}/models/no-such-model")


def test_deploy_and_undeploy_are_operations_that_change_the_model(env):
    automl = env["automl"]
    deployed = automl_v1.Model.DeploymentState.DEPLOYED
    undeployed = automl_v1.Model.DeploymentState.UNDEPLOYED

    automl.undeploy_model(name=MODEL).result(timeout=30)
    assert automl.get_model(name=MODEL).deployment_state == undeployed

    op = automl.deploy_model(name=MODEL)
    op.result(timeout=30)
    assert op.done() and op.exception() is None
    assert automl.get_model(name=MODEL).deployment_state == deployed

    automl.undeploy_model(name=MODEL).result(timeout=30)
    assert automl.get_model(name=MODEL).deployment_state == undeployed

    with pytest.raises(exceptions.NotFound):
        automl.deploy_model(name=f"{PROJECT_LOCATION}/models/no-such-model")


def test_delete_model_is_an_operation_and_the_model_is_gone(env, tmp_path):
    from batchline.models.repository import ModelRepository

    ModelRepository(env["data"] / "models").import_folder(make_color_model(tmp_path / "doomed", "doomed"))
    name = f"{PROJECT_LOCATION}/models/doomed"
    assert env["automl"].get_model(name=name).display_name == "doomed"
    op = env["automl"].delete_model(name=name)
    op.result(timeout=30)
    assert op.done() and op.exception() is None
    with pytest.raises(exceptions.NotFound):
        env["automl"].get_model(name=name)


def test_operations_get_list_delete(env):
    ops = env["ops"]
    op = _batch_predict(env["pred"], "gs://b/batch.csv", "gs://b/out-ops/")
    op.result(timeout=120)
    name = op.operation.name

    got = ops.get_operation(name)
    assert got.name == name and got.done
    assert got.WhichOneof("result") == "response"
    metadata = automl_v1.OperationMetadata.deserialize(got.metadata.value)
    assert metadata.progress_percent == 100

    done_names = [o.name for o in ops.list_operations(PROJECT_LOCATION, filter_="done = true")]
    assert name in done_names
    assert name not in [o.name for o in ops.list_operations(PROJECT_LOCATION, filter_="done = false")]
    assert name in [o.name for o in ops.list_operations(PROJECT_LOCATION, filter_="", page_size=1)]  # pager follows

    ops.delete_operation(name)
    with pytest.raises(exceptions.NotFound):
        ops.get_operation(name)
    assert name not in [o.name for o in ops.list_operations(PROJECT_LOCATION, filter_="")]


def test_cancel_a_running_job(env):
    ops = env["ops"]
    op = _batch_predict(env["pred"], "gs://b/long.csv", "gs://b/out-long/")
    name = op.operation.name
    deadline = time.monotonic() + 60
    while not op.done() and op.metadata.progress_percent == 0:  # done() refreshes the operation
        assert time.monotonic() < deadline, "the long job never started"
        time.sleep(0.2)
    assert not op.done(), "the long job finished before it could be cancelled; it needs more inputs"

    # FAILED_PRECONDITION is HTTP 400; over REST the client picks the exception class from the HTTP status alone.
    with pytest.raises(exceptions.BadRequest) as raised:
        ops.delete_operation(name)
    assert raised.value.response.json()["error"]["status"] == "FAILED_PRECONDITION"
    assert "cancel" in raised.value.message
    assert not ops.get_operation(name).done

    asked = time.monotonic()
    ops.cancel_operation(name)
    with pytest.raises(exceptions.Cancelled):
        op.result(timeout=30)
    assert time.monotonic() - asked < 10, "cancelling took too long"

    final = ops.get_operation(name)
    assert final.done and final.error.code == 1
    assert automl_v1.OperationMetadata.deserialize(final.metadata.value).progress_percent < 100
    out_dir = bucket_path(env["data"], op.metadata.batch_predict_details.output_info.gcs_output_directory)
    results, errors = read_batch_output(out_dir)  # what was committed is there, tidy; the rest is not
    assert 0 < len(results) < LONG_JOB_INPUTS and not errors
    assert all(top_label(a) == "red" for a in results.values())

    ops.delete_operation(name)  # done now: deleting it is allowed
    with pytest.raises(exceptions.NotFound):
        ops.get_operation(name)


def test_a_missing_input_file_fails_the_operation_with_invalid_argument(env):
    op = _batch_predict(env["pred"], "gs://b/missing.csv", "gs://b/out-missing/")
    with pytest.raises(exceptions.InvalidArgument) as raised:
        op.result(timeout=60)
    assert isinstance(raised.value, exceptions.GoogleAPICallError)
    assert raised.value.grpc_status_code.value[0] == 3
    assert "gs://b/missing.csv" in raised.value.message
    assert env["ops"].get_operation(op.operation.name).error.code == 3


def test_bad_params_are_rejected_when_the_job_is_submitted(env):
    with pytest.raises(exceptions.BadRequest) as raised:
        _batch_predict(env["pred"], "gs://b/batch.csv", "gs://b/out-bad/", {"score_threshold": "1.5"})
    assert raised.value.response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "score_threshold" in raised.value.message
    with pytest.raises(exceptions.BadRequest) as raised:
        _batch_predict(env["pred"], "gs://b/batch.csv", "gs://b/out-bad/", {"no_such_param": "1"})
    assert "no_such_param" in raised.value.message


def test_unknown_operation_is_not_found(env):
    with pytest.raises(exceptions.NotFound):
        env["ops"].get_operation(f"{PROJECT_LOCATION}/operations/does-not-exist")


def test_server_log_has_no_tracebacks(env):
    """Everything above went through handled paths: the server logged no unexpected exception."""
    server: ServerProcess = env["server"]
    assert server.running
    assert "Traceback" not in server.log_path.read_text(), server.log_tail()
