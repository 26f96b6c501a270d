"""The local executor: a streaming, bounded pipeline on one machine, in overlapping stages.

    plan         (decoders)   how many items an input holds (a video's frames); one, without a task, for images
    fetch pool   (threads)    hand chunks of items to decoders; read those in object stores (many: I/O waits)
    decoders     (processes)  read local inputs, decode + resize + normalise each item into a shared batch row
    this thread               gather the outcomes in item order, close batches
    infer threads             run the model, a batch per stream at once          (ONNX Runtime releases the GIL)
                              and turn its outputs into per-item outputs; an input whose items are all in is
                              reduced to its prediction, gathered into shards
    commit thread             publish each complete shard's files + commit it

Items of many inputs share batches. Each item gets a row of a batch in shared memory when its fetch starts, in
item order, and its decoder writes there; a batch goes to the model when its last row's item is done, its failed
items' rows closed up. Writing a shard happens while the model runs the next batches. On CPU each core runs its own
batch, single-threaded: ONNX Runtime wastes less that way than when one batch is split across threads at every op
(8-36 % more images per second on 2 cores, model alone). At most `window` items are being fetched, a batch is
reused only once the model is done with it, an input's items are held only as small per-item outputs until it is
reduced, and a shard's predictions only until the shard is complete, so memory does not grow with the inputs.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from batchline.domain.predictions import Prediction
from batchline.errors import BatchlineError, Cancelled, DeadlineExceeded, Internal, describe
from batchline.executor.decoding import DecodePool, DecodeTask, PlanTask, SharedBatches, Slot
from batchline.executor.inputs import Input
from batchline.models.loaded import LoadedModel
from batchline.problems.base import ONE_ITEM, Params, Plan, Reducer
from batchline.storage import Storage

Pending = tuple[int, int, Input, Any, Slot]  # an item: its input's index, its place in the input, the input, its ref,
# its slot
Outcome = tuple[int, int, Any, Slot]  # an item's input index, place, its facts from decoding or `Failed`, its slot
# Items per fetch and decoding task: the preprocessor's `items_per_task` (images 16: each task costs hand-offs
# between threads and processes that wake them, and a woken thread takes the core from the model; 16 inputs a task
# gave 6 % more images/s than 8), fewer where their rows would pass _DECODED_BYTES.
_COMMIT_BACKLOG = 2  # complete shards waiting to be written, at most, before the pipeline waits for them
_DECODED_BYTES = 512 * 2**20  # items in flight take a row each in shared memory; tasks shrink to stay under this


@dataclass(frozen=True)
class Failed:
    """The outcome of an input or item that cannot be predicted: its google.rpc status."""

    status: dict[str, Any]


@dataclass
class ShardBuffer:
    index: int
    expected: int
    results: list[tuple[int, str, Prediction]] = field(default_factory=list)
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
    read_timeout: float | None = None  # seconds an item's read (and decode) may take before it fails


class LocalExecutor:
    def __init__(
        self, model: LoadedModel, storage: Storage, params: Params, config: PipelineConfig, decoders: DecodePool
    ):
        self.model = model
        self.storage = storage
        self.params = params
        self.config = config
        self.decoders = decoders
        self._run: _Run | None = None

    @property
    def processed(self) -> int:
        """Inputs predicted or failed so far in this run, for the heartbeat's progress."""
        return self._run.shards.processed if self._run else 0

    def run(
        self,
        inputs: Iterator[Input],
        total: int,
        skip_shards: set[int],
        on_shard: Callable[[ShardBuffer], None],
        cancelled: threading.Event,
    ) -> None:
        """Predict every input not in a skipped shard; `on_shard` gets each shard once it is complete."""
        size = self.config.shard_size
        todo = ((i, item) for i, item in enumerate(inputs) if i // size not in skip_shards)
        self._run = _Run(self, total, on_shard, cancelled)
        self._run.execute(todo)


@dataclass
class _Filling:
    """The decoded items of the batch being filled: their rows, and (input index, place, facts) of each."""

    rows: list[int] = field(default_factory=list)
    items: list[tuple[int, int, Any]] = field(default_factory=list)


class _Run:
    """One run of the pipeline: its batches, its threads, and the inputs and shards being assembled."""

    def __init__(
        self, executor: LocalExecutor, total: int, on_shard: Callable[[ShardBuffer], None], cancelled: threading.Event
    ):
        self.model, self.storage, self.params = executor.model, executor.storage, executor.params
        self.config, self.decoders, self.cancelled = executor.config, executor.decoders, cancelled
        self.on_shard = on_shard
        self.problem = self.model.problem
        self.preprocessor = self.problem.preprocessor
        self.manifest_json = self.model.stored.manifest.model_dump_json()  # how decoders build the problem
        self.params_json = self.params.model_dump_json()
        shape, dtype = self.preprocessor.layout
        row_bytes = math.prod(shape) * np.dtype(dtype).itemsize
        most = self.preprocessor.items_per_task
        self.chunk = max(1, min(most, _DECODED_BYTES // (2 * self.decoders.processes * row_bytes)))
        batch_size = self.config.batch_size
        # Items in flight: two batches and a read per fetch thread, and at least two tasks per decoder.
        self.window = max(2 * batch_size + self.config.io_threads, 2 * self.decoders.processes * self.chunk)
        # Enough batches for every item in the window, the batch being filled, and those at the model.
        self.batch_count = math.ceil(self.window / batch_size) + self.config.inference_streams + 2
        self.in_use: list[Future | None] = [None] * self.batch_count  # per batch, the inference that reads it last
        self.commits: deque[Future] = deque()
        self.shards = _ShardAssembler(self.config.shard_size, total, self._commit)
        self.inputs = _InputAssembler(self.problem.reducer, self.params, self.shards)
        self.batches: SharedBatches
        self.committer: ThreadPoolExecutor

    def execute(self, todo: Iterator[tuple[int, Input]]) -> None:
        shape, dtype = self.preprocessor.layout
        batch_size = self.config.batch_size
        with (
            SharedBatches(self.batch_count, batch_size, shape, dtype) as self.batches,
            ThreadPoolExecutor(self.config.io_threads, thread_name_prefix="fetch") as fetchers,
            ThreadPoolExecutor(1, thread_name_prefix="commit") as self.committer,  # outlives infer, which feeds it
            ThreadPoolExecutor(
                self.config.inference_streams,
                thread_name_prefix="infer",
                initializer=_pin_to_next_core,
                initargs=(self._stream_cores(),),
            ) as infer,
        ):
            inferring: deque[Future] = deque()
            filling, last_slot = _Filling(), None
            for index, place, outcome, slot in self._fetched(self._items(todo), fetchers):
                if isinstance(outcome, Failed):
                    self.inputs.fail(index, outcome.status)
                else:
                    filling.rows.append(slot[1])
                    filling.items.append((index, place, outcome))
                last_slot = slot
                if slot[1] == batch_size - 1:
                    self._submit(slot[0], filling, infer, inferring)
                    filling = _Filling()
                _surface_failures(inferring, self.commits, _COMMIT_BACKLOG)
            if last_slot is not None and last_slot[1] != batch_size - 1:
                self._submit(last_slot[0], filling, infer, inferring)
            for future in inferring:
                future.result()
            _surface_failures(inferring, self.commits, 0)

    def _commit(self, shard: ShardBuffer) -> None:
        self.commits.append(self.committer.submit(self.on_shard, shard))

    def _stream_cores(self) -> Iterator[int] | None:
        """On CPU, where each core runs its own single-threaded stream, the cores to pin the streams to, one each: a
        stream that stays on its core keeps its caches warm (1-4 % more images/s on 2 cores, A/B). None where the
        streams and cores do not pair up, or on a GPU."""
        if self.model.runtime.device != "cpu" or not hasattr(os, "sched_setaffinity"):
            return None
        cores = sorted(os.sched_getaffinity(0))
        return iter(cores) if self.config.inference_streams == len(cores) else None

    # -- inputs into items
    def _items(self, todo: Iterator[tuple[int, Input]]) -> Iterator[tuple[int, int, Input, Any]]:
        """Every item of every input, in order: (input index, place in the input, input, ref). An input that
        cannot be planned goes straight to the errors."""
        for index, item, plan in self._planned(todo):
            if isinstance(plan, Failed):
                self.shards.add(errors=[(index, item.id, plan.status)])
                continue
            self.inputs.expect(index, item.id, len(plan.refs), plan.facts)
            for place, ref in enumerate(plan.refs):
                yield index, place, item, ref

    def _planned(self, todo: Iterator[tuple[int, Input]]) -> Iterator[tuple[int, Input, Plan | Failed]]:
        """Each input with its plan. A preprocessor that expands plans each input in a decoder, a few ahead."""
        expands = self.preprocessor.expands
        ahead: deque[tuple[int, Input, Future | Failed]] = deque()
        for index, item in todo:
            if item.error is not None:
                ahead.append((index, item, Failed(item.error)))
            elif not expands:
                ahead.append((index, item, ONE_ITEM))
            else:
                ahead.append((index, item, self._plan(item)))
            while len(ahead) > (2 * self.decoders.processes if expands else 0):
                yield self._resolved(*ahead.popleft())
        while ahead:
            yield self._resolved(*ahead.popleft())

    def _plan(self, item: Input) -> Future | Failed:
        try:
            source = self._source(item)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong is this input's error line
            return Failed(_status(exc))
        task = PlanTask(self.manifest_json, self.storage.settings_json, self.params_json, [(source, item.args)])
        return self.decoders.submit(task)

    def _resolved(self, index: int, item: Input, plan: Future | Plan | Failed) -> tuple[int, Input, Plan | Failed]:
        if isinstance(plan, Future):
            outcome = _outcome(plan, self.cancelled, self.config.read_timeout)
            if isinstance(outcome, DeadlineExceeded):
                self.decoders.recycle(plan, outcome)
            outcome = outcome if isinstance(outcome, BaseException) else outcome[0]
            plan = Failed(_status(outcome)) if isinstance(outcome, BaseException) else outcome
        return index, item, plan

    # -- items into batch rows
    def _slot(self, position: int) -> Slot:
        """The row of the `position`-th item; the first row of a batch waits until the model is done with that
        batch's last use."""
        batch_size = self.config.batch_size
        batch, row = (position // batch_size) % self.batch_count, position % batch_size
        if row == 0 and self.in_use[batch] is not None:
            _outcome(self.in_use[batch], self.cancelled)  # a failure of that inference surfaces in execute()
        return batch, row

    def _fetched(self, items: Iterator[tuple[int, int, Input, Any]], pool: ThreadPoolExecutor) -> Iterator[Outcome]:
        """Keep a window of items in flight, in chunks; yield their outcomes in item order."""
        in_flight: deque[tuple[list[Pending], Future]] = deque()
        position, queued, exhausted = 0, 0, False
        try:
            while True:
                while not exhausted and queued < self.window:
                    chunk: list[Pending] = []
                    for index, place, item, ref in itertools.islice(items, self.chunk):
                        chunk.append((index, place, item, ref, self._slot(position)))
                        position += 1
                    exhausted = len(chunk) < self.chunk
                    if chunk:
                        in_flight.append((chunk, pool.submit(self._fetch, chunk)))
                        queued += len(chunk)
                if not in_flight:
                    return
                chunk, fetch = in_flight[0]
                yield from self._outcomes(chunk, fetch)
                in_flight.popleft()
                queued -= len(chunk)
        finally:
            for _, fetch in in_flight:
                _cancel(fetch)

    def _fetch(self, chunk: list[Pending]) -> tuple[list[Any], Future | None]:
        """Read a chunk's inputs (fetch pool) and queue their items' decoding as one task. Returns each item's
        outcome so far: `Failed`, or its place in the decoding task, whose future comes second.

        Inputs on this machine, and those a streaming preprocessor opens itself, go to the decoder as URIs; the
        fetch threads read only object stores. A fetch thread is free as soon as the task is queued: it neither
        waits for a decoder nor wakes up again when the decoding is done.
        """
        outcomes: list[Any] = []
        work: list[tuple[Slot, bytes | str, Any]] = []
        sources: dict[int, bytes | str | Failed] = {}  # per input index: items of one input share one read
        for index, _, item, ref, slot in chunk:
            if index not in sources:
                try:
                    sources[index] = self._source(item)
                except Exception as exc:  # noqa: BLE001 - whatever went wrong is this input's error line
                    sources[index] = Failed(_status(exc))
            source = sources[index]
            if isinstance(source, Failed):
                outcomes.append(source)
                continue
            outcomes.append(len(work))
            work.append((slot, source, ref))
        if not work:
            return outcomes, None
        task = DecodeTask(self.manifest_json, self.storage.settings_json, self.batches.ref, work)
        return outcomes, self.decoders.submit(task)

    def _source(self, item: Input) -> bytes | str:
        """The input's bytes, or its URI when the decoder reads it itself."""
        if item.uri is None:
            return item.content or b""
        self.preprocessor.check_uri(item.uri)
        if self.preprocessor.streams or self.storage.is_on_this_machine(item.uri):
            return item.uri
        return self.storage.read(item.uri, self.preprocessor.max_bytes)

    def _outcomes(self, chunk: list[Pending], fetch: Future) -> Iterator[Outcome]:
        """The chunk's outcomes, once read and decoded; a read or decode that takes longer than the read timeout
        fails the chunk's items (a stuck decoder is replaced; a stuck fetch thread is left to its storage's
        timeouts)."""
        timeout = self.config.read_timeout
        fetched = _outcome(fetch, self.cancelled, timeout)
        if isinstance(fetched, BaseException):  # a bug in _fetch, or reads that hang: the whole chunk fails
            outcomes, decoded = [Failed(_status(fetched))] * len(chunk), []
        else:
            outcomes, decoding = fetched
            decoded = _outcome(decoding, self.cancelled, timeout) if decoding is not None else []
            if isinstance(decoded, DeadlineExceeded):
                self.decoders.recycle(decoding, decoded)
        for (index, place, _, _, slot), outcome in zip(chunk, outcomes, strict=True):
            if isinstance(outcome, int):  # its place in the decoding task
                result = decoded if isinstance(decoded, BaseException) else decoded[outcome]
                outcome = Failed(_status(result)) if isinstance(result, BaseException) else result
            yield index, place, outcome, slot

    # -- batches through the model
    def _submit(self, batch: int, filling: _Filling, infer: ThreadPoolExecutor, inferring: deque[Future]) -> None:
        """Run the model on the decoded rows of a batch, closed up where failed items left holes, and turn its
        outputs into per-item outputs on the same thread: a hand-off to another thread per batch would wake that
        thread, which takes a core from the model, as often as batches complete."""
        if not filling.rows:  # every item of it failed
            return
        tensor = self.batches.array[batch]
        rows = filling.rows
        if rows != list(range(len(rows))):
            tensor[: len(rows)] = tensor[rows]
        done = infer.submit(self._predict, tensor[: len(rows)], filling.items)
        self.in_use[batch] = done
        inferring.append(done)

    def _predict(self, tensor: np.ndarray, items: list[tuple[int, int, Any]]) -> None:
        outputs = self.model.runtime.predict_batch(tensor)
        decoded = self.problem.postprocessor.decode(outputs, [facts for _, _, facts in items], self.params)
        self.inputs.add([(index, place, out) for (index, place, _), out in zip(items, decoded, strict=True)])


class _InputAssembler:
    """Gathers each input's item outputs, from any thread, and reduces the input to its prediction once every item
    is in (or fails it with the first item's error). An input of one item is reduced as soon as that item is in."""

    def __init__(self, reducer: Reducer, params: Params, shards: _ShardAssembler):
        self.reducer, self.params, self.shards = reducer, params, shards
        self.open: dict[int, _OpenInput] = {}
        self._lock = threading.Lock()

    def expect(self, index: int, input_id: str, count: int, facts: Any) -> None:
        """Before any of its items runs."""
        with self._lock:
            self.open[index] = _OpenInput(input_id, facts, [None] * count, count)

    def add(self, entries: Sequence[tuple[int, int, Any]]) -> None:
        with self._lock:
            done = [self._settle(index, place, output) for index, place, output in entries]
        results, errors = [], []
        for index, entry in (d for d in done if d is not None):
            if entry.error is not None:
                errors.append((index, entry.input_id, entry.error))
                continue
            try:
                results.append((index, entry.input_id, self.reducer.reduce(entry.facts, entry.outputs, self.params)))
            except Exception as exc:  # noqa: BLE001 - a bug in a reducer fails that input, not the job
                errors.append((index, entry.input_id, _status(exc)))
        if results or errors:
            self.shards.add(results, errors)

    def fail(self, index: int, status: dict[str, Any]) -> None:
        """One item of input `index` failed: the input fails with it."""
        self.add([(index, -1, Failed(status))])

    def _settle(self, index: int, place: int, output: Any) -> tuple[int, _OpenInput] | None:
        entry = self.open[index]
        if isinstance(output, Failed):
            entry.error = entry.error or output.status
        else:
            entry.outputs[place] = output
        entry.remaining -= 1
        if entry.remaining:
            return None
        del self.open[index]
        return index, entry


@dataclass
class _OpenInput:
    input_id: str
    facts: Any
    outputs: list[Any]
    remaining: int
    error: dict[str, Any] | None = None


class _ShardAssembler:
    """Gathers outcomes, from any thread, into shards and hands each shard to `on_shard` once it is complete: not
    always in shard order, as streams finish batches out of order (output files are numbered at the end)."""

    def __init__(self, size: int, total: int, on_shard: Callable[[ShardBuffer], None]):
        self.size, self.total, self.on_shard = size, total, on_shard
        self.open: dict[int, ShardBuffer] = {}
        self.processed = 0
        self._lock = threading.Lock()

    def add(
        self, results: Sequence[tuple[int, str, Prediction]] = (), errors: Sequence[tuple[int, str, dict]] = ()
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
