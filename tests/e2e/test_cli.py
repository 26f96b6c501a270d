"""The command line as a user runs it: `python -m batchline ... --server URL` against a real server."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, ServerProcess, free_port, make_data_dir, server_env
from tests.e2e.helpers import (
    bucket_path,
    read_batch_output,
    top_label,
    write_two_colour_png,
)
from tests.support import link_many, make_color_model, write_big_png, write_image

pytestmark = pytest.mark.timeout(180)

IMAGES = {"gs://b/img/r.jpg": "red", "gs://b/img/g.png": "green", "gs://b/img/b.gif": "blue"}
OP_NAME = re.compile(r"projects/local/locations/us-central1/operations/\w+")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cli")
    data = make_data_dir(root)
    for uri, color in IMAGES.items():
        write_image(bucket_path(data, uri), color)
    bucket_path(data, "gs://b/img/bad.jpg").write_bytes(b"not a jpeg")
    bucket_path(data, "gs://b/batch.csv").write_text("\n".join([*IMAGES, "gs://b/img/bad.jpg"]) + "\n")
    source = write_big_png(root / "big.png", "green")
    paths = link_many(source, bucket_path(data, "gs://b/long"), 3000)
    bucket_path(data, "gs://b/long.csv").write_text("\n".join(f"gs://b/long/{p.name}" for p in paths) + "\n")

    server = ServerProcess(data, {"BATCHLINE_SHARD_SIZE": "2", "BATCHLINE_LEASE_SECONDS": "3"}, log_dir=root)
    server.start()
    yield {"root": root, "data": data, "server": server}
    server.stop()


def cli(env: dict, command: str, *paths: str, server: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m batchline COMMAND PATHS... [--server URL]` as a user would (COMMAND is split like a shell)."""
    argv = [sys.executable, "-m", "batchline", *shlex.split(command), *paths]
    if server:
        argv += ["--server", env["server"].url]
    return subprocess.run(argv, cwd=REPO, env=server_env(env["data"]), capture_output=True, text=True, timeout=timeout)


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def _table_rows(text: str) -> list[list[str]]:
    """Cells of a rich table's body rows: lines framed by │ (the header is framed by ┃)."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in text.splitlines()
        if line.strip().startswith("│")
    ]


def test_batch_predict_waits_and_prints_the_output_directory(env):
    result = cli(
        env,
        "batch-predict --model colors --input gs://b/batch.csv --output gs://b/out/ --param score_threshold=0.2 --wait",
    )
    out = _ok(result)
    assert OP_NAME.search(out), out
    match = re.search(r"output: (gs://b/out/prediction-colors-\S+)", out)
    assert match, out

    results, errors = read_batch_output(bucket_path(env["data"], match.group(1)))
    assert {uri: top_label(a) for uri, a in results.items()} == IMAGES
    assert list(errors) == ["gs://b/img/bad.jpg"] and errors["gs://b/img/bad.jpg"]["code"] == 3


def test_predict_prints_the_right_label_first(env, tmp_path: Path):
    red = write_image(tmp_path / "red photo.jpg", "red")
    rows = _table_rows(_ok(cli(env, "predict --model colors", str(red))))
    assert [r[0] for r in rows] == ["red"], rows
    assert float(rows[0][1]) > 0.99

    mixed = write_two_colour_png(tmp_path / "mixed.png", "blue", "green", left_share=0.55)
    rows = _table_rows(_ok(cli(env, "predict --model colors --score-threshold 0", str(mixed))))
    assert [r[0] for r in rows] == ["blue", "green", "red"], rows
    scores = [float(r[1]) for r in rows]
    assert scores == sorted(scores, reverse=True)

    missing = cli(env, "predict --model no-such-model", str(red))
    assert missing.returncode != 0
    assert "no-such-model" in missing.stderr and "not found" in missing.stderr


def test_operations_list_get_and_wait(env):
    out = _ok(cli(env, "batch-predict --model colors --input gs://b/batch.csv --output gs://b/o2/"))
    name = OP_NAME.search(out).group(0)

    waited = _ok(cli(env, "operations wait", name))
    done = json.loads(waited[waited.index("{") :])
    assert done["name"] == name and done["done"] is True and "response" in done

    got = json.loads(_ok(cli(env, "operations get", name)))
    assert got["done"] is True
    assert got["metadata"]["progressPercent"] == 100
    assert got["metadata"]["batchPredictDetails"]["outputInfo"]["gcsOutputDirectory"].startswith("gs://b/o2/")
    short = json.loads(_ok(cli(env, "operations get", name.rsplit("/", 1)[1])))  # the id alone works too
    assert short["name"] == name

    op_id = name.rsplit("/", 1)[1]
    listed = _table_rows(_ok(cli(env, "operations list")))
    assert [op_id, "True", "100%", ""] in listed, listed  # whole, on one line, so it can be copied
    assert listed[0][0] == op_id  # newest first
    running = _table_rows(_ok(cli(env, "operations list --filter 'done = false'")))
    assert op_id not in [row[0] for row in running]

    bad_filter = cli(env, "operations list --filter 'state = RUNNING'")
    assert bad_filter.returncode != 0 and "filter" in bad_filter.stderr


def test_operations_cancel_stops_a_running_job(env):
    out = _ok(cli(env, "batch-predict --model colors --input gs://b/long.csv --output gs://b/o3/"))
    name = OP_NAME.search(out).group(0)
    deadline = time.monotonic() + 60
    while json.loads(_ok(cli(env, "operations get", name)))["metadata"]["progressPercent"] == 0:
        assert time.monotonic() < deadline, "the long job never started"
        time.sleep(0.2)

    cancelled = _ok(cli(env, "operations cancel", name))
    assert name in cancelled
    waited = cli(env, "operations wait", name, timeout=60)
    assert waited.returncode != 0
    assert "code 1" in waited.stderr and "cancelled" in waited.stderr, waited.stderr
    final = json.loads(_ok(cli(env, "operations get", name)))
    assert final["done"] is True and final["error"]["code"] == 1
    assert final["metadata"]["progressPercent"] < 100


def test_models_list_and_show(env):
    rows = _table_rows(_ok(cli(env, "models list")))
    assert ["colors", "colors", "UNDEPLOYED"] in rows or ["colors", "colors", "DEPLOYED"] in rows, rows

    shown = json.loads(_ok(cli(env, "models show colors")))
    assert shown["name"] == "projects/local/locations/us-central1/models/colors"
    assert shown["displayName"] == "colors"
    assert "imageClassificationModelMetadata" in shown

    missing = cli(env, "models show nope")
    assert missing.returncode != 0 and "nope" in missing.stderr


def test_a_failing_job_exits_non_zero_with_the_operation_error(env):
    result = cli(env, "batch-predict --model colors --input gs://b/missing.csv --output gs://b/o4/ --wait")
    assert result.returncode != 0
    assert "code 3" in result.stderr, result.stderr
    assert "gs://b/missing.csv" in result.stderr and "does not exist" in result.stderr


def test_a_bad_param_is_refused_at_submit(env):
    result = cli(
        env, "batch-predict --model colors --input gs://b/batch.csv --output gs://b/o5/ --param score_threshold=7"
    )
    assert result.returncode != 0
    assert "INVALID_ARGUMENT" in result.stderr and "score_threshold" in result.stderr
    assert not OP_NAME.search(result.stdout)


def test_models_import_names_the_bad_field(env, tmp_path: Path):
    folder = make_color_model(tmp_path / "bad-model", model_id="shapes")
    manifest = folder / "model.yaml"
    manifest.write_text(manifest.read_text().replace("activation: softmax", "activation: softestmax"))
    result = cli(env, "models import", str(folder), "--data-dir", str(env["data"]), server=False)
    assert result.returncode != 0
    assert "output.activation" in result.stderr, result.stderr
    assert not (env["data"] / "models" / "shapes").exists()


def test_models_import_of_a_good_model_is_served_at_once(env, tmp_path: Path):
    folder = make_color_model(tmp_path / "good-model", model_id="colors2")
    out = _ok(cli(env, "models import", str(folder), "--data-dir", str(env["data"]), server=False))
    assert "colors2" in out
    assert "colors2" in [r[0] for r in _table_rows(_ok(cli(env, "models list")))]
    red = write_image(tmp_path / "red.png", "red")
    assert _table_rows(_ok(cli(env, "predict --model colors2", str(red))))[0][0] == "red"

    again = cli(env, "models import", str(folder), "--data-dir", str(env["data"]), server=False)
    assert again.returncode != 0 and "already exists" in again.stderr


def test_an_unreachable_server_is_explained(env):
    result = cli(env, f"models list --server http://127.0.0.1:{free_port()}", server=False)
    assert result.returncode != 0
    assert "cannot reach" in result.stderr and "batchline serve" in result.stderr
