"""What a request must never reach through storage URIs: the data dir's own files, trees behind links, NULs."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchline.config import Settings
from batchline.errors import InvalidArgument, PermissionDenied
from batchline.storage import Storage


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    (tmp_path / "data" / "buckets" / "b").mkdir(parents=True)
    return Storage(Settings(data_dir=tmp_path / "data"))


def test_the_job_database_and_models_are_not_inputs(storage: Storage, tmp_path: Path) -> None:
    (tmp_path / "data" / "batchline.db").write_text("secret rows")
    (tmp_path / "data" / "models").mkdir()
    for uri in (
        str(tmp_path / "data" / "batchline.db"),
        f"file://{tmp_path}/data/models/",
        "gs://b/../../batchline.db",
    ):
        with pytest.raises(PermissionDenied):
            storage.read(uri)
    with pytest.raises(PermissionDenied):
        storage.check_output_prefix(f"file://{tmp_path}/data/models/out/")


def test_a_linked_folder_is_never_deleted_through_the_link(storage: Storage, tmp_path: Path) -> None:
    precious = tmp_path / "data" / "buckets" / "b" / "keep"
    precious.mkdir()
    (precious / "file.txt").write_text("keep me")
    (tmp_path / "data" / "buckets" / "b" / "out").mkdir()
    (tmp_path / "data" / "buckets" / "b" / "out" / ".staging").symlink_to(precious)
    with pytest.raises(PermissionDenied, match="symbolic link"):
        storage.delete_tree("gs://b/out/.staging")
    assert (precious / "file.txt").read_text() == "keep me"


def test_nul_characters_are_rejected(storage: Storage) -> None:
    with pytest.raises(InvalidArgument, match="NUL"):
        storage.read("gs://b/a\0b.jpg")
