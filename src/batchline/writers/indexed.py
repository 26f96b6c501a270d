"""The AutoML video batch output layout (CONTRACT 12.4): an index CSV and one JSON file per successful input.

OUTPUT_DIR/<index name> (`video_classification.csv`, `video_object_tracking.csv`) has no header and one row per
input, in input order: GCS_FILE_PATH,TIME_SEGMENT_START,TIME_SEGMENT_END,JSON_FILE_NAME,STATUS. The first three
fields echo the input's CSV row as written; STATUS is `OK`, or `<CODE_NAME>: <message>` with JSON_FILE_NAME empty
and no JSON file. OUTPUT_DIR/<json stem>_<n>.json holds input n's prediction (n = input index + 1, so names are
known from the input alone and need no renumbering). There is no errors file.

Staging, as `StagedShardWriter` does it, by (shard index, worker), so a worker that lost its lease cannot overwrite
its successor's shard:

    .staging/shard-000003.<owner>.index.csv         the shard's index rows, in input order
    .staging/shard-000003.<owner>/<json stem>_n.json  one per successful input of the shard

`finalize` moves the committed shards' JSON files to their final names (skipping those a crashed run already moved),
then publishes the index, the committed parts concatenated in shard order, as one whole file, then removes staging.
The index is published only after every JSON file it names is in place, so a finalize that finds a committed part
gone from staging while the index exists knows an earlier run got as far as removing staging, and only finishes that.
"""

from __future__ import annotations

import csv
import io
import posixpath
from collections.abc import Sequence
from typing import Any, Protocol

from batchline.domain.jobs import ShardRecord
from batchline.domain.predictions import Prediction
from batchline.errors import Internal
from batchline.storage import Storage, join
from batchline.writers.staged import STAGING, Failure, Result

# google.rpc.Code names, as the STATUS column writes them; a number outside the table (or 0, which no failure has)
# is UNKNOWN.
CODE_NAMES = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}
OK = "OK"


class JsonEncoder(Protocol):
    """How a surface writes one input's JSON file, and names a failed input in the job's partialFailures."""

    def result_json(self, prediction: Prediction) -> str: ...

    def failure_message(self, input_id: str, status: dict[str, Any]) -> str: ...


def code_name(code: Any) -> str:
    return CODE_NAMES.get(code, "UNKNOWN") if isinstance(code, int) else "UNKNOWN"


def status_cell(status: dict[str, Any]) -> str:
    """A failed input's STATUS: `INVALID_ARGUMENT: <message>`."""
    return f"{code_name(status.get('code'))}: {status.get('message', '')}"


def input_fields(input_id: str) -> list[str]:
    """GCS_FILE_PATH, TIME_SEGMENT_START, TIME_SEGMENT_END as written: a video input's id is those three fields as
    one CSV row."""
    rows = list(csv.reader(io.StringIO(input_id, newline="")))
    if len(rows) != 1 or len(rows[0]) != 3:
        raise ValueError(f"a video input's id is a CSV row of path, start and end, not {input_id!r}")
    return rows[0]


def _csv_rows(rows: list[list[str]]) -> str:
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


class IndexedJsonWriter:
    def __init__(self, storage: Storage, output_dir: str, encoder: JsonEncoder, index_name: str, json_stem: str):
        self.storage = storage
        self.output_dir = output_dir
        self.encoder = encoder
        self.index_name = index_name  # "video_classification.csv"
        self.json_stem = json_stem  # "video_classification": input i's file is video_classification_{i + 1}.json

    def json_name(self, index: int) -> str:
        return f"{self.json_stem}_{index + 1}.json"

    def _part(self, index: int, owner: str) -> str:
        return join(self.output_dir, f"{STAGING}/shard-{index:06d}.{owner}.index.csv")

    def _folder(self, index: int, owner: str) -> str:
        return join(self.output_dir, f"{STAGING}/shard-{index:06d}.{owner}")

    def stage(self, index: int, owner: str, results: Sequence[Result], errors: Sequence[Failure]) -> None:
        """Publish one shard's JSON files, then its index rows in input order."""
        folder = self._folder(index, owner)
        rows: list[tuple[int, list[str]]] = []
        for position, input_id, prediction in results:
            name = self.json_name(position)
            self.storage.publish(join(folder, name), self.encoder.result_json(prediction).encode())
            rows.append((position, [*input_fields(input_id), name, OK]))
        for position, input_id, status in errors:
            rows.append((position, [*input_fields(input_id), "", status_cell(status)]))
        rows.sort(key=lambda row: row[0])
        self.storage.publish(self._part(index, owner), _csv_rows([row for _, row in rows]).encode())

    def finalize(self, committed: list[ShardRecord]) -> None:
        """Move the committed shards' JSON files to their final names, publish the index, remove staging; safe to
        run again after a crash at any point."""
        staging = join(self.output_dir, STAGING)
        shards = sorted(committed, key=lambda s: s.index)
        staged = {posixpath.basename(uri) for uri in self.storage.list_files(staging)}
        if all(posixpath.basename(self._part(s.index, s.writer)) in staged for s in shards):
            parts = [self._publish_shard(shard) for shard in shards]
            self.storage.publish(join(self.output_dir, self.index_name), b"".join(parts))
        elif not self.storage.exists(join(self.output_dir, self.index_name)):
            raise Internal("a committed shard's staged output is missing; the job's index cannot be written")
        self.storage.delete_tree(staging)

    def _publish_shard(self, shard: ShardRecord) -> bytes:
        """Move a committed shard's JSON files into place (those still staged) and return its index rows."""
        part = self.storage.read(self._part(shard.index, shard.writer))
        rows = list(csv.reader(io.StringIO(part.decode(), newline="")))
        names = [row[3] for row in rows if row[3]]
        if (len(names), len(rows) - len(names)) != (shard.succeeded, shard.failed):
            raise Internal(f"shard {shard.index}'s staged index does not hold the results and errors it committed")
        folder = self._folder(shard.index, shard.writer)
        staged = {posixpath.basename(uri) for uri in self.storage.list_files(folder)}
        for name in names:
            final = join(self.output_dir, name)
            if name in staged:
                self.storage.move(join(folder, name), final)
            elif not self.storage.exists(final):
                raise Internal(f"shard {shard.index}'s {name} is neither staged nor published")
        return part
