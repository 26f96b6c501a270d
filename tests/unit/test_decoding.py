"""Decoder processes writing into shared-memory batches, and the executor around them."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from batchline.config import Settings
from batchline.errors import DeadlineExceeded
from batchline.executor.decoding import DecodePool, DecodeTask, SharedBatches
from batchline.executor.inputs import Input
from batchline.executor.local import LocalExecutor, PipelineConfig, ShardBuffer
from batchline.models.loaded import LoadedModel
from batchline.models.repository import ModelRepository
from batchline.storage import Storage
from tests.support import make_color_model


def png(colour: tuple[int, int, int], size: tuple[int, int] = (20, 10)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    models = ModelRepository(tmp_path_factory.mktemp("models"))
    stored = models.import_folder(make_color_model(tmp_path_factory.mktemp("colors")))
    return LoadedModel.load(stored, threads=1)


@pytest.fixture(scope="module")
def pool() -> DecodePool:
    decoders = DecodePool(2)
    yield decoders
    decoders.close()


def task(model: LoadedModel, batches: SharedBatches, work: list, data_dir: Path = Path("data")) -> DecodeTask:
    """A decoding task of (slot, source) pairs: images, one item each (ref None)."""
    settings = Settings(data_dir=data_dir).model_dump_json()
    items = [(slot, source, None) for slot, source in work]
    return DecodeTask(model.stored.manifest.model_dump_json(), settings, batches.ref, items)


def test_decoders_write_each_input_into_its_row_and_return_its_facts(
    model: LoadedModel, pool: DecodePool, tmp_path: Path
) -> None:
    (tmp_path / "buckets" / "b").mkdir(parents=True)
    (tmp_path / "buckets" / "b" / "blue.png").write_bytes(png((0, 0, 255), (5, 40)))
    (tmp_path / "buckets" / "b" / "secret.png").symlink_to(Path(__file__))  # a link out of the bucket
    shape, dtype = model.problem.preprocessor.layout
    with SharedBatches(2, 3, shape, dtype) as batches:
        work = [((1, 2), png((255, 0, 0))), ((0, 0), b"not an image"), ((1, 0), "gs://b/blue.png")]
        work += [((0, 1), "gs://b/secret.png"), ((0, 2), "gs://b/none.png")]
        red, broken, blue, secret, missing = pool.submit(task(model, batches, work, tmp_path)).result(30)
        assert (red.width, red.height, blue.width, blue.height) == (20, 10, 5, 40)
        assert "cannot be decoded" in broken.message and broken.code == 3
        assert secret.code == 7 and "outside bucket gs://b" in secret.message
        assert missing.code == 5 and missing.message == "gs://b/none.png does not exist"
        # The colour model's input is the image scaled to 0..1: red in channel 0, blue in channel 2.
        assert batches.array[1, 2, 0].mean() == pytest.approx(1.0) and batches.array[1, 2, 2].max() == 0
        assert batches.array[1, 0, 2].mean() == pytest.approx(1.0) and batches.array[1, 0, 0].max() == 0


def test_a_task_whose_decoder_dies_runs_again_on_new_decoders_and_fails_only_if_they_die_too(
    model: LoadedModel,
) -> None:
    decoders = DecodePool(1)
    try:
        shape, dtype = model.problem.preprocessor.layout
        slow = png((0, 255, 0), (1024, 768))  # about 20 ms a decode: 50 of them outlast a few kills
        with SharedBatches(1, 50, shape, dtype) as batches:
            green = task(model, batches, [((0, 0), png((0, 255, 0)))])
            many = task(model, batches, [((0, row), slow) for row in range(50)])
            decoders.submit(green).result(30)
            _kill_decoders(decoders)
            [facts] = decoders.submit(green).result(30)  # the broken pool is replaced, the task run again
            assert facts.width == 20
            stop = threading.Event()
            killer = threading.Thread(target=_keep_killing, args=(decoders, stop))
            killer.start()
            try:
                with pytest.raises(BrokenProcessPool):
                    decoders.submit(many).result(60)
            finally:
                stop.set()
                killer.join()
            [facts] = decoders.submit(green).result(30)
            assert facts.width == 20
    finally:
        decoders.close()


def _keep_killing(decoders: DecodePool, stop: threading.Event) -> None:
    while not stop.wait(0.05):
        _kill_decoders(decoders)


def test_a_hung_decoder_fails_its_task_alone_and_is_replaced(model: LoadedModel) -> None:
    """A decoder stuck in a read (here: stopped) is killed by `recycle`: its task fails with the error given, the
    other task in flight runs again on the new decoders, and the pool goes on."""
    decoders = DecodePool(1)
    try:
        shape, dtype = model.problem.preprocessor.layout
        with SharedBatches(1, 2, shape, dtype) as batches:
            red, blue = (task(model, batches, [((0, row), png(colour))]) for row, colour in enumerate(RED_BLUE))
            decoders.submit(red).result(30)
            for process in list(decoders._pool._processes.values()):
                os.kill(process.pid, signal.SIGSTOP)
            stuck, waiting = decoders.submit(red), decoders.submit(blue)
            time.sleep(0.5)
            assert not stuck.done() and not waiting.done()
            decoders.recycle(stuck, DeadlineExceeded("too slow"))
            with pytest.raises(DeadlineExceeded):
                stuck.result(0)
            [facts] = waiting.result(30)
            assert facts.width == 20 and batches.array[0, 1, 2].mean() == pytest.approx(1.0)
            [facts] = decoders.submit(red).result(30)
    finally:
        decoders.close()


RED_BLUE = ((255, 0, 0), (0, 0, 255))


def _kill_decoders(decoders: DecodePool) -> None:
    for process in list(decoders._pool._processes.values()):
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_decoders_end_with_a_server_that_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        from batchline.executor.decoding import DecodePool
        from concurrent.futures import wait
        pool = DecodePool(2)
        wait([pool._pool.submit(int, "1") for _ in range(8)])
        print(" ".join(str(p) for p in pool._pool._processes), flush=True)
        import time; time.sleep(60)
        """
    )
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    children = [int(pid) for pid in server.stdout.readline().split()]
    assert children and all(_alive(pid) for pid in children)
    server.kill()
    server.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children), "decoder processes outlived their server"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_executor_predicts_inline_content_and_passes_known_errors_through(
    model: LoadedModel, pool: DecodePool, tmp_path: Path
) -> None:
    (tmp_path / "buckets" / "b").mkdir(parents=True)
    (tmp_path / "buckets" / "b" / "green.png").write_bytes(png((0, 255, 0)))
    storage = Storage(Settings(data_dir=tmp_path))
    inputs = [
        Input("inline-red", content=png((255, 0, 0))),
        Input("bad-instance", error={"code": 3, "message": "instance has no content"}),
        Input("gs://b/green.png", uri="gs://b/green.png"),
        Input("inline-garbage", content=b"garbage"),
        Input("gs://b/missing.png", uri="gs://b/missing.png"),
    ] + [Input(f"inline-blue-{i}", content=png((0, 0, 255))) for i in range(7)]
    shards: list[ShardBuffer] = []
    config = PipelineConfig(batch_size=3, io_threads=2, shard_size=5, inference_streams=2)
    params = model.problem.Params(score_threshold=0.5)
    LocalExecutor(model, storage, params, config, pool).run(
        inputs, len(inputs), set(), shards.append, threading.Event()
    )

    assert sorted(s.index for s in shards) == [0, 1, 2]  # two streams may complete them out of order
    results = {item_id: found.labels[0].label for s in shards for _, item_id, found in s.results}
    errors = {item_id: status for s in shards for _, item_id, status in s.errors}
    assert results == {"inline-red": "red", "gs://b/green.png": "green"} | {
        f"inline-blue-{i}": "blue" for i in range(7)
    }
    assert errors["bad-instance"] == {"code": 3, "message": "instance has no content"}
    assert errors["inline-garbage"]["code"] == 3 and "cannot be decoded" in errors["inline-garbage"]["message"]
    assert errors["gs://b/missing.png"]["code"] == 5
    assert np.all([len(s.results) + len(s.errors) == s.expected for s in shards])


