"""The local executor: a streaming, bounded pipeline in one process, in overlapping stages.

    fetch pool    (threads)  read each input, queue it for decoding          (many: waiting on I/O costs no core)
    decode pool   (threads)  decode + resize + normalise                     (one per core; codecs release the GIL)
    this thread              gather the inputs in order and stack batches
    infer threads            run the model, a batch per stream at once       (ONNX Runtime releases the GIL)
    post thread              annotations, shard buffers, publish + commit

Stacking the next batch and recording the last one happen while the model runs, so the model never waits on
Python work. On CPU each core runs its own batch, single-threaded: ONNX Runtime wastes less that way than when
one batch is split across threads at every op (8-36 % more images per second on 2 cores, model alone). At most
`window` inputs are being fetched and at most one batch more than there are streams is in or queued for the
model, and a shard's lines are held only until the shard is complete, so memory does not grow with the inputs.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from batchline.domain.annotations import Annotation
from batchline.errors import BatchlineError, Cancelled, Internal
from batchline.executor.inputs import Input
from batchline.models.loaded import LoadedModel
from batchline.storage import Storage

_DECODE_NICENESS = 10
Outcome = tuple[int, str, Any]  # input index, ID, and its preprocessed item or `Failed`


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
    decode_threads: int
    shard_size: int
    inference_streams: int = 1


class LocalExecutor:
    def __init__(self, model: LoadedModel, storage: Storage, params: dict[str, Any], config: PipelineConfig):
        self.model = model
        self.storage = storage
        self.params = params
        self.config = config
        self.processed = 0  # read by the heartbeat for progress
        self._decoders: ThreadPoolExecutor  # the decode pool of the run in progress

    def run(
        self,
        inputs: Iterable[Input],
        total: int,
        skip_shards: set[int],
        on_shard: Callable[[ShardBuffer], None],
        cancelled: threading.Event,
    ) -> None:
        """Predict every input not in a skipped shard; `on_shard` gets each shard once it is complete."""
        size = self.config.shard_size
        todo = ((i, item) for i, item in enumerate(inputs) if i // size not in skip_shards)
        shards = _ShardAssembler(size, total, on_shard)
        batch: list[Outcome] = []
        with (
            ThreadPoolExecutor(self.config.io_threads, thread_name_prefix="fetch") as pool,
            ThreadPoolExecutor(
                self.config.decode_threads, thread_name_prefix="decode", initializer=_yield_to_inference
            ) as self._decoders,
            ThreadPoolExecutor(self.config.inference_streams, thread_name_prefix="infer") as infer,
            ThreadPoolExecutor(1, thread_name_prefix="post") as post,
        ):

            def submit_batch() -> Future:
                tensor = self.model.problem.to_batch([item for _, _, item in batch])
                outputs = infer.submit(self.model.runtime.predict_batch, tensor)
                return post.submit(self._record_results, shards, batch, outputs)

            waiting: deque[Future] = deque()
            for index, item_id, outcome in self._fetched(todo, pool, cancelled):
                if isinstance(outcome, Failed):
                    waiting.append(post.submit(self._record_error, shards, index, item_id, outcome.status))
                    continue
                batch.append((index, item_id, outcome))
                if len(batch) == self.config.batch_size:
                    waiting.append(submit_batch())
                    batch = []
                while len(waiting) > self.config.inference_streams + 1 or (waiting and waiting[0].done()):
                    waiting.popleft().result()  # re-raises an inference or post-processing failure here
            if batch:
                waiting.append(submit_batch())
            for future in waiting:
                future.result()

    def _fetch(self, item: Input) -> Future:
        """Read one input (fetch pool) and queue its decoding; a BatchlineError becomes this input's error line.

        The fetch thread hands the bytes on and is free at once: it neither waits for a decoder nor wakes up
        again when the decoding is done. More decoders than cores would only fight over the GIL and the caches.
        """
        if item.uri is not None:
            self.model.problem.check_input(item.uri)
            data = self.storage.read(item.uri)
        else:
            data = item.content or b""
        return self._decoders.submit(self.model.problem.decode, data)

    def _fetched(
        self, todo: Iterator[tuple[int, Input]], pool: ThreadPoolExecutor, cancelled: threading.Event
    ) -> Iterator[Outcome]:
        """Keep a window of inputs in flight; yield their outcomes in input order."""
        window = 2 * self.config.batch_size + self.config.io_threads
        in_flight: deque[tuple[int, Input, Future | None]] = deque()
        exhausted = False
        try:
            while True:
                while not exhausted and len(in_flight) < window:
                    nxt = next(todo, None)
                    if nxt is None:
                        exhausted = True
                    else:
                        index, item = nxt
                        fetch = None if item.error else pool.submit(self._fetch, item)
                        in_flight.append((index, item, fetch))
                if not in_flight:
                    return
                index, item, fetch = in_flight[0]
                outcome = Failed(item.error) if fetch is None else _outcome(fetch, cancelled)
                if isinstance(outcome, Future):
                    outcome = _outcome(outcome, cancelled)
                in_flight.popleft()
                yield index, item.id, Failed(_status(outcome)) if isinstance(outcome, BaseException) else outcome
        finally:
            for _, _, future in in_flight:
                if future is not None:
                    future.cancel()

    # -- post thread
    def _record_results(self, shards: _ShardAssembler, batch: list[Outcome], outputs: Future) -> None:
        items = [item for _, _, item in batch]
        annotations = self.model.problem.postprocess(outputs.result(), items, self.params)
        for (index, item_id, _), found in zip(batch, annotations, strict=True):
            shards.buffer(index).results.append((index, item_id, found))
        self.processed += len(batch)
        shards.flush_complete()

    def _record_error(self, shards: _ShardAssembler, index: int, item_id: str, status: dict[str, Any]) -> None:
        shards.buffer(index).errors.append((index, item_id, status))
        self.processed += 1
        shards.flush_complete()


class _ShardAssembler:
    """Gathers outcomes into shards and hands each complete shard, in input order, to `on_shard`."""

    def __init__(self, size: int, total: int, on_shard: Callable[[ShardBuffer], None]):
        self.size, self.total, self.on_shard = size, total, on_shard
        self.open: dict[int, ShardBuffer] = {}

    def buffer(self, index: int) -> ShardBuffer:
        key = index // self.size
        if key not in self.open:
            self.open[key] = ShardBuffer(key, min(self.size, self.total - key * self.size))
        return self.open[key]

    def flush_complete(self) -> None:
        for key in [k for k, b in self.open.items() if b.complete]:
            shard = self.open.pop(key)
            shard.results.sort(key=lambda r: r[0])
            shard.errors.sort(key=lambda r: r[0])
            self.on_shard(shard)


def _yield_to_inference() -> None:
    """Run this decode thread at a lower priority than the model's threads (Linux threads have their own nice).

    When both want a core, the model gets it: a preempted ONNX Runtime thread stalls the whole parallel op it is
    part of, while a decoder that waits loses nothing, since the window keeps enough decoded ahead.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _DECODE_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at the normal priority
        pass


def _outcome(future: Future, cancelled: threading.Event) -> Any:
    """The future's result or the exception it raised; Cancelled as soon as the job is (a slow read must not
    hold a cancel up)."""
    while True:
        if cancelled.is_set():
            raise Cancelled("cancelled by the user")
        try:
            exc = future.exception(timeout=0.2)
        except TimeoutError:
            continue
        return exc if exc is not None else future.result()


def _status(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, BatchlineError):
        return exc.to_status()
    return Internal(f"unexpected error while reading this input: {type(exc).__name__}: {exc}").to_status()
