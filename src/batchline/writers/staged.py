"""Shard files staged as they commit and published whole at the end: what every output layout shares.

Shards are staged under OUTPUT_DIR/.staging/ as they commit, named by shard index and by the worker that wrote
them, so a worker that lost its lease cannot overwrite a shard its successor committed; `finalize` renames the
committed ones to their final names and removes the staging folder, and is safe to run again. Each rename publishes
a whole file. `StagedShardWriter` is the JSON lines layout: <results stem>_<n>.jsonl and errors_<n>.jsonl,
numbered 1, 2, ... without gaps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from batchline.domain.jobs import ShardRecord
from batchline.domain.predictions import Prediction
from batchline.storage import Storage, join

STAGING = ".staging"


OUTPUT_DIR_TRIES = 1000  # milliseconds a job's folder name may be stepped past its create time


def output_dir_name(display_name: str, when: float, step: int = 0) -> str:
    """prediction-<model display name>-<YYYY-MM-DDThh:mm:ss.sssZ>, the folder a job writes into: the time is
    `when`, to the millisecond, `step` milliseconds later."""
    moment = datetime.fromtimestamp(when, UTC) + timedelta(milliseconds=step)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return f"prediction-{display_name}-{stamp}"


def output_dir_candidates(
    storage: Storage, prefix: str, display_name: str, when: float, tries: int = OUTPUT_DIR_TRIES
) -> Iterator[str]:
    """The folder URIs a job may take, in order: its create time's, then one millisecond later, and so on,
    leaving out any folder that already exists in storage (left by a deleted job, another database, a user).
    The job store claims the first one no other job holds (`JobStore.claim_output_dir`)."""
    for step in range(tries):
        uri = join(prefix, output_dir_name(display_name, when, step))
        if not storage.exists(uri):
            yield uri


Result = tuple[int, str, Prediction]  # an input's index, its id, its prediction
Failure = tuple[int, str, dict[str, Any]]  # an input's index, its id, its google.rpc status


class LineEncoder(Protocol):
    """How a surface writes one input's output line, and names it in the job's partialFailures."""

    def result_line(self, input_id: str, prediction: Prediction) -> str: ...

    def error_line(self, input_id: str, status: dict[str, Any]) -> str: ...

    def failure_message(self, input_id: str, status: dict[str, Any]) -> str: ...


class ShardWriter(Protocol):
    """An output layout: stage each committed shard's results and errors, publish the committed ones at the end."""

    def stage(self, index: int, owner: str, results: Sequence[Result], errors: Sequence[Failure]) -> None: ...

    def finalize(self, committed: list[ShardRecord]) -> None: ...


class StagedShardWriter:
    def __init__(
        self,
        storage: Storage,
        output_dir: str,
        encoder: LineEncoder,
        results_stem: str,
        number: Callable[[int], str] = str,
    ):
        self.storage = storage
        self.output_dir = output_dir
        self.encoder = encoder
        self.results_stem = results_stem
        self.number = number  # a file's sequence number as its name writes it: "1" (AutoML), "00001" (Vertex)

    def _staged(self, index: int, writer: str, kind: str) -> str:
        return join(self.output_dir, f"{STAGING}/shard-{index:06d}.{writer}.{kind}.jsonl")

    def stage(self, index: int, owner: str, results: Sequence[Result], errors: Sequence[Failure]) -> None:
        """Publish one shard's lines, in input order."""
        encode = self.encoder
        lines = {
            "results": [encode.result_line(input_id, prediction) for _, input_id, prediction in results],
            "errors": [encode.error_line(input_id, status) for _, input_id, status in errors],
        }
        for kind, text in lines.items():
            if text:
                self.storage.publish(self._staged(index, owner, kind), ("\n".join(text) + "\n").encode())

    def finalize(self, committed: list[ShardRecord]) -> None:
        """Rename staged shards to their final, gap-free names; safe to run again after a crash."""
        numbered = {"results": 0, "errors": 0}
        for shard in sorted(committed, key=lambda s: s.index):
            for kind, count in (("results", shard.succeeded), ("errors", shard.failed)):
                if not count:
                    continue
                numbered[kind] += 1
                stem = self.results_stem if kind == "results" else "errors"
                final = join(self.output_dir, f"{stem}_{self.number(numbered[kind])}.jsonl")
                staged = self._staged(shard.index, shard.writer, kind)
                if self.storage.exists(staged):
                    self.storage.move(staged, final)
        self.storage.delete_tree(join(self.output_dir, STAGING))
