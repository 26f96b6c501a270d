"""Local storage on a real file system: what batchline may read, and whole-file publishing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from batchline.config import Settings
from batchline.errors import BatchlineError, InvalidArgument, NotFound, PermissionDenied
from batchline.storage import Storage


@pytest.fixture
def roots(tmp_path: Path) -> dict[str, Path]:
    """A data dir with bucket gs://b, an operator-allowed folder, and folders batchline must not read."""
    folders = {
        "data": tmp_path / "data",
        "bucket": tmp_path / "data" / "buckets" / "b",
        "allowed": tmp_path / "allowed",
        "sibling": tmp_path / "allowed-not",  # shares a string prefix with an allowed root
        "outside": tmp_path / "outside",
    }
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for name in ("bucket", "allowed", "sibling", "outside"):
        (folders[name] / "secret.txt").write_bytes(f"{name} bytes".encode())
    return folders


@pytest.fixture
def storage(roots: dict[str, Path]) -> Storage:
    return Storage(Settings(data_dir=roots["data"], allowed_roots=[roots["allowed"]]))


# ------------------------------------------------------------------------------------------------ confinement


def test_paths_inside_the_data_dir_and_allowed_roots_are_readable(storage: Storage, roots: dict[str, Path]) -> None:
    assert storage.read(f"file://{roots['allowed'] / 'secret.txt'}") == b"allowed bytes"
    assert storage.read(str(roots["allowed"] / "secret.txt")) == b"allowed bytes"
    assert storage.read(str(roots["bucket"] / "secret.txt")) == b"bucket bytes"
    assert storage.read("gs://b/secret.txt") == b"bucket bytes"
    # a path that wanders but ends inside is fine
    assert storage.read(str(roots["allowed"] / ".." / "allowed" / "secret.txt")) == b"allowed bytes"


