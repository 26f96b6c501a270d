"""How batch jobs share the cores between model runs: what a user gets without setting anything, and with."""

from __future__ import annotations

import os

from batchline.config import Settings


def test_batch_jobs_run_one_single_threaded_batch_per_core_on_cpu_by_default() -> None:
    cores = len(os.sched_getaffinity(0))
    settings = Settings()
    assert settings.batch_streams("cpu") == cores
    assert settings.batch_streams("cuda") == 2  # one batch on the GPU while the other is postprocessed
    assert settings.batch_intra_op_threads == 1
    assert settings.intra_op_threads == 0  # online prediction keeps every core for one request


def test_streams_and_threads_can_be_set() -> None:
    assert Settings(inference_streams=1).batch_streams("cpu") == 1
    assert Settings(inference_streams=1).batch_intra_op_threads == len(os.sched_getaffinity(0))
    assert Settings(inference_streams=1, intra_op_threads=3).batch_intra_op_threads == 3
    assert Settings(inference_streams=4).batch_streams("cuda") == 4
