"""The contract every output layout keeps: staged shards commit once, and finalize publishes the same files
however often it runs, after a crash half way too.

Each test compares the whole published folder (names and bytes) with the folder the layout publishes from the
committed shards alone, staged and finalized once in a fresh bucket, and checks that every committed input is in it
exactly once and nothing of a worker that lost its lease is."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from batchline.config import Settings
from batchline.domain.jobs import ShardRecord
from batchline.domain.predictions import Classification, Label
from batchline.storage import Storage
from batchline.writers.automl import AutomlWriter
from batchline.writers.indexed import IndexedJsonWriter
from batchline.writers.staged import STAGING, Failure, Result, ShardWriter
from batchline.writers.vertex import VertexWriter
from tests.support import IdLines

OUTPUT = "gs://b/out/prediction-m-2026-01-01T00:00:00.000Z"
FOUND = Classification((Label("a", 0.5),))
BAD = {"code": 3, "message": "bad input"}
AS_ID = IdLines()
LAYOUTS: dict[str, Callable[[Storage], ShardWriter]] = {
    "automl": lambda storage: AutomlWriter(storage, OUTPUT, AS_ID, "image_classification"),
    "vertex": lambda storage: VertexWriter(storage, OUTPUT, AS_ID),
    "automl-video": lambda storage: IndexedJsonWriter(
        storage, OUTPUT, AS_ID, "video_classification.csv", "video_classification"
    ),
}
Stage = tuple[int, str, list[Result], list[Failure]]


def _id(name: str) -> str:
    """An input id every layout takes: a video input's CSV row (path, start, end)."""
    return f"gs://b/{name}.mp4,0,inf"


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return _storage(tmp_path / "data")


def _storage(data: Path) -> Storage:
    (data / "buckets" / "b").mkdir(parents=True)
    return Storage(Settings(data_dir=data))


def _published(data: Path) -> dict[str, bytes]:
    """Every file of the output folder, by name, and whether anything else (a folder: staging) is left there."""
    folder = data / "buckets" / "b" / OUTPUT.removeprefix("gs://b/")
    return {p.name: p.read_bytes() if p.is_file() else b"<folder>" for p in folder.iterdir()}


def _reference(layout: str, stages: list[Stage], committed: list[ShardRecord], tmp_path: Path) -> dict[str, bytes]:
    """The folder the committed shards make, staged and finalized once, in a fresh bucket."""
    writer = LAYOUTS[layout](_storage(tmp_path / "reference"))
    for stage in stages:
        writer.stage(*stage)
    writer.finalize(committed)
    return _published(tmp_path / "reference")


def _check_once(published: dict[str, bytes], ids: list[str], absent: list[str]) -> None:
    text = b"".join(published.values()).decode()
    assert STAGING not in published
    assert {i: text.count(i) for i in ids} == dict.fromkeys(ids, 1)
    assert not [i for i in absent if i in text]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_committed_owners_shard_is_published_once_and_finalize_repeats(
    layout: str, storage: Storage, tmp_path: Path
) -> None:
    writer = LAYOUTS[layout](storage)
    owners: list[Stage] = [
        (0, "owner", [(0, _id("r0"), FOUND)], [(1, _id("e0"), BAD)]),
        (1, "owner", [(2, _id("r1"), FOUND)], []),
    ]
    stale: list[Result] = [(0, _id("stale-r"), FOUND)]
    writer.stage(0, "lost", stale, [(1, _id("stale-e"), BAD)])  # lost its lease before the owner staged
    for stage in owners:
        writer.stage(*stage)
    writer.stage(0, "late", stale, [(1, _id("stale-e"), BAD)])  # lost its lease, still running after the owner
    committed = [ShardRecord(0, 1, 1, "owner"), ShardRecord(1, 1, 0, "owner")]

    writer.finalize(committed)
    first = _published(tmp_path / "data")
    writer.finalize(committed)

    assert _published(tmp_path / "data") == first == _reference(layout, owners, committed, tmp_path)
    _check_once(first, [_id("r0"), _id("e0"), _id("r1")], absent=["stale"])


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_finalize_cut_short_is_finished_by_the_next(layout: str, storage: Storage, tmp_path: Path) -> None:
    writer = LAYOUTS[layout](storage)
    stages: list[Stage] = [(index, "owner", [(index, _id(f"r{index}"), FOUND)], []) for index in range(3)]
    for stage in stages:
        writer.stage(*stage)
    committed = [ShardRecord(i, 1, 0, "owner") for i in range(3)]
    reference = LAYOUTS[layout](storage)

    moves = 0
    real_move = storage.move

    def crash_after_one(src: str, dst: str) -> None:
        nonlocal moves
        if moves == 1:
            raise OSError("the server died here")
        moves += 1
        real_move(src, dst)

    storage.move = crash_after_one  # type: ignore[method-assign]
    with pytest.raises(OSError):
        writer.finalize(committed)
    storage.move = real_move  # type: ignore[method-assign]
    assert moves == 1
    reference.finalize(committed)

    published = _published(tmp_path / "data")
    assert published == _reference(layout, stages, committed, tmp_path)
    _check_once(published, [_id(f"r{i}") for i in range(3)], absent=[])
