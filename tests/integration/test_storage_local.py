"""Local storage on a real file system: what batchline may read, and whole-file publishing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from batchline.config import Settings
from batchline.errors import BatchlineError, InvalidArgument, NotFound, PermissionDenied
from batchline.storage import Storage
from tests.support import SWAPPER


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
    return Storage(Settings(data_dir=roots["data"], read_roots=[roots["allowed"]]))


# ------------------------------------------------------------------------------------------------ confinement


def test_paths_inside_the_buckets_and_read_roots_are_readable(storage: Storage, roots: dict[str, Path]) -> None:
    assert storage.read(f"file://{roots['allowed'] / 'secret.txt'}") == b"allowed bytes"
    assert storage.read(str(roots["allowed"] / "secret.txt")) == b"allowed bytes"
    assert storage.read(str(roots["bucket"] / "secret.txt")) == b"bucket bytes"
    assert storage.read("gs://b/secret.txt") == b"bucket bytes"
    # a path that wanders but ends inside is fine
    assert storage.read(str(roots["allowed"] / ".." / "allowed" / "secret.txt")) == b"allowed bytes"


def test_read_roots_come_from_the_environment_separated_by_colons(
    roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCHLINE_READ_ROOTS", f"{roots['allowed']}{os.pathsep}{roots['outside']}")
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
    assert "BATCHLINE_READ_ROOTS" in raised.value.message
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


# ------------------------------------------------------------------------------ read roots, write roots, files


@pytest.fixture
def writable(roots: dict[str, Path], tmp_path: Path) -> Storage:
    (tmp_path / "results").mkdir()
    return Storage(Settings(data_dir=roots["data"], read_roots=[roots["allowed"]], write_roots=[tmp_path / "results"]))


def test_read_roots_are_never_written(writable: Storage, roots: dict[str, Path]) -> None:
    for uri in (f"{roots['allowed']}/out/x.jsonl", f"file://{roots['allowed']}/out/x.jsonl"):
        with pytest.raises(PermissionDenied) as raised:
            writable.publish(uri, b"x")
        assert "BATCHLINE_WRITE_ROOTS" in raised.value.message
        with pytest.raises(PermissionDenied):
            writable.check_output_prefix(uri)
    assert not (roots["allowed"] / "out").exists()


def test_write_roots_take_outputs_and_read_them_back(writable: Storage, tmp_path: Path) -> None:
    uri = f"{tmp_path}/results/run/a.jsonl"
    writable.check_output_prefix(f"{tmp_path}/results/run/")
    writable.publish(uri, b"A\n")
    assert writable.read(uri) == b"A\n"
    assert writable.list_files(f"{tmp_path}/results/run") == [uri]


def test_a_local_output_path_never_makes_a_bucket(writable: Storage, roots: dict[str, Path]) -> None:
    buckets = roots["data"] / "buckets"
    for uri in (f"{buckets}/newbucket/out/", f"file://{buckets}/newbucket/out/", "gs://newbucket/out/"):
        with pytest.raises(NotFound):
            writable.check_output_prefix(uri)
    with pytest.raises(NotFound):
        writable.publish(f"{buckets}/newbucket/x.jsonl", b"x")
    assert sorted(p.name for p in buckets.iterdir()) == ["b"]
    writable.check_output_prefix(f"{buckets}/b/out/")  # an existing bucket, by its local path: fine
    assert (roots["bucket"] / "out").is_dir()


def test_a_fifo_is_refused_at_once_and_never_read(storage: Storage, roots: dict[str, Path]) -> None:
    os.mkfifo(roots["bucket"] / "pipe.jpg")
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: _raised(outcome, storage.read, "gs://b/pipe.jpg"), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert isinstance(outcome[0], InvalidArgument) and "not a regular file" in outcome[0].message


def test_a_folder_is_not_an_object(storage: Storage, roots: dict[str, Path]) -> None:
    (roots["bucket"] / "folder.jpg").mkdir()
    with pytest.raises(NotFound):
        storage.read("gs://b/folder.jpg")


def test_a_name_too_long_for_the_file_system_is_the_users_invalid_argument(
    storage: Storage, roots: dict[str, Path]
) -> None:
    uri = f"gs://b/{'n' * 300}.jpg"
    with pytest.raises(InvalidArgument) as raised:
        storage.read(uri)
    assert uri in raised.value.message and str(roots["data"]) not in raised.value.message
    with pytest.raises(InvalidArgument):
        storage.check_output_prefix(f"gs://b/{'n' * 300}/")


def test_an_output_prefix_through_a_file_is_invalid_argument(storage: Storage, roots: dict[str, Path]) -> None:
    (roots["bucket"] / "taken").write_text("a file")
    for uri in ("gs://b/taken/", "gs://b/taken/deeper/"):
        with pytest.raises(InvalidArgument) as raised:
            storage.check_output_prefix(uri)
        assert uri in raised.value.message and str(roots["data"]) not in raised.value.message


def test_messages_name_the_users_uri_never_the_servers_paths(storage: Storage, roots: dict[str, Path]) -> None:
    (roots["bucket"] / "link.txt").symlink_to(roots["outside"] / "secret.txt")
    for uri in ("gs://nobucket/x.jpg", "gs://b/link.txt", "gs://b/missing.jpg", "/etc/passwd", "gs://b/../x"):
        with pytest.raises(BatchlineError) as raised:
            storage.read(uri)
        assert str(roots["data"]) not in raised.value.message, raised.value.message
    with pytest.raises(NotFound) as raised:
        storage.publish("gs://nobucket/x.jsonl", b"x")
    assert str(roots["data"]) not in raised.value.message


def test_a_folder_swapped_for_a_link_while_read_never_lets_outside_bytes_through(
    storage: Storage, roots: dict[str, Path]
) -> None:
    """Another process swaps gs://b/swap between a real folder and a link to outside as fast as it can; of 3,000
    reads none returns the outside file, and each failure is NOT_FOUND or PERMISSION_DENIED. (Checking the path
    and then opening it let 176 of 3,000 through.)"""
    inside, outside = roots["bucket"] / "real", roots["outside"]
    inside.mkdir()
    (inside / "secret.txt").write_bytes(b"bucket bytes")
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(roots["bucket"]), str(inside), str(outside)])
    try:
        time.sleep(0.2)
        results: dict[str, int] = {}
        for _ in range(3000):
            try:
                outcome = storage.read("gs://b/swap/secret.txt").decode()
            except BatchlineError as exc:
                outcome = exc.status
            results[outcome] = results.get(outcome, 0) + 1
    finally:
        swapper.kill()
        swapper.wait()
    assert "outside bytes" not in results, results
    assert set(results) <= {"bucket bytes", "NOT_FOUND", "PERMISSION_DENIED"}, results
    assert results.get("PERMISSION_DENIED"), f"the swap never raced a read: {results}"


def _raised(into: list[BaseException], call, *args) -> None:
    try:
        call(*args)
    except BaseException as exc:  # noqa: BLE001 - the test looks at it
        into.append(exc)
