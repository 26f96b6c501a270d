"""Where models live: DATA_DIR/models/<id>/ holding model.yaml and the artifact."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from batchline.errors import AlreadyExists, InvalidArgument, NotFound
from batchline.models.manifest import MANIFEST_FILE, Manifest, dump_manifest, load_manifest


@dataclass(frozen=True)
class StoredModel:
    manifest: Manifest
    path: Path
    create_time: datetime

    @property
    def artifact_path(self) -> Path:
        return self.path / self.manifest.artifact


class ModelRepository:
    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def get(self, model_id: str) -> StoredModel:
        folder = self.root / model_id
        if "/" in model_id or model_id.startswith(".") or not (folder / MANIFEST_FILE).is_file():
            raise NotFound(f"model {model_id!r} not found; `batchline models list` shows the models there are")
        stat = (folder / MANIFEST_FILE).stat()
        created = datetime.fromtimestamp(stat.st_mtime, UTC)
        return StoredModel(load_manifest(folder), folder, created)

    def list(self) -> list[StoredModel]:
        # Dot-folders are imports or deletes in progress (or left by a crash), not models.
        ids = sorted(
            p.name for p in self.root.iterdir() if not p.name.startswith(".") and (p / MANIFEST_FILE).is_file()
        )
        return [self.get(model_id) for model_id in ids]

    def delete(self, model_id: str) -> None:
        """Remove a model's folder; it disappears at once (a rename), then its files go."""
        folder = self.get(model_id).path
        trash = Path(tempfile.mkdtemp(prefix=".delete-", dir=self.root))
        folder.rename(trash / model_id)
        shutil.rmtree(trash)

    def import_folder(self, source: Path, model_id: str | None = None, display_name: str | None = None) -> StoredModel:
        """Copy a model folder in, after checking its manifest and that the runtime can load it."""
        from batchline.runtimes import load_runtime  # the runtime is heavy; only imports need it here

        manifest = load_manifest(source)
        updates = {k: v for k, v in {"id": model_id, "display_name": display_name}.items() if v}
        try:
            manifest = Manifest.model_validate({**manifest.model_dump(), **updates})
        except ValueError as exc:
            raise InvalidArgument(f"invalid --id or --display-name: {exc}") from exc
        target = self.root / manifest.id
        if target.exists():
            raise AlreadyExists(f"model {manifest.id!r} already exists in {self.root}; pass --id to pick another id")
        load_runtime(manifest, source / manifest.artifact, threads=1).close()
        staging = Path(tempfile.mkdtemp(prefix=".import-", dir=self.root))
        shutil.copytree(source, staging, dirs_exist_ok=True)
        dump_manifest(manifest, staging)
        staging.rename(target)
        return self.get(manifest.id)
