"""Decoding in processes, straight into shared-memory batches.

Decoders run in a pool of processes (one per core) that a worker starts once and keeps across jobs, so that no
decoder competes for the GIL of the process that runs the model and feeds the pipeline (with threads, the
decoders of one process top out at about three cores: 1,350 images/s on 16 cores against 3,960 in processes).
Each decoder writes its preprocessed tensor into a row of a batch in shared memory and returns only the small
facts postprocess needs (an image's geometry), so no tensor is pickled and no batch is stacked: the model reads
the rows where the decoders wrote them.
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future, InvalidStateError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from batchline.config import Settings
from batchline.models.manifest import Manifest
from batchline.problems import problem_for
from batchline.problems.base import Preprocessor, Problem, Source
from batchline.storage import Storage

Slot = tuple[int, int]  # (batch, row) in the shared batches
_DECODE_NICENESS = 10
_PARENT_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class BatchesRef:
    """How a decoder finds the batches: the shared-memory block's name and the array laid over it."""

    name: str
    shape: tuple[int, ...]  # (batches, batch_size, *item shape)
    dtype: str


@dataclass(frozen=True)
class DecodeTask:
    """Items for decoders: each goes into its slot, from its input's bytes or from a URI the decoder reads (or, for
    a preprocessor that streams, opens) itself with the job's storage rules, and its ref (which frame)."""

    manifest_json: str  # the model, to build its problem
    storage_json: str  # the settings, to build the storage that reads URIs
    batches: BatchesRef
    work: list[tuple[Slot, bytes | str, Any]]


@dataclass(frozen=True)
class PlanTask:
    """Inputs for a decoder to plan (how many items each holds), from their bytes or URIs, with their args."""

    manifest_json: str
    storage_json: str
    params_json: str  # the job's params, which a plan may depend on (a frame rate)
    work: list[tuple[bytes | str, dict[str, Any]]]


class SharedBatches:
    """`count` batch tensors of `batch_size` inputs each, in one shared-memory block that decoders write into."""

    def __init__(self, count: int, batch_size: int, item_shape: tuple[int, ...], dtype: np.dtype):
        shape = (count, batch_size, *item_shape)
        self._memory = SharedMemory(create=True, size=max(1, math.prod(shape) * np.dtype(dtype).itemsize))
        self.ref = BatchesRef(self._memory.name, shape, np.dtype(dtype).str)
        self.array = np.ndarray(shape, dtype, buffer=self._memory.buf)

    def __enter__(self) -> SharedBatches:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        del self.array
        try:
            self._memory.close()
        except BufferError:  # a view of a batch still lives somewhere: the mapping goes when it does
            pass
        self._memory.unlink()


class DecodePool:
    """Decoder processes, started on first use and kept until `close`.

    A task whose decoder died (a codec crash, the OOM killer, or `recycle`) runs once more on fresh decoders: the
    other inputs in flight when a decoder dies should not fail with the one that killed it."""

    def __init__(self, processes: int):
        self.processes = processes
        self._lock = threading.Lock()
        self._closed = False
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # Spawned, not forked: forking a process that runs ONNX Runtime and server threads copies their locks.
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            self.processes, mp_context=context, initializer=_start_decoder, initargs=(os.getpid(),)
        )
        # All at once, now: a pool that spawns on demand would start decoders (about 0.5 s of imports each)
        # while a job runs, one per task that finds no idle decoder.
        for _ in range(self.processes):
            pool.submit(int)
        return pool

    def submit(self, task: DecodeTask | PlanTask) -> Future:
        """Decode a chunk of items into their slots of the batches, in one task (a task costs about 0.1 ms of
        pickling and hand-offs: as much as a tenth of decoding an image), or plan a few inputs. The future holds,
        per item (or input), its facts (or plan) or the exception that says why it cannot be predicted."""
        outcome: Future = Future()
        self._attempt(task, outcome, retries=1)
        return outcome

    def recycle(self, stuck: Future, error: Exception) -> None:
        """Fail `stuck`, a task that has taken too long (its decoder hangs on a read), and replace every decoder:
        a process stuck in a read cannot be told to stop. The other tasks in flight run again on the new ones."""
        _settle(stuck, exception=error)
        with self._lock:
            # ProcessPoolExecutor has no call to stop one of its processes: kill them, and it breaks.
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.kill()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _attempt(self, task: DecodeTask | PlanTask, outcome: Future, retries: int) -> None:
        with self._lock:
            if self._closed:
                _settle(outcome, exception=BrokenProcessPool("the decoders are shutting down"))
                return
            run = _plan_all if isinstance(task, PlanTask) else _decode_all
            try:
                attempt = self._pool.submit(run, task)
            except (BrokenProcessPool, RuntimeError):  # a decoder died: start afresh
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._start()
                attempt = self._pool.submit(run, task)
        attempt.add_done_callback(functools.partial(self._attempted, task, outcome, retries))

    def _attempted(self, task: DecodeTask | PlanTask, outcome: Future, retries: int, attempt: Future) -> None:
        if outcome.done():  # cancelled, or failed by recycle
            return
        try:
            _settle(outcome, result=attempt.result())
        except (BrokenProcessPool, CancelledError) as exc:  # its decoder died, or its pool was replaced
            if retries:
                self._attempt(task, outcome, retries - 1)
            else:
                _settle(outcome, exception=BrokenProcessPool(str(exc)))
        except BaseException as exc:  # noqa: BLE001 - a bug in the decoder: the task's inputs fail with it
            _settle(outcome, exception=exc)