def test_allowed_roots_come_from_the_environment_separated_by_colons(
    roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCHLINE_ALLOWED_ROOTS", f"{roots['allowed']}{os.pathsep}{roots['outside']}")
    storage = Storage(Settings(data_dir=roots["data"]))
    assert storage.read(str(roots["outside"] / "secret.txt")) == b"outside bytes"
    with pytest.raises(PermissionDenied):
        storage.read(str(roots["sibling"] / "secret.txt"))


@pytest.mark.parametrize(
    "uri",
    [
        "file://{outside}/secret.txt",
        "{outside}/secret.txt",
        "file://{sibling}/secret.txt",  # /x/allowed-not is not inside /x/allowed
        "{sibling}/secret.txt",
        "{allowed}/../outside/secret.txt",
        "{data}/../outside/secret.txt",
        "file:///etc/passwd",
        "/etc/passwd",
    ],
)
def test_local_paths_outside_are_permission_denied(storage: Storage, roots: dict[str, Path], uri: str) -> None:
    uri = uri.format(**roots)
    with pytest.raises(PermissionDenied) as raised:
        storage.read(uri)
    assert "BATCHLINE_ALLOWED_ROOTS" in raised.value.message
    with pytest.raises(PermissionDenied):
        storage.publish(uri, b"x")
    assert (roots["outside"] / "secret.txt").read_bytes() == b"outside bytes"


def test_a_relative_path_outside_is_denied(storage: Storage, roots: dict[str, Path], monkeypatch) -> None:
    monkeypatch.chdir(roots["outside"])
    with pytest.raises(PermissionDenied):
        storage.read("secret.txt")
    with pytest.raises(PermissionDenied):
        storage.read("../allowed-not/secret.txt")
    monkeypatch.chdir(roots["allowed"])
    assert storage.read("secret.txt") == b"allowed bytes"


@pytest.mark.parametrize("uri", ["gs://b/../outside.txt", "gs://b/a/../../x", "gs://b/..", "gs://b/x/../../../etc"])
def test_bucket_keys_climbing_out_are_denied(storage: Storage, uri: str) -> None:
    with pytest.raises(PermissionDenied):
        storage.read(uri)
    with pytest.raises(PermissionDenied):
        storage.publish(uri, b"x")


@pytest.mark.parametrize("uri", ["gs://../data/secret.txt", "gs://./b/secret.txt", "gs:///secret.txt"])
def test_bad_bucket_names_are_rejected(storage: Storage, uri: str) -> None:
    with pytest.raises(InvalidArgument):
        storage.read(uri)


def test_a_symlink_in_a_bucket_pointing_outside_is_denied(storage: Storage, roots: dict[str, Path]) -> None:
    (roots["bucket"] / "link.txt").symlink_to(roots["outside"] / "secret.txt")
    (roots["bucket"] / "linkdir").symlink_to(roots["outside"], target_is_directory=True)
    (roots["bucket"] / "inner.txt").symlink_to(roots["bucket"] / "secret.txt")  # stays in the bucket: fine

    for uri in ("gs://b/link.txt", "gs://b/linkdir/secret.txt"):
        with pytest.raises(PermissionDenied):
            storage.read(uri)
    with pytest.raises(PermissionDenied):
        storage.publish("gs://b/linkdir/new.txt", b"x")
    assert not (roots["outside"] / "new.txt").exists()
    assert storage.read("gs://b/inner.txt") == b"bucket bytes"


def test_a_bucket_that_is_a_symlink_to_outside_is_denied(storage: Storage, roots: dict[str, Path]) -> None:
    (roots["data"] / "buckets" / "evil").symlink_to(roots["outside"], target_is_directory=True)
    with pytest.raises(PermissionDenied):
        storage.read("gs://evil/secret.txt")


def test_a_symlink_in_the_data_dir_pointing_outside_is_denied(storage: Storage, roots: dict[str, Path]) -> None:
    (roots["data"] / "escape").symlink_to(roots["outside"], target_is_directory=True)
    with pytest.raises(PermissionDenied):
        storage.read(str(roots["data"] / "escape" / "secret.txt"))
    with pytest.raises(PermissionDenied):
        storage.read(f"file://{roots['data'] / 'escape' / 'secret.txt'}")


def test_missing_bucket_and_missing_object_are_not_found(storage: Storage, roots: dict[str, Path]) -> None:
    with pytest.raises(NotFound) as raised:
        storage.read("gs://nobucket/x.jpg")
    assert "nobucket" in raised.value.message
    with pytest.raises(NotFound):
        storage.publish("gs://nobucket/x.jpg", b"x")  # buckets are made by the operator, not by writes
    with pytest.raises(NotFound):
        storage.read("gs://b/missing.jpg")
    with pytest.raises(NotFound):
        storage.read(str(roots["allowed"] / "missing.jpg"))
    with pytest.raises(NotFound):
        storage.read("gs://b/")  # a folder is not an object
    assert not storage.exists("gs://b/missing.jpg")


def test_reading_over_max_bytes_is_invalid_argument(storage: Storage) -> None:
    with pytest.raises(InvalidArgument):
        storage.read("gs://b/secret.txt", max_bytes=4)
    assert storage.read("gs://b/secret.txt", max_bytes=len(b"bucket bytes")) == b"bucket bytes"


def test_unsupported_schemes_are_invalid_argument(storage: Storage) -> None:
    for uri in ("http://example.com/x.jpg", "ftp://h/x"):
        with pytest.raises(InvalidArgument):
            storage.read(uri)


# --------------------------------------------------------------------------------------------------- writing


def test_publish_exists_list_move_delete_tree(storage: Storage, roots: dict[str, Path]) -> None:
    storage.publish("gs://b/out/run/a.jsonl", b"A\n")
    storage.publish("gs://b/out/run/.staging/s1.jsonl", b"S\n")
    storage.publish("gs://b/out/run/a.jsonl", b"A2\n")  # overwrites

    assert storage.exists("gs://b/out/run/a.jsonl") and storage.exists("gs://b/out/run")
    assert storage.read("gs://b/out/run/a.jsonl") == b"A2\n"
    assert storage.list_files("gs://b/out/run") == ["gs://b/out/run/.staging", "gs://b/out/run/a.jsonl"]
    assert storage.list_files("gs://b/out/run/") == ["gs://b/out/run/.staging", "gs://b/out/run/a.jsonl"]
    assert storage.list_files("gs://b/out/none") == []

    storage.move("gs://b/out/run/.staging/s1.jsonl", "gs://b/out/run/b.jsonl")
    assert storage.read("gs://b/out/run/b.jsonl") == b"S\n"
    assert not storage.exists("gs://b/out/run/.staging/s1.jsonl")

    storage.delete_tree("gs://b/out/run/.staging")
    storage.delete_tree("gs://b/out/run/.staging")  # again: nothing there, no error
    assert storage.list_files("gs://b/out/run") == ["gs://b/out/run/a.jsonl", "gs://b/out/run/b.jsonl"]
    assert sorted(p.name for p in (roots["bucket"] / "out" / "run").iterdir()) == ["a.jsonl", "b.jsonl"]


def test_check_output_prefix_creates_the_folder(storage: Storage, roots: dict[str, Path]) -> None:
    storage.check_output_prefix("gs://b/results/today")
    assert (roots["bucket"] / "results" / "today").is_dir()
    with pytest.raises(PermissionDenied):
        storage.check_output_prefix(str(roots["outside"] / "results"))
    assert not (roots["outside"] / "results").exists()


def test_readers_never_see_a_partly_published_file(storage: Storage, roots: dict[str, Path]) -> None:
    """A reader polling the target sees nothing, or one of the whole versions: never a prefix of one."""
    versions = [bytes([65 + i]) * (3 * 1024 * 1024) for i in range(3)]  # 3 MB each: a write takes a while
    target = roots["bucket"] / "out" / "big.jsonl"
    seen: list[int] = []
    bad: list[str] = []
    done = threading.Event()

    def read_loop() -> None:
        while not done.is_set():
            try:
                data = target.read_bytes()
            except FileNotFoundError:
                seen.append(-1)
                continue
            if data in versions:
                seen.append(versions.index(data))
            else:
                bad.append(f"{len(data)} bytes, starting {data[:1]!r}")

    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        for round_ in range(6):
            storage.publish("gs://b/out/big.jsonl", versions[round_ % 3])
    finally:
        done.set()
        reader.join()

    assert not bad, f"a reader saw partial files: {bad[:5]}"
    assert target.read_bytes() == versions[5 % 3]
    assert any(i >= 0 for i in seen)
    assert sorted(p.name for p in target.parent.iterdir()) == ["big.jsonl"]  # no *.tmp left behind


def test_a_failed_publish_leaves_neither_a_partial_file_nor_a_tmp(tmp_path: Path, roots: dict[str, Path]) -> None:
    """The write fails half way (the file size limit stands in for a full disk): the old file stays whole."""
    out = roots["bucket"] / "out"
    out.mkdir()
    (out / "shard.jsonl").write_bytes(b"old\n")
    script = textwrap.dedent(
        f"""
        import resource, signal
        from pathlib import Path
        from batchline.config import Settings
        from batchline.storage import Storage

        storage = Storage(Settings(data_dir=Path({str(roots["data"])!r})))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, resource.RLIM_INFINITY))
        for name in ("shard.jsonl", "new.jsonl"):
            try:
                storage.publish("gs://b/out/" + name, b"x" * (4 * 1024 * 1024))
            except OSError as exc:
                print("failed as expected:", exc)
            else:
                raise SystemExit("the write did not fail")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("failed as expected") == 2
    assert (out / "shard.jsonl").read_bytes() == b"old\n"
    assert sorted(p.name for p in out.iterdir()) == ["shard.jsonl"], "a failed publish left files behind"


def test_errors_are_batchline_errors_with_rpc_codes(storage: Storage) -> None:
    """What the executor turns into per-input error lines: each has a google.rpc code."""
    codes = {}
    for uri in ("gs://nobucket/x.jpg", "/etc/passwd", "gs://b/../x", "http://x/y"):
        with pytest.raises(BatchlineError) as raised:
            storage.read(uri)
        codes[uri] = raised.value.code
    assert codes == {"gs://nobucket/x.jpg": 5, "/etc/passwd": 7, "gs://b/../x": 7, "http://x/y": 3}
