"""batchPredict through the HTTP app (in process, worker running): output layout and per-item errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.support import BASE, SWAPPER, image_bytes, output_folder, read_jsonl, submit, wait_done, write_image


def test_results_and_errors_layout(client: TestClient, data_dir: Path) -> None:
    bucket = data_dir / "buckets" / "b"
    write_image(bucket / "img" / "red.jpg", "red")
    write_image(bucket / "img" / "green photo.PNG", "green")
    write_image(bucket / "img" / "blue.gif", "blue")
    (bucket / "img" / "truncated.jpg").write_bytes(image_bytes("red")[:200])
    (bucket / "img" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (bucket / "img" / "empty.jpg").write_bytes(b"")
    (bucket / "img" / "huge.jpg").write_bytes(image_bytes("red") + b"\0" * (30 * 1024 * 1024))
    (bucket / "img" / "pic.bmp").write_bytes(b"BM")
    (bucket / "img" / "notes.txt").write_text("hello")
    outside = data_dir.parent / "outside.jpg"
    write_image(outside, "red")
    rows = [
        "gs://b/img/red.jpg",
        '"gs://b/img/green photo.PNG"',
        "gs://b/img/blue.gif",
        "gs://b/img/truncated.jpg",
        "gs://b/img/corrupt.png",
        "gs://b/img/empty.jpg",
        "gs://b/img/huge.jpg",
        "gs://b/img/pic.bmp",
        "gs://b/img/notes.txt",
        "gs://b/img/missing.jpg",
        "gs://nobucket/a.jpg",
        "gs://b/../../outside.jpg",
        str(outside),
        "gs://b/img/red.jpg",
    ]
    for i in range(8):  # enough good images to stay under the 50 % failure limit
        write_image(bucket / "more" / f"{i}.jpg", "blue")
        rows.append(f"gs://b/more/{i}.jpg")
    (bucket / "batch.csv").write_bytes(("\ufeff" + "\r\n".join(rows[:7]) + "\r\n\r\n" + "\n".join(rows[7:])).encode())
    reply = submit(
        client,
        ["gs://b/batch.csv"],
        {"score_threshold": "0.2"},
    )
    assert reply.status_code == 200, reply.text
    op = wait_done(client, reply.json()["name"])
    assert op["response"]["@type"] == "type.googleapis.com/google.cloud.automl.v1.BatchPredictResult"
    folder = output_folder(data_dir, op)
    assert folder.name.startswith("prediction-colors-")
    assert {re.sub(r"_\d+\.", "_N.", p.name) for p in folder.iterdir()} == {
        "errors_N.jsonl",
        "image_classification_N.jsonl",
    }

    results = {line["ID"]: line["annotations"] for line in read_jsonl(folder, "image_classification_*.jsonl")}
    assert set(results) == {"gs://b/img/red.jpg", "gs://b/img/green photo.PNG", "gs://b/img/blue.gif"} | {
        f"gs://b/more/{i}.jpg" for i in range(8)
    }
    assert results["gs://b/img/green photo.PNG"][0]["display_name"] == "green"
    first = results["gs://b/img/red.jpg"][0]
    assert list(first) == ["annotation_spec_id", "classification", "display_name"]
    assert first["annotation_spec_id"] == "red" and first["classification"]["score"] > 0.99

    errors = {line["ID"]: line["error"] for line in read_jsonl(folder, "errors_*.jsonl")}
    codes = {uri: err["code"] for uri, err in errors.items()}
    assert codes == {
        "gs://b/img/truncated.jpg": 3,
        "gs://b/img/corrupt.png": 3,
        "gs://b/img/empty.jpg": 3,
        "gs://b/img/huge.jpg": 3,
        "gs://b/img/pic.bmp": 3,
        "gs://b/img/notes.txt": 3,
        "gs://b/img/missing.jpg": 5,
        "gs://nobucket/a.jpg": 5,
        "gs://b/../../outside.jpg": 7,
        str(outside): 7,
    }
    assert all(set(e) == {"code", "message"} for e in errors.values())
    assert not [e for e in errors.values() if str(data_dir) in e["message"]], "messages show the server's paths"
    assert "30 MB" in errors["gs://b/img/huge.jpg"]["message"]
    assert errors[str(outside)]["code"] == 7
    failures = op["metadata"]["partialFailures"]
    assert len(failures) == 10 and all(f["code"] in (3, 5, 7) for f in failures)


def test_score_threshold_filters_and_sorts(client: TestClient, data_dir: Path) -> None:
    write_image(data_dir / "buckets" / "b" / "r.jpg", "red")
    (data_dir / "buckets" / "b" / "in.csv").write_text("gs://b/r.jpg\n")
    for threshold, expected in (("0", 3), ("0.5", 1), ("1", 0)):
        op = wait_done(client, submit(client, ["gs://b/in.csv"], {"score_threshold": threshold}).json()["name"])
        (line,) = read_jsonl(output_folder(data_dir, op), "image_classification_*.jsonl")
        scores = [a["classification"]["score"] for a in line["annotations"]]
        assert len(scores) == expected and scores == sorted(scores, reverse=True)
        time.sleep(0.002)  # output folders are named to the millisecond


def test_shards_never_split_an_item_and_number_without_gaps(client: TestClient, data_dir: Path) -> None:
    bucket = data_dir / "buckets" / "b"
    names = []
    for i in range(11):  # shard_size is 4 in these settings
        name = f"i{i}.jpg" if i % 5 else f"bad{i}.jpg"
        (bucket / name).write_bytes(image_bytes("blue") if i % 5 else b"nope")
        names.append(f"gs://b/{name}")
    (bucket / "a.csv").write_text("\n".join(names[:6]))
    (bucket / "b.csv").write_text("\n".join(names[6:]))
    op = wait_done(client, submit(client, ["gs://b/a.csv", "gs://b/b.csv"]).json()["name"])
    folder = output_folder(data_dir, op)
    files = sorted(p.name for p in folder.iterdir())
    assert files == [
        "errors_1.jsonl",
        "errors_2.jsonl",
        "errors_3.jsonl",
        "image_classification_1.jsonl",
        "image_classification_2.jsonl",
        "image_classification_3.jsonl",
    ]
    ids = [line["ID"] for line in read_jsonl(folder, "*.jsonl")]
    assert sorted(ids) == sorted(names)
    assert op["metadata"]["progressPercent"] == 100


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("", "lists no inputs"),
        ("\n\r\n", "lists no inputs"),
    ],
)
def test_bad_input_file_fails_the_operation(client: TestClient, data_dir: Path, csv_text: str, message: str) -> None:
    (data_dir / "buckets" / "b" / "in.csv").write_text(csv_text)
    op = wait_done(client, submit(client, ["gs://b/in.csv"]).json()["name"])
    assert op["error"]["code"] == 3 and message in op["error"]["message"]
    assert "response" not in op


def test_a_row_that_cannot_be_used_is_that_rows_error(client: TestClient, data_dir: Path) -> None:
    """An unquoted path with a comma fails its own row, not the job: the good images of the job are predicted."""
    bucket = data_dir / "buckets" / "b"
    for name in ("a.jpg", "b.jpg", "c, d.jpg", "e, f.jpg"):
        write_image(bucket / name, "red")
    (bucket / "in.csv").write_text('gs://b/a.jpg\n"gs://b/c, d.jpg"\ngs://b/e, f.jpg\ngs://b/b.jpg\n')
    op = wait_done(client, submit(client, ["gs://b/in.csv"]).json()["name"])
    assert "error" not in op, op
    folder = output_folder(data_dir, op)
    assert sorted(line["ID"] for line in read_jsonl(folder, "image_classification_*.jsonl")) == [
        "gs://b/a.jpg",
        "gs://b/b.jpg",
        "gs://b/c, d.jpg",
    ]
    (error,) = read_jsonl(folder, "errors_*.jsonl")
    assert error["ID"] == "gs://b/e, f.jpg" and error["error"]["code"] == 3
    assert "line 3" in error["error"]["message"] and "2 columns" in error["error"]["message"]
    (failure,) = op["metadata"]["partialFailures"]
    assert failure["code"] == 3 and "in.csv, line 3" in failure["message"]


def test_an_input_file_that_is_not_text_fails_the_operation(client: TestClient, data_dir: Path) -> None:
    (data_dir / "buckets" / "b" / "in.csv").write_bytes(b"gs://b/\xff\xfe.jpg\n")
    op = wait_done(client, submit(client, ["gs://b/in.csv"]).json()["name"])
    assert op["error"]["code"] == 3 and "not UTF-8" in op["error"]["message"]


def test_fifos_fail_at_once_and_the_jobs_after_them_run(client: TestClient, data_dir: Path) -> None:
    """A FIFO as the input file fails its job; a FIFO among the images fails its line. Neither blocks a reader
    (they used to hang the worker and a decoder for good)."""
    bucket = data_dir / "buckets" / "b"
    os.mkfifo(bucket / "pipe.csv")
    os.mkfifo(bucket / "pipe.jpg")
    write_image(bucket / "r.jpg", "red")
    (bucket / "in.csv").write_text("gs://b/pipe.jpg\ngs://b/r.jpg\n")
    with_fifo_csv = submit(client, ["gs://b/pipe.csv"]).json()["name"]
    with_fifo_image = submit(client, ["gs://b/in.csv"], {"score_threshold": "0"}).json()["name"]
    op = wait_done(client, with_fifo_csv, timeout=15)
    assert op["error"]["code"] == 3 and "not a regular file" in op["error"]["message"]
    op = wait_done(client, with_fifo_image, timeout=15)
    assert "response" in op, op  # 1 of 2 failed: not more than the 50 % allowed
    (error,) = read_jsonl(output_folder(data_dir, op), "errors_*.jsonl")
    assert error["ID"] == "gs://b/pipe.jpg" and error["error"]["code"] == 3
    assert "not a regular file" in error["error"]["message"]


def test_missing_input_file_fails_the_operation(client: TestClient) -> None:
    op = wait_done(client, submit(client, ["gs://b/nothing.csv"]).json()["name"])
    assert op["error"] == {
        "code": 3,
        "message": "input file gs://b/nothing.csv cannot be read: gs://b/nothing.csv does not exist",
    }


def test_too_many_failures_fails_but_keeps_results(client: TestClient, data_dir: Path) -> None:
    bucket = data_dir / "buckets" / "b"
    write_image(bucket / "ok.jpg", "red")
    (bucket / "in.csv").write_text("gs://b/ok.jpg\ngs://b/gone1.jpg\ngs://b/gone2.jpg\n")
    op = wait_done(client, submit(client, ["gs://b/in.csv"]).json()["name"])
    assert op["error"]["code"] == 3 and "2 of 3 inputs failed" in op["error"]["message"]
    folder = output_folder(data_dir, op)
    assert len(read_jsonl(folder, "image_classification_*.jsonl")) == 1
    assert len(read_jsonl(folder, "errors_*.jsonl")) == 2


def test_outputs_and_names_the_storage_cannot_take_are_the_users_errors(client: TestClient, data_dir: Path) -> None:
    """An output prefix through a file is a 400, one that would make a bucket a 404, and an input name too long
    for the file system that error line's code 3: never a 500 or code 13, and never a path of the server."""
    bucket = data_dir / "buckets" / "b"
    (bucket / "taken").write_text("a file")
    body = {"inputConfig": {"gcsSource": {"inputUris": ["gs://b/in.csv"]}}}
    for prefix, http, status in (
        ("gs://b/taken/", 400, "INVALID_ARGUMENT"),
        (f"{data_dir}/buckets/newbucket/out/", 404, "NOT_FOUND"),
        ("gs://newbucket/out/", 404, "NOT_FOUND"),
    ):
        reply = client.post(
            f"{BASE}/models/colors:batchPredict",
            json={**body, "outputConfig": {"gcsDestination": {"outputUriPrefix": prefix}}},
        )
        assert reply.status_code == http and reply.json()["error"]["status"] == status, reply.text
        assert str(data_dir) not in reply.json()["error"]["message"].replace(prefix, "")
    assert sorted(p.name for p in (data_dir / "buckets").iterdir()) == ["b"]

    write_image(bucket / "ok.jpg", "red")
    long_name = "gs://b/" + "n" * 300 + ".jpg"
    (bucket / "in.csv").write_text(f"gs://b/ok.jpg\n{long_name}\n")
    op = wait_done(client, submit(client, ["gs://b/in.csv"]).json()["name"])
    (error,) = read_jsonl(output_folder(data_dir, op), "errors_*.jsonl")
    assert error["ID"] == long_name and error["error"]["code"] == 3
    assert str(data_dir) not in error["error"]["message"]


