"""The local executor: a streaming, bounded pipeline in one process.

    inputs --> thread pool (fetch + decode + resize, in parallel; I/O and codecs release the GIL)
           --> ordered window --> batches --> runtime (its own threads) --> annotations --> shard buffers --> writer

At most `window` inputs are in flight, and a shard's lines are held only until the shard is complete, so memory
does not grow with the number of inputs. A shard is published, then reported through `on_shard` for commit.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from batchline.domain.annotations import Annotation
from batchline.errors import BatchlineError, Cancelled, Internal
from batchline.models.loaded import LoadedModel
from batchline.storage import Storage


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


class LocalExecutor:
    def __init__(self, model: LoadedModel, storage: Storage, params: dict[str, Any], config: PipelineConfig):
        self.model = model
        self.storage = storage
        self.params = params
        self.config = config
        self.processed = 0  # read by the heartbeat for progress

    def _prepare(self, uri: str) -> Any:
        """Fetch and decode one input; a BatchlineError becomes this input's error line."""
        self.model.problem.check_input(uri)
        return self.model.problem.decode(self.storage.read(uri))

    def run(
        self,
        inputs: Iterable[str],
        total: int,
        skip_shards: set[int],
        on_shard: Callable[[ShardBuffer], None],
        cancelled: threading.Event,
    ) -> None:
        size = self.config.shard_size
        buffers: dict[int, ShardBuffer] = {}
        pending: list[tuple[int, str, Any]] = []
        window = 2 * self.config.batch_size + self.config.io_threads
        with ThreadPoolExecutor(self.config.io_threads, thread_name_prefix="fetch") as pool:
            in_flight: deque[tuple[int, str, Future]] = deque()
            todo = ((i, uri) for i, uri in enumerate(inputs) if i // size not in skip_shards)
            try:
                for index, uri, outcome in self._ordered(todo, in_flight, pool, window, cancelled):
                    key = index // size
                    shard = buffers.setdefault(key, ShardBuffer(key, min(size, total - key * size)))
                    if isinstance(outcome, BaseException):
                        shard.errors.append((index, uri, _status(outcome)))
                        self.processed += 1
                        self._flush_complete(buffers, on_shard)
                        continue
                    pending.append((index, uri, outcome))
                    if len(pending) >= self.config.batch_size:
                        self._infer(pending, buffers, on_shard)
                        pending = []
                self._infer(pending, buffers, on_shard)
            finally:
                for _, _, future in in_flight:
                    future.cancel()

    def _ordered(
        self,
        todo: Iterator[tuple[int, str]],
        in_flight: deque[tuple[int, str, Future]],
        pool: ThreadPoolExecutor,
        window: int,
        cancelled: threading.Event,
    ) -> Iterator[tuple[int, str, Any]]:
        """Keep `window` inputs in flight; yield their outcomes (item or exception) in input order."""
        exhausted = False
        while True:
            while not exhausted and len(in_flight) < window:
                nxt = next(todo, None)
                if nxt is None:
                    exhausted = True
                else:
                    in_flight.append((*nxt, pool.submit(self._prepare, nxt[1])))
            if not in_flight:
                return
            if cancelled.is_set():
                raise Cancelled("cancelled by the user")
            index, uri, future = in_flight.popleft()
            exc = future.exception()
            yield index, uri, exc if exc is not None else future.result()

    def _infer(self, pending: list[tuple[int, str, Any]], buffers: dict[int, ShardBuffer], on_shard: Callable) -> None:
        if not pending:
            return
        problem = self.model.problem
        outputs = self.model.runtime.predict_batch(problem.to_batch([item for _, _, item in pending]))
        annotations = problem.postprocess(outputs, self.params)
        size = self.config.shard_size
        for (index, uri, _), found in zip(pending, annotations, strict=True):
            buffers[index // size].results.append((index, uri, found))
        self.processed += len(pending)
        self._flush_complete(buffers, on_shard)

    def _flush_complete(self, buffers: dict[int, ShardBuffer], on_shard: Callable[[ShardBuffer], None]) -> None:
        for key in [k for k, b in buffers.items() if b.complete]:
            shard = buffers.pop(key)
            shard.results.sort(key=lambda r: r[0])
            shard.errors.sort(key=lambda r: r[0])
            on_shard(shard)


def _status(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, BatchlineError):
        return exc.to_status()
    return Internal(f"unexpected error while reading this input: {type(exc).__name__}: {exc}").to_status()
