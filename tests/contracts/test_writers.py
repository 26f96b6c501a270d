"""The contract every output layout keeps: staged shards commit once, and finalize publishes the same files
however often it runs, after a crash half way too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from batchline.config import Settings
from batchline.domain.jobs import ShardRecord
from batchline.domain.predictions import Classification, Label
from batchline.storage import Storage
from batchline.writers.automl import AutomlWriter
from batchline.writers.staged import STAGING, StagedShardWriter
from batchline.writers.vertex import VertexWriter


class _AsId:
    """Lines that are the input's id: what the layout does with them, whatever they say."""

    def result_line(self, input_id, prediction):
        return input_id

    def error_line(self, input_id, status):
        return input_id

    def failure_message(self, input_id, status):
        return input_id


OUTPUT = "gs://b/out/prediction-m-2026-01-01T00:00:00.000Z"
FOUND = Classification((Label("a", 0.5),))
AS_ID = _AsId()
LAYOUTS: dict[str, Callable[[Storage], StagedShardWriter]] = {
    "automl": lambda storage: AutomlWriter(storage, OUTPUT, AS_ID, "image_classification"),
    "vertex": lambda storage: VertexWriter(storage, OUTPUT, AS_ID),
}


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    (tmp_path / "buckets" / "b").mkdir(parents=True)
    return Storage(Settings(data_dir=tmp_path))


def _folder(tmp_path: Path) -> Path:
    return tmp_path / "buckets" / "b" / OUTPUT.removeprefix("gs://b/")


def _published(tmp_path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in _folder(tmp_path).iterdir()}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_committed_owners_shard_is_published_once_and_finalize_repeats(
    layout: str, storage: Storage, tmp_path: Path
) -> None:
    writer = LAYOUTS[layout](storage)
    writer.stage(0, "lost", [(0, "stale result", FOUND)], [(1, "stale error", {})])  # a worker that lost its lease
    writer.stage(0, "owner", [(0, "r0", FOUND)], [(1, "e0", {})])
    writer.stage(1, "owner", [(2, "r1", FOUND)], [])
    committed = [ShardRecord(0, 1, 1, "owner"), ShardRecord(1, 1, 0, "owner")]

    writer.finalize(committed)
    first = _published(tmp_path)
    writer.finalize(committed)

    assert _published(tmp_path) == first
    assert sorted(first.values()) == ["e0\n", "r0\n", "r1\n"] and STAGING not in first


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_finalize_cut_short_is_finished_by_the_next(layout: str, storage: Storage, tmp_path: Path) -> None:
    writer = LAYOUTS[layout](storage)
    for index in range(3):
        writer.stage(index, "owner", [(index, f"r{index}", FOUND)], [])
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
    reference.finalize(committed)

    assert sorted(_published(tmp_path).values()) == ["r0\n", "r1\n", "r2\n"]
    assert len(_published(tmp_path)) == 3
