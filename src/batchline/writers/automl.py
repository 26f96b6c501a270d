"""The AutoML v1 batch output layout: <stem>_N.jsonl and errors_N.jsonl, staged and published by
`StagedShardWriter` (surfaces/automl.py encodes the lines)."""

from __future__ import annotations

from batchline.storage import Storage
from batchline.writers.staged import LineEncoder, StagedShardWriter


class AutomlWriter(StagedShardWriter):
    """<stem>_1.jsonl ... and errors_1.jsonl ..., numbered from 1 without padding."""

    def __init__(self, storage: Storage, output_dir: str, encoder: LineEncoder, stem: str):
        super().__init__(storage, output_dir, encoder, stem)