def test_every_input_lands_once_in_a_complete_shard_when_streams_race(
    model: LoadedModel, pool: DecodePool, tmp_path: Path
) -> None:
    colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
    inputs, expected = [], {}
    for i in range(240):
        name = list(colours)[i % 3]
        if i % 11 == 0:  # failures scattered across batches and shards, decoded and known
            known = {"code": 3, "message": "instance has no content"}
            inputs.append(Input(f"bad-{i}", content=b"not an image") if i % 2 else Input(f"bad-{i}", error=known))
            expected[f"bad-{i}"] = None
        else:
            inputs.append(Input(f"{name}-{i}", content=png(colours[name])))
            expected[f"{name}-{i}"] = name
    shards: list[ShardBuffer] = []
    config = PipelineConfig(batch_size=4, io_threads=3, shard_size=7, inference_streams=3)
    params = model.problem.Params(score_threshold=0.5)
    LocalExecutor(model, Storage(Settings(data_dir=tmp_path)), params, config, pool).run(
        inputs, len(inputs), set(), shards.append, threading.Event()
    )

    assert sorted(s.index for s in shards) == list(range(35))  # 240 inputs in shards of 7
    seen = [item_id for s in shards for _, item_id, _ in [*s.results, *s.errors]]
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
    for shard in shards:
        assert {index // 7 for index, _, _ in [*shard.results, *shard.errors]} == {shard.index}
        assert len(shard.results) + len(shard.errors) == shard.expected
    got = {item_id: found.labels[0].label for s in shards for _, item_id, found in s.results}
    assert got == {item_id: name for item_id, name in expected.items() if name is not None}
