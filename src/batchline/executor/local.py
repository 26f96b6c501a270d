"""The local executor: a streaming, bounded pipeline on one machine, in overlapping stages.

    fetch pool   (threads)    hand chunks of inputs to decoders; read those in object stores (many: I/O waits)
    decoders     (processes)  read local inputs, decode + resize + normalise into a shared batch (one per core)
    this thread               gather the outcomes in input order, close batches
    infer threads             run the model, a batch per stream at once          (ONNX Runtime releases the GIL)
                              and turn its outputs into annotations, gathered into shards
    commit thread             publish each complete shard's files + commit it

Each input gets a row of a batch in shared memory when its fetch starts, in input order, and its decoder writes
there; a batch goes to the model when its last row's input is done, its failed inputs' rows closed up. Writing a
shard happens while the model runs the next batches. On CPU each core runs its own batch, single-threaded: ONNX
Runtime wastes less that way than when one batch is split across threads at every op (8-36 % more images per
second on 2 cores, model alone). At most `window` inputs are being fetched, a batch is reused only once the model
is done with it, and a shard's lines are held only until the shard is complete, so memory does not grow with the
inputs.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from batchline.domain.annotations import Annotation
from batchline.errors import BatchlineError, Cancelled, DeadlineExceeded, Internal, describe
from batchline.executor.decoding import DecodePool, DecodeTask, SharedBatches, Slot
from batchline.executor.inputs import Input
from batchline.models.loaded import LoadedModel
from batchline.storage import Storage

Pending = tuple[int, Input, Slot | None]  # input index, the input, and its slot (None: known bad, no row)
Outcome = tuple[int, str, Any, Slot | None]  # input index, ID, its facts from decoding or `Failed`, and its slot
# Inputs per fetch and decoding task, at most. Each task costs hand-offs between threads and processes that wake
# them, and a woken thread takes the core from the model: 16 inputs a task gave 6 % more images/s than 8.
_CHUNK = 16
_COMMIT_BACKLOG = 2  # complete shards waiting to be written, at most, before the pipeline waits for them
_DECODED_BYTES = 512 * 2**20  # inputs in flight take a row each in shared memory; tasks shrink to stay under this


@dataclass(frozen=True)
class Failed:
    """The outcome of an input that cannot be predicted: its google.rpc status."""

    status: dict[str, Any]


@dataclass
class ShardBuffer:
    index: int
    expected: int
    results: list[tuple[int, str, list[Annotation]]] = field(default_factory=list)
    errors: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.results) + len(self.errors) == self.expected


@dataclass
class PipelineConfig:
    batch_size: int
    io_threads: int
    shard_size: int
    inference_streams: int = 1
    read_timeout: float | None = None  # seconds an input's read (and decode) may take before it fails


@dataclass
class _Filling:
    """The decoded inputs of the batch being filled: their rows, and (index, ID, facts) of each."""

    rows: list[int] = field(default_factory=list)
    inputs: list[tuple[int, str, Any]] = field(default_factory=list)


class LocalExecutor:
    def __init__(
        self,
        model: LoadedModel,
        storage: Storage,
        params: dict[str, Any],
        config: PipelineConfig,
        decoders: DecodePool,
    ):
        self.model = model
        self.storage = storage
        self.params = params
        self.config = config
        self.decoders = decoders
        self._shards: _ShardAssembler | None = None  # of the run in progress
        self._manifest_json = model.stored.manifest.model_dump_json()  # how decoders build the problem
        shape, dtype = model.problem.item_layout
        row_bytes = math.prod(shape) * np.dtype(dtype).itemsize
        self._chunk = max(1, min(_CHUNK, _DECODED_BYTES // (2 * decoders.processes * row_bytes)))
        # Inputs in flight: two batches and a read per fetch thread, and at least two tasks per decoder.
        self._window = max(2 * config.batch_size + config.io_threads, 2 * decoders.processes * self._chunk)
        # Enough batches for every input in the window, the batch being filled, and those at the model.
        self._batch_count = math.ceil(self._window / config.batch_size) + config.inference_streams + 2
        self._batches: SharedBatches  # of the run in progress
        self._in_use: list[Future | None]  # per batch, the inference that reads it last

    @property
    def processed(self) -> int:
        """Inputs predicted or failed so far in this run, for the heartbeat's progress."""
        return self._shards.processed if self._shards else 0

    def run(
        self,
        inputs: Iterable[Input],
        total: int,
        skip_shards: set[int],
        on_shard: Callable[[ShardBuffer], None],
        cancelled: threading.Event,
    ) -> None:
        """Predict every input not in a skipped shard; `on_shard` gets each shard once it is complete."""
        size, batch_size = self.config.shard_size, self.config.batch_size
        todo = ((i, item) for i, item in enumerate(inputs) if i // size not in skip_shards)
        shape, dtype = self.model.problem.item_layout
        self._in_use = [None] * self._batch_count
        with (
            SharedBatches(self._batch_count, batch_size, shape, dtype) as self._batches,
            ThreadPoolExecutor(self.config.io_threads, thread_name_prefix="fetch") as fetchers,
            ThreadPoolExecutor(1, thread_name_prefix="commit") as committer,  # outlives infer, which feeds it
            ThreadPoolExecutor(
                self.config.inference_streams,
                thread_name_prefix="infer",
                initializer=_pin_to_next_core,
                initargs=(self._stream_cores(),),
            ) as infer,
        ):
            commits: deque[Future] = deque()
            self._shards = shards = _ShardAssembler(
                size, total, lambda shard: commits.append(committer.submit(on_shard, shard))
            )
            inferring: deque[Future] = deque()

            def submit_batch(batch: int) -> None:
                if filling.rows:  # else every input of it failed
                    inferring.append(self._infer(batch, filling, shards, infer))

            filling, last_slot = _Filling(), None
            for index, item_id, outcome, slot in self._fetched(todo, fetchers, cancelled):
                if isinstance(outcome, Failed):
                    shards.add(errors=[(index, item_id, outcome.status)])
                else:
                    filling.rows.append(slot[1])
                    filling.inputs.append((index, item_id, outcome))
                if slot is not None:
                    last_slot = slot
                    if slot[1] == batch_size - 1:
                        submit_batch(slot[0])
                        filling = _Filling()
                _surface_failures(inferring, commits, _COMMIT_BACKLOG)
            if last_slot is not None and last_slot[1] != batch_size - 1:
                submit_batch(last_slot[0])
            for future in inferring:
                future.result()
            _surface_failures(inferring, commits, 0)

    def _stream_cores(self) -> Iterator[int] | None:
        """On CPU, where each core runs its own single-threaded stream, the cores to pin the streams to, one each: a
        stream that stays on its core keeps its caches warm (1-4 % more images/s on 2 cores, A/B). None where the
        streams and cores do not pair up, or on a GPU."""
        if self.model.runtime.device != "cpu" or not hasattr(os, "sched_setaffinity"):
            return None
        cores = sorted(os.sched_getaffinity(0))
        return iter(cores) if self.config.inference_streams == len(cores) else None

    def _infer(self, batch: int, filling: _Filling, shards: _ShardAssembler, infer: ThreadPoolExecutor) -> Future:
        """Run the model on the decoded rows of a batch, closed up where failed inputs left holes, and turn its
        outputs into annotations on the same thread: a hand-off to another thread per batch would wake that
        thread, which takes a core from the model, as often as batches complete."""
        tensor = self._batches.array[batch]
        rows = filling.rows
        if rows != list(range(len(rows))):
            tensor[: len(rows)] = tensor[rows]
        done = infer.submit(self._predict, tensor[: len(rows)], filling.inputs, shards)
        self._in_use[batch] = done
        return done

    def _predict(self, tensor: np.ndarray, inputs: list[tuple[int, str, Any]], shards: _ShardAssembler) -> None:
        outputs = self.model.runtime.predict_batch(tensor)
        annotations = self.model.problem.postprocess(outputs, [facts for _, _, facts in inputs], self.params)
        shards.add([(index, item_id, found) for (index, item_id, _), found in zip(inputs, annotations, strict=True)])

    def _slot(self, position: int, cancelled: threading.Event) -> Slot:
        """The row of the `position`-th decoded input; the first row of a batch waits until the model is done
        with that batch's last use."""
        batch, row = (position // self.config.batch_size) % self._batch_count, position % self.config.batch_size
        if row == 0 and self._in_use[batch] is not None:
            _outcome(self._in_use[batch], cancelled)  # a failure of that inference surfaces in run()
        return batch, row

    def _fetch(self, chunk: list[Pending]) -> tuple[list[Any], Future | None]:
        """Read a chunk of inputs (fetch pool) and queue their decoding as one task. Returns each input's outcome
        so far: `Failed`, or its place in the decoding task, whose future comes second.

        Inputs on this machine go to the decoder as URIs, which it reads itself; the fetch threads read only
        object stores. A fetch thread is free as soon as the task is queued: it neither waits for a decoder nor
        wakes up again when the decoding is done.
        """
        outcomes: list[Any] = []
        work: list[tuple[Slot, bytes | str]] = []
        for _, item, slot in chunk:
            if item.error is not None:
                outcomes.append(Failed(item.error))
                continue
            try:
                source = self._source(item)
            except Exception as exc:  # noqa: BLE001 - whatever went wrong is this input's error line
                outcomes.append(Failed(_status(exc)))
                continue
            outcomes.append(len(work))
            work.append((slot, source))
        if not work:
            return outcomes, None
        task = DecodeTask(self._manifest_json, self.storage.settings_json, self._batches.ref, work)
        return outcomes, self.decoders.submit(task)

    def _source(self, item: Input) -> bytes | str:
        """The input's bytes, or its URI when the decoder can read it itself."""
        if item.uri is None:
            return item.content or b""
        self.model.problem.check_input(item.uri)
        return item.uri if self.storage.is_on_this_machine(item.uri) else self.storage.read(item.uri)

    def _fetched(
        self, todo: Iterator[tuple[int, Input]], pool: ThreadPoolExecutor, cancelled: threading.Event
    ) -> Iterator[Outcome]:
        """Keep a window of inputs in flight, in chunks; yield their outcomes in input order."""
        in_flight: deque[tuple[list[Pending], Future]] = deque()
        position, queued, exhausted = 0, 0, False
        try:
            while True:
                while not exhausted and queued < self._window:
                    chunk: list[Pending] = []
                    for index, item in itertools.islice(todo, self._chunk):
                        slot = None
                        if item.error is None:  # known bad inputs take no row
                            slot = self._slot(position, cancelled)
                            position += 1
                        chunk.append((index, item, slot))
                    exhausted = len(chunk) < self._chunk
                    if chunk:
                        in_flight.append((chunk, pool.submit(self._fetch, chunk)))
                        queued += len(chunk)
                if not in_flight:
                    return
                chunk, fetch = in_flight[0]
                yield from self._outcomes(chunk, fetch, cancelled, self.config.read_timeout)
                in_flight.popleft()
                queued -= len(chunk)
        finally:
            for _, fetch in in_flight:
                _cancel(fetch)

    def _outcomes(
        self, chunk: list[Pending], fetch: Future, cancelled: threading.Event, timeout: float | None
    ) -> Iterator[Outcome]:
        """The chunk's outcomes, once read and decoded; a read or decode that takes longer than `timeout` fails
        the chunk's inputs (a stuck decoder is replaced; a stuck fetch thread is left to its storage's timeouts)."""
        fetched = _outcome(fetch, cancelled, timeout)
        if isinstance(fetched, BaseException):  # a bug in _fetch, or reads that hang: the whole chunk fails
            outcomes, decoded = [Failed(_status(fetched))] * len(chunk), []
        else:
            outcomes, decoding = fetched
            decoded = _outcome(decoding, cancelled, timeout) if decoding is not None else []
            if isinstance(decoded, DeadlineExceeded):
                self.decoders.recycle(decoding, decoded)
        for (index, item, slot), outcome in zip(chunk, outcomes, strict=True):
            if isinstance(outcome, int):  # its place in the decoding task
                result = decoded if isinstance(decoded, BaseException) else decoded[outcome]
                outcome = Failed(_status(result)) if isinstance(result, BaseException) else result
            yield index, item.id, outcome, slot


class _ShardAssembler:
    """Gathers outcomes, from any thread, into shards and hands each shard to `on_shard` once it is complete: not
    always in shard order, as streams finish batches out of order (output files are numbered at the end)."""

    def __init__(self, size: int, total: int, on_shard: Callable[[ShardBuffer], None]):
        self.size, self.total, self.on_shard = size, total, on_shard
        self.open: dict[int, ShardBuffer] = {}
        self.processed = 0
        self._lock = threading.Lock()

    def add(
        self, results: Sequence[tuple[int, str, list[Annotation]]] = (), errors: Sequence[tuple[int, str, dict]] = ()
    ) -> None:
        with self._lock:
            for entry in results:
                self._buffer(entry[0]).results.append(entry)
            for entry in errors:
                self._buffer(entry[0]).errors.append(entry)
            self.processed += len(results) + len(errors)
            complete = [self.open.pop(key) for key in [k for k, b in self.open.items() if b.complete]]
        for shard in complete:
            shard.results.sort(key=lambda r: r[0])
            shard.errors.sort(key=lambda r: r[0])
            self.on_shard(shard)

    def _buffer(self, index: int) -> ShardBuffer:
        key = index // self.size
        if key not in self.open:
            self.open[key] = ShardBuffer(key, min(self.size, self.total - key * self.size))
        return self.open[key]


def _pin_to_next_core(cores: Iterator[int] | None) -> None:
    """Pin the calling thread to the next of `cores`; nothing if None."""
    if cores is not None:
        os.sched_setaffinity(0, {next(cores)})


def _surface_failures(inferring: deque[Future], commits: deque[Future], backlog: int) -> None:
    """Re-raise the failure of a finished inference (with its postprocessing) or shard commit, in the order they
    were started; wait while more than `backlog` complete shards are still being written."""
    while inferring and inferring[0].done():
        inferring.popleft().result()
    while len(commits) > backlog or (commits and commits[0].done()):
        commits.popleft().result()


def _outcome(future: Future, cancelled: threading.Event, timeout: float | None = None) -> Any:
    """The future's result or the exception it raised, or DeadlineExceeded once `timeout` has passed; Cancelled as
    soon as the job is (a slow read must not hold a cancel up)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if cancelled.is_set():
            raise Cancelled("cancelled by the user")
        if deadline is not None and time.monotonic() > deadline:
            return DeadlineExceeded(
                f"reading and decoding this input took over {timeout:g} s (BATCHLINE_READ_TIMEOUT_SECONDS); "
                "check that its storage answers, then run it again"
            )
        try:
            exc = future.exception(timeout=0.2)
        except TimeoutError:
            continue
        return exc if exc is not None else future.result()


def _cancel(fetch: Future) -> None:
    """Cancel a fetch, and the decoding it queued if it got that far."""
    if fetch.cancel() or not fetch.done() or fetch.exception() is not None:
        return
    _, decoding = fetch.result()
    if decoding is not None:
        decoding.cancel()


def _status(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, BatchlineError):
        return exc.to_status()
    if isinstance(exc, BrokenProcessPool):
        return Internal("a decoder process died while this input was being decoded; try it again").to_status()
    return Internal(f"unexpected error while reading this input: {describe(exc)}").to_status()
