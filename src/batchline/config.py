"""Settings, read once from `BATCHLINE_*` environment variables (or CLI flags) and passed down."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BATCHLINE_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Holds batchline.db, models/ and buckets/ (the embedded gs://).")
    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8080, description="Port of the AutoML v1 REST API.")
    database_url: str = Field(
        "",
        description="SQLAlchemy URL of the job store; empty means sqlite:///DATA_DIR/batchline.db. "
        "postgresql://user@host/db uses PostgreSQL (extra: postgres).",
    )
    storage: Literal["local", "gcs"] = Field(
        "local",
        description="Where gs:// lives: 'local' = DATA_DIR/buckets/BUCKET/KEY, 'gcs' = Google Cloud "
        "Storage through gcsfs (extra: gcs; honours STORAGE_EMULATOR_HOST).",
    )
    read_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Local folders that file:// and bare paths may read (never write) besides DATA_DIR/buckets, "
        "separated by ':'.",
    )
    write_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Local folders that jobs may write their outputs into (and read) besides the existing buckets of "
        "DATA_DIR/buckets, separated by ':'.",
    )
    batch_size: int | None = Field(None, ge=1, description="Inference batch size; default: the model's batch_size.")
    io_threads: int = Field(16, ge=1, description="Concurrent reads per job (object stores want many).")
    decode_processes: int = Field(
        default_factory=lambda: len(os.sched_getaffinity(0)),
        ge=1,
        description="Decoding processes of the worker, started at its first batch job; default: one per core.",
    )
    read_timeout_seconds: float = Field(
        120.0,
        gt=0,
        description="An input whose read and decode take longer fails with DEADLINE_EXCEEDED (its decoder is "
        "replaced); the job goes on.",
    )
    shard_size: int = Field(1000, ge=1, description="Inputs per output shard (the unit of commit and resume).")
    max_failed_ratio: float = Field(
        0.5, ge=0, le=1, description="A batch job fails when more than this share of its inputs failed."
    )
    lease_seconds: float = Field(15.0, gt=0, description="A crashed worker's job is taken over after this long.")
    examples_dir: Path | None = Field(
        None, description="Models registered on first start (default: the repo's examples/models, if present)."
    )
    intra_op_threads: int = Field(
        0,
        ge=0,
        description="ONNX Runtime threads per session; 0 = one per core online, cores / streams in batch jobs.",
    )
    inference_streams: int = Field(
        0,
        ge=0,
        description="Batches a batch job runs through its model at once, each postprocessed by the thread that ran "
        "it; 0 = one per core on CPU (single-threaded runs waste less than one run split across threads), two on a "
        "GPU (one batch runs while the other's outputs are postprocessed).",
    )
    vertex_port: int = Field(
        0, ge=0, le=65535, description="Port of the Vertex AI v1 REST API (batchPredictionJobs, models); 0 = off."
    )

    @property
    def cores(self) -> int:
        return len(os.sched_getaffinity(0))

    def batch_streams(self, device: str) -> int:
        return self.inference_streams or (2 if device == "cuda" else self.cores)

    @property
    def batch_intra_op_threads(self) -> int:
        """Each stream's share of the cores, unless set."""
        return self.intra_op_threads or max(1, self.cores // (self.inference_streams or self.cores))

    @field_validator("read_roots", "write_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return [p for p in value.split(os.pathsep) if p]
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'batchline.db').resolve()}"

    @property
    def default_examples_dir(self) -> Path | None:
        if self.examples_dir is not None:
            return self.examples_dir
        repo_examples = Path(__file__).resolve().parents[2] / "examples" / "models"
        return repo_examples if repo_examples.is_dir() else None
