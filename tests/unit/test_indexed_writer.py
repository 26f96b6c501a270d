"""The AutoML video batch output (CONTRACT 12.4): an index CSV in input order and a JSON file per successful input,
staged per (shard, worker) and published whole by a finalize that may run again."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from batchline.config import Settings
from batchline.domain.jobs import ShardRecord
from batchline.domain.predictions import Classification, Label, Prediction
from batchline.errors import Internal
from batchline.storage import Storage
from batchline.writers.indexed import IndexedJsonWriter, status_cell
from batchline.writers.staged import STAGING, Failure, Result

OUTPUT = "gs://b/out/prediction-m-2026-01-01T00:00:00.000Z"


class _Labels:
    def result_json(self, prediction: Prediction) -> str:
        assert isinstance(prediction, Classification)
        return json.dumps([{"display_name": label.label} for label in prediction.labels])

    def failure_message(self, input_id: str, status: dict) -> str:
        return f"{input_id}: {status['message']}"


def _id(path: str, start: str, end: str) -> str:
    """A video input's id as the surface makes it: its three fields as written, as one CSV row."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([path, start, end])
    return out.getvalue()


def _found(label: str) -> Classification:
    return Classification((Label(label, 0.5),))


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    (tmp_path / "buckets" / "b").mkdir(parents=True)
    return Storage(Settings(data_dir=tmp_path))


def _writer(storage: Storage, index: str = "video_classification.csv", stem: str = "video_classification"):
    return IndexedJsonWriter(storage, OUTPUT, _Labels(), index, stem)


def _published(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "buckets" / "b" / OUTPUT.removeprefix("gs://b/")
    return {p.name: p.read_text() if p.is_file() else "<folder>" for p in folder.iterdir()}


# Three shards of two inputs: errors and results interleaved within a shard, one shard that failed whole.
SHARDS: list[tuple[int, list[Result], list[Failure]]] = [
    (
        0,
        [(1, _id("gs://b/my video, take 2.mp4", "10", "40"), _found("cartwheel"))],
        [(0, _id("gs://b/a.mp4", "0", "inf"), {"code": 3, "message": "end 0 is not after start 0, at 0s"})],
    ),
    (
        1,
        [],
        [
            (2, _id("gs://b/c.avi", " 0.0", " 5.566667"), {"code": 5, "message": "gs://b/c.avi does not exist"}),
            (3, _id("gs://b/d.mov", "0", "inf"), {"code": 4, "message": "reading took over 60 s"}),
        ],
    ),
    (
        2,
        [(4, _id("gs://b/e.mp4", "1.5", "inf"), _found("jump")), (5, _id('gs://b/"f".mp4', "0", "2"), _found("x"))],
        [],
    ),
]
COMMITTED = [ShardRecord(2, 2, 0, "owner"), ShardRecord(0, 1, 1, "owner"), ShardRecord(1, 0, 2, "owner")]
INDEX = (
    'gs://b/a.mp4,0,inf,,"INVALID_ARGUMENT: end 0 is not after start 0, at 0s"\n'
    '"gs://b/my video, take 2.mp4",10,40,video_classification_2.json,OK\n'
    "gs://b/c.avi, 0.0, 5.566667,,NOT_FOUND: gs://b/c.avi does not exist\n"
    "gs://b/d.mov,0,inf,,DEADLINE_EXCEEDED: reading took over 60 s\n"
    "gs://b/e.mp4,1.5,inf,video_classification_5.json,OK\n"
    '"gs://b/""f"".mp4",0,2,video_classification_6.json,OK\n'
)
FILES = {
    "video_classification.csv": INDEX,
    "video_classification_2.json": '[{"display_name": "cartwheel"}]',
    "video_classification_5.json": '[{"display_name": "jump"}]',
    "video_classification_6.json": '[{"display_name": "x"}]',
}


def _stage_all(writer: IndexedJsonWriter, owner: str = "owner") -> None:
    for index, results, errors in reversed(SHARDS):  # shards commit in any order
        writer.stage(index, owner, results, errors)


def test_the_index_lists_every_input_in_input_order_and_a_json_file_per_success(
    storage: Storage, tmp_path: Path
) -> None:
    writer = _writer(storage)
    _stage_all(writer)

    writer.finalize(COMMITTED)

    assert _published(tmp_path) == FILES  # no JSON for failed inputs, no errors file, no staging left


def test_object_tracking_files_keep_the_documented_spelling(storage: Storage, tmp_path: Path) -> None:
    writer = _writer(storage, "video_object_tracking.csv", "video_object_trackinng")
    _stage_all(writer)

    writer.finalize(COMMITTED)

    assert sorted(_published(tmp_path)) == [
        "video_object_tracking.csv",
        "video_object_trackinng_2.json",
        "video_object_trackinng_5.json",
        "video_object_trackinng_6.json",
    ]
    assert "video_object_trackinng_5.json,OK\n" in _published(tmp_path)["video_object_tracking.csv"]


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (1, "CANCELLED"),
        (3, "INVALID_ARGUMENT"),
        (4, "DEADLINE_EXCEEDED"),
        (5, "NOT_FOUND"),
        (7, "PERMISSION_DENIED"),
        (8, "RESOURCE_EXHAUSTED"),
        (9, "FAILED_PRECONDITION"),
        (13, "INTERNAL"),
        (0, "UNKNOWN"),
        (99, "UNKNOWN"),
        ("3", "UNKNOWN"),
    ],
)
def test_status_names_the_google_rpc_code(code: object, name: str) -> None:
    assert status_cell({"code": code, "message": "why"}) == f"{name}: why"


