"""The Vertex AI batch output layout: OUTPUT_PREFIX/prediction-<model display name>-<timestamp>/ holding
predictions_00001.jsonl ... and errors_00001.jsonl ..., staged and published like AutoML's files (surfaces/vertex.py
encodes the lines)."""

from __future__ import annotations

from batchline.storage import Storage
from batchline.writers.staged import LineEncoder, StagedShardWriter

RESULTS_STEM = "predictions"


class VertexWriter(StagedShardWriter):
    """predictions_00001.jsonl ... and errors_00001.jsonl ..., five digits as Vertex AI names them."""

    def __init__(self, storage: Storage, output_dir: str, encoder: LineEncoder):
        super().__init__(storage, output_dir, encoder, RESULTS_STEM, "{:05d}".format)