def test_a_job_reading_a_folder_swapped_for_a_link_never_predicts_outside_files(
    client: TestClient, data_dir: Path
) -> None:
    """600 red images in gs://b/swap/, blue ones of the same names outside the buckets; another process swaps the
    folder for a link to outside all along the job. No blue image is ever predicted; the reads it races fail as
    NOT_FOUND or PERMISSION_DENIED."""
    bucket, outside = data_dir / "buckets" / "b", data_dir.parent / "outside"
    names = [f"{i:03d}.png" for i in range(600)]
    red, blue = image_bytes("red", "PNG"), image_bytes("blue", "PNG")
    for folder, data in ((bucket / "real", red), (outside, blue)):
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_bytes(data)
    (bucket / "in.csv").write_text("".join(f"gs://b/swap/{name}\n" for name in names))
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(bucket), str(bucket / "real"), str(outside)])
    try:
        time.sleep(0.2)
        op = wait_done(client, submit(client, ["gs://b/in.csv"], {"score_threshold": "0"}).json()["name"], 120)
    finally:
        swapper.kill()
        swapper.wait()
    folder = output_folder(data_dir, op)
    tops = [line["annotations"][0]["display_name"] for line in read_jsonl(folder, "image_classification_*.jsonl")]
    codes = {line["error"]["code"] for line in read_jsonl(folder, "errors_*.jsonl")}
    assert "blue" not in tops and len(tops) + sum(1 for _ in read_jsonl(folder, "errors_*.jsonl")) == 600
    assert codes <= {5, 7} and codes, f"errors {codes}: the swap must race some reads, and fail them rightly"