def test_finalize_twice_publishes_the_same_files(storage: Storage, tmp_path: Path) -> None:
    writer = _writer(storage)
    _stage_all(writer)

    writer.finalize(COMMITTED)
    writer.finalize(COMMITTED)

    assert _published(tmp_path) == FILES


def test_a_finalize_that_crashed_after_moving_some_files_is_finished_by_the_next(
    storage: Storage, tmp_path: Path
) -> None:
    writer = _writer(storage)
    _stage_all(writer)
    real_move, moved = storage.move, []

    def crash_after_two(src: str, dst: str) -> None:
        if len(moved) == 2:
            raise OSError("the server died here")
        moved.append(dst)
        real_move(src, dst)

    storage.move = crash_after_two  # type: ignore[method-assign]
    with pytest.raises(OSError):
        writer.finalize(COMMITTED)
    storage.move = real_move  # type: ignore[method-assign]
    assert len(moved) == 2 and "video_classification.csv" not in _published(tmp_path)  # nothing indexed yet

    _writer(storage).finalize(COMMITTED)

    assert _published(tmp_path) == FILES


def test_a_finalize_that_crashed_removing_staging_is_finished_by_the_next(storage: Storage, tmp_path: Path) -> None:
    writer = _writer(storage)
    _stage_all(writer)
    staging = tmp_path / "buckets" / "b" / OUTPUT.removeprefix("gs://b/") / STAGING
    real_delete = storage.delete_tree

    def crash_half_way(uri: str) -> None:  # an object store deletes object by object
        next(staging.glob("shard-000001.*.index.csv")).unlink()
        raise OSError("the server died here")

    storage.delete_tree = crash_half_way  # type: ignore[method-assign]
    with pytest.raises(OSError):
        writer.finalize(COMMITTED)
    storage.delete_tree = real_delete  # type: ignore[method-assign]

    writer.finalize(COMMITTED)

    assert _published(tmp_path) == FILES


def test_a_shard_staged_by_a_worker_that_lost_its_lease_is_never_published(storage: Storage, tmp_path: Path) -> None:
    writer = _writer(storage)
    stale = [(0, _id("gs://b/stale.mp4", "0", "inf"), _found("stale")), (1, _id("gs://b/s.mp4", "0", "1"), _found("s"))]
    writer.stage(0, "lost", stale, [])  # before its successor staged the shard
    _stage_all(writer)
    writer.stage(0, "late", stale, [])  # and after: it has not noticed yet

    writer.finalize(COMMITTED)

    assert _published(tmp_path) == FILES


def test_finalize_refuses_to_publish_an_index_without_a_committed_shard(storage: Storage, tmp_path: Path) -> None:
    writer = _writer(storage)
    _stage_all(writer)

    with pytest.raises(Internal):
        writer.finalize([*COMMITTED, ShardRecord(3, 1, 0, "owner")])  # committed, but its files are gone
    with pytest.raises(Internal):
        writer.finalize([ShardRecord(0, 2, 0, "owner")])  # it staged one success and one failure

    assert "video_classification.csv" not in _published(tmp_path)


def test_a_job_with_no_committed_shard_publishes_an_empty_index(storage: Storage, tmp_path: Path) -> None:
    _writer(storage).finalize([])

    assert _published(tmp_path) == {"video_classification.csv": ""}


def test_an_input_id_that_is_not_a_video_row_is_refused(storage: Storage) -> None:
    with pytest.raises(ValueError, match="path, start and end"):
        _writer(storage).stage(0, "owner", [(0, "gs://b/a.mp4", _found("a"))], [])