def _settle(future: Future, result: Any = None, exception: BaseException | None = None) -> None:
    """Complete a future unless it already is (its caller may have cancelled it meanwhile)."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


# -- in the decoder processes
def _start_decoder(parent: int) -> None:
    """Run decoders at a lower priority than the model: when both want a core, the model gets it. A preempted
    ONNX Runtime thread stalls the whole parallel op it is part of; a decoder that waits loses nothing, since the
    window keeps enough decoded ahead. And end with the server, even when it is killed: the pool's own pipes
    would not tell."""
    try:
        os.nice(_DECODE_NICENESS)
    except OSError:  # not allowed: run at the normal priority
        pass
    threading.Thread(target=_exit_with, args=(parent,), name="watch-server", daemon=True).start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_PARENT_CHECK_SECONDS)
    os._exit(0)


@functools.lru_cache(maxsize=8)
def _problem(manifest_json: str) -> Problem:
    return problem_for(Manifest.model_validate_json(manifest_json))


@functools.lru_cache(maxsize=8)
def _storage(settings_json: str) -> Storage:
    return Storage(Settings.model_validate_json(settings_json))


_attached: dict[str, tuple[SharedMemory, np.ndarray]] = {}


def _batches(ref: BatchesRef) -> np.ndarray:
    """The batches of `ref`, attached once; a new job's batches replace the last job's."""
    if ref.name not in _attached:
        for name in list(_attached):
            _attached.pop(name)[0].close()  # the array over it goes with the popped pair
        memory = SharedMemory(ref.name)
        _attached[ref.name] = (memory, np.ndarray(ref.shape, np.dtype(ref.dtype), buffer=memory.buf))
    return _attached[ref.name][1]


def _decode_all(task: DecodeTask) -> list[Any]:
    """Each item's facts, or its exception. Consecutive items of one input (a video's frames) are filled in one
    call, from one read or one open of their source."""
    preprocessor, target = _problem(task.manifest_json).preprocessor, _batches(task.batches)
    storage = _storage(task.storage_json)
    facts: list[Any] = []
    for source, run in itertools.groupby(task.work, key=lambda entry: entry[1]):
        slots, refs = zip(*((slot, ref) for slot, _, ref in run), strict=True)
        try:
            with _opened(preprocessor, storage, source) as data:
                found = preprocessor.fill(data, refs, [target[slot] for slot in slots])
        except Exception as exc:  # these items' error; the others of the task go on
            found = [exc] * len(refs)
        facts.extend(found)
    return facts


def _plan_all(task: PlanTask) -> list[Any]:
    """Each input's plan, or its exception."""
    problem = _problem(task.manifest_json)
    storage, params = _storage(task.storage_json), problem.Params.model_validate_json(task.params_json)
    plans: list[Any] = []
    for source, args in task.work:
        try:
            with _opened(problem.preprocessor, storage, source) as data:
                plans.append(problem.preprocessor.plan(data, args, params))
        except Exception as exc:  # this input's error
            plans.append(exc)
    return plans


@contextlib.contextmanager
def _opened(preprocessor: Preprocessor, storage: Storage, source: bytes | str) -> Iterator[Source]:
    """What a preprocessor reads: whole bytes, or an open, seekable file for one that streams."""
    if not preprocessor.streams:
        yield source if isinstance(source, bytes) else storage.read(source, preprocessor.max_bytes)
    elif isinstance(source, bytes):
        yield io.BytesIO(source)
    else:
        with storage.open(source) as handle:
            yield handle
