"""What the executor predicts (`Input`), and the AutoML input files: CSV files, one input per row, read by the row
format of the model's problem (surfaces/automl.py); first occurrence of an ID wins."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from batchline.errors import BatchlineError, InvalidArgument
from batchline.storage import Storage

MAX_INPUT_FILE_BYTES = 30 * 1024 * 1024


@dataclass(frozen=True)
class Input:
    """One input of a job: `id` keys its output line; its bytes come from `uri` or inline `content`; `args` are
    what its preprocessor's plan takes besides (a video's time segment). An input already known to be bad (say, a
    malformed instance) carries its google.rpc `error` and goes straight to the errors."""

    id: str
    uri: str | None = None
    content: bytes | None = None
    error: dict[str, Any] | None = None
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RowFormat:
    """How one AutoML CSV row names an input: `read(fields)` gives the input (ValueError says what is wrong)."""

    columns: str  # for messages, e.g. GCS_FILE_PATH
    read: Callable[[list[str]], Input]


def one_path(fields: list[str]) -> Input:
    """GCS_FILE_PATH: the path is the input's ID and where it is read."""
    if len(fields) != 1:
        raise ValueError(f"has {len(fields)} columns; expected one: GCS_FILE_PATH")
    path = fields[0].strip()
    return Input(path, uri=path)


PATHS = RowFormat("GCS_FILE_PATH", one_path)


def read_input_file(storage: Storage, uri: str) -> str:
    """A whole input file as text (UTF-8, a BOM allowed); INVALID_ARGUMENT if it cannot be read: the job fails."""
    try:
        data = storage.read(uri, max_bytes=MAX_INPUT_FILE_BYTES)
    except BatchlineError as exc:
        raise InvalidArgument(f"input file {uri} cannot be read: {exc.message}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"input file {uri} is not UTF-8 text: {exc}") from None


def _rows(storage: Storage, uri: str, row: RowFormat) -> Iterator[Input]:
    """The inputs a CSV file lists. A row that cannot be used is that row's error (the job goes on, and fails only
    past BATCHLINE_MAX_FAILED_RATIO); a file that cannot be read or parsed fails the job."""
    count = 0
    rows = csv.reader(io.StringIO(read_input_file(storage, uri), newline=""))
    try:
        for line_number, fields in enumerate(rows, 1):
            if not any(f.strip() for f in fields):
                continue  # blank line
            count += 1
            try:
                yield row.read(fields)
            except ValueError as exc:
                status = InvalidArgument(f"input file {uri}, line {line_number}: {exc}").to_status()
                yield Input(_as_written(fields), error=status)
    except csv.Error as exc:
        raise InvalidArgument(f"input file {uri} is not a valid CSV file: {exc}") from None
    if count == 0:
        raise InvalidArgument(f"input file {uri} lists no inputs; expected one {row.columns} per line")


def _as_written(fields: list[str]) -> str:
    """A row as its CSV line reads (the ID of its error line)."""
    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow(fields)
    return line.getvalue()


def iter_inputs(storage: Storage, uris: list[str], row: RowFormat) -> Iterator[Input]:
    """Every input of the job, in a stable order, each once. Each row that cannot be used is an error of its own,
    even where two read alike."""
    seen: set[str] = set()
    for uri in uris:
        for item in _rows(storage, uri, row):
            if item.error is None and item.id in seen:
                continue
            seen.add(item.id)
            yield item


def count_inputs(storage: Storage, uris: list[str], row: RowFormat) -> int:
    """Read every input file once, so that a file that cannot be read fails the job before any work."""
    return sum(1 for _ in iter_inputs(storage, uris, row))
