"""Storage URIs on top of fsspec: gs:// (embedded bucket folder or real GCS), s3://, file:// and local paths.

Every access goes through `locate`, which is where confinement happens: a local path outside the data dir and
the operator's allowed roots, or a bucket key that climbs out of its bucket, is PERMISSION_DENIED.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from dataclasses import dataclass
from typing import Any

import fsspec

from batchline.config import Settings
from batchline.errors import InvalidArgument, NotFound, PermissionDenied

MAX_IMAGE_BYTES = 30 * 1024 * 1024
WILDCARDS = "*?["


@dataclass(frozen=True)
class Location:
    fs: fsspec.AbstractFileSystem
    path: str
    uri: str
    through_link: bool = False  # a local path whose real place differs from where it was asked for

    @property
    def is_local(self) -> bool:
        return "file" in self.fs.protocol


class Storage:
    def __init__(self, settings: Settings):
        self.buckets_root = (settings.data_dir / "buckets").resolve()
        # The data dir itself is not a root: its database and models are nobody's input.
        self.local_roots = [p.resolve() for p in [self.buckets_root, *settings.allowed_roots]]
        self.gs_backend = settings.storage
        self.settings_json = settings.model_dump_json()  # how a decoder process makes the same Storage
        self._local = fsspec.filesystem("file")
        self._remote: dict[str, fsspec.AbstractFileSystem] = {}

    # -- where a URI lives
    def is_on_this_machine(self, uri: str) -> bool:
        """A local path or the embedded gs:// (then a decoder process reads it itself, beside its siblings, rather
        than one GIL-bound process resolving and reading every input); not an object store."""
        scheme, sep, _ = uri.partition("://")
        scheme = scheme.lower() if sep else "file"
        return scheme == "file" or (scheme == "gs" and self.gs_backend == "local")

    def locate(self, uri: str) -> Location:
        if "\0" in uri:
            raise InvalidArgument(f"{uri!r} holds a NUL character")
        scheme, sep, rest = uri.partition("://")
        if not sep:
            return self._local_path(uri, uri)
        scheme = scheme.lower()
        if scheme == "file":
            return self._local_path(rest, uri)
        if scheme == "gs" and self.gs_backend == "local":
            return self._embedded_bucket(rest, uri)
        if scheme in ("gs", "s3"):
            bucket, _, key = rest.partition("/")
            _check_key(key, uri)
            return Location(self._remote_fs(scheme), f"{bucket}/{posixpath.normpath(key) if key else ''}", uri)
        raise InvalidArgument(f"unsupported storage URI {uri!r}; use gs://, s3://, file:// or a local path")

    def _local_path(self, raw: str, uri: str) -> Location:
        asked = os.path.abspath(raw)
        path = os.path.realpath(asked)
        if not any(_within(path, str(root)) for root in self.local_roots):
            roots = ", ".join(str(r) for r in self.local_roots)
            raise PermissionDenied(
                f"{uri} is outside the folders batchline may read ({roots}); "
                "an operator can add folders with BATCHLINE_ALLOWED_ROOTS"
            )
        return Location(self._local, path, uri, through_link=path != asked)

    def _embedded_bucket(self, rest: str, uri: str) -> Location:
        bucket, _, key = rest.partition("/")
        if not bucket or bucket in (".", "..") or "\\" in bucket:
            raise InvalidArgument(f"{uri} has no valid bucket name")
        _check_key(key, uri)
        bucket_dir = str(self.buckets_root / bucket)
        asked = os.path.normpath(os.path.join(bucket_dir, key))
        path = os.path.realpath(asked)  # follows symlinks: they must not lead out either
        if not _within(path, bucket_dir):
            raise PermissionDenied(f"{uri} points outside bucket gs://{bucket}")
        return Location(self._local, path, uri, through_link=path != asked)

    def _remote_fs(self, scheme: str) -> fsspec.AbstractFileSystem:
        if scheme not in self._remote:
            if scheme == "gs":
                # gcsfs 2026.x stalls ~60 s per bucket probing hierarchical namespaces unless this is off.
                os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
            try:
                # No listings cache: other clients change buckets while a server runs, and a cached listing
                # would hide their new objects (reads of them would be NOT_FOUND) for the life of the process.
                self._remote[scheme] = fsspec.filesystem("gcs" if scheme == "gs" else "s3", use_listings_cache=False)
            except ImportError as exc:
                extra = "gcs" if scheme == "gs" else "s3"
                raise InvalidArgument(f"{scheme}:// needs `pip install batchline[{extra}]` ({exc})") from exc
        return self._remote[scheme]

    # -- reading
    def read(self, uri: str, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
        """The whole object; NOT_FOUND if missing, INVALID_ARGUMENT if over max_bytes."""
        loc = self.locate(uri)
        try:  # local files skip fsspec's wrapper: this runs once per input on the hot path
            with open(loc.path, "rb") if loc.is_local else loc.fs.open(loc.path, "rb") as handle:
                data = handle.read(_read_size(handle, loc, max_bytes))
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(self._missing_bucket(uri) or f"{uri} does not exist") from None
        except PermissionError:
            raise PermissionDenied(f"{uri} cannot be read: permission denied") from None
        if len(data) > max_bytes:
            raise InvalidArgument(f"{uri} is larger than the {max_bytes // (1024 * 1024)} MB limit")
        return data

    def _missing_bucket(self, uri: str) -> str | None:
        """A message if `uri` is in an embedded bucket that does not exist (checked only once a read failed)."""
        scheme, _, rest = uri.partition("://")
        folder = self.buckets_root / rest.partition("/")[0]
        if scheme.lower() != "gs" or self.gs_backend != "local" or folder.is_dir():
            return None
        return f"bucket gs://{folder.name} does not exist; with embedded storage it is the folder {folder}"

    # -- writing
    def check_output_prefix(self, uri: str) -> None:
        """Fail early if results could never be written there."""
        loc = self.locate(uri.rstrip("/") + "/")
        if missing := self._missing_bucket(uri):
            raise NotFound(missing)
        if loc.is_local:
            loc.fs.makedirs(loc.path, exist_ok=True)

    def publish(self, uri: str, data: bytes) -> None:
        """Write a whole file so that no reader ever sees part of it."""
        loc = self.locate(uri)
        if missing := self._missing_bucket(uri):  # buckets are the operator's to make, not a side effect of writes
            raise NotFound(missing)
        if loc.is_local:  # a rename within one folder is atomic
            loc.fs.makedirs(posixpath.dirname(loc.path), exist_ok=True)
            tmp = f"{loc.path}.{uuid.uuid4().hex}.tmp"
            try:
                loc.fs.pipe_file(tmp, data)
                os.replace(tmp, loc.path)
            except BaseException:  # a failed write (disk full) must not leave its half-written tmp behind
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                raise
        else:  # an object store upload is all-or-nothing
            loc.fs.pipe_file(loc.path, data)

    def move(self, src: str, dst: str) -> None:
        a, b = self.locate(src), self.locate(dst)
        if a.is_local:
            os.replace(a.path, b.path)
        else:  # copy + delete, not fs.mv: gcsfs first tries objects.moveTo, and where that is missing (the GCS
            # emulators) it retries it for ~30 s per file before falling back to this same copy + delete
            a.fs.cp_file(a.path, b.path)
            a.fs.rm_file(a.path)

    def exists(self, uri: str) -> bool:
        loc = self.locate(uri)
        return loc.fs.exists(loc.path)

    def list_files(self, prefix_uri: str) -> list[str]:
        """URIs of the files directly under a folder URI, sorted; [] if there is none."""
        loc = self.locate(prefix_uri)
        try:
            entries = loc.fs.ls(loc.path, detail=False)
        except FileNotFoundError:
            return []
        base = prefix_uri.rstrip("/")
        return sorted(f"{base}/{posixpath.basename(e.rstrip('/'))}" for e in entries)

    def expand(self, uri: str) -> list[str]:
        """The files a URI with wildcards (`*`, `**`, `?`, `[...]`, as gsutil reads them) matches, sorted; a URI
        without wildcards as it is. Each match is a URI of the same form, checked again when it is read."""
        first = min((uri.index(c) for c in WILDCARDS if c in uri), default=-1)
        if first < 0:
            return [uri]
        folder = uri[:first].rsplit("/", 1)[0]  # the part above the first wildcard: matches are named from it
        base, pattern = self.locate(folder + "/"), self.locate(uri)
        try:
            found = pattern.fs.glob(pattern.path, detail=True)
        except FileNotFoundError:
            return []
        except ValueError as exc:  # fsspec's pattern rules, e.g. '**' only as a whole path segment
            raise InvalidArgument(f"{uri} is not a valid wildcard pattern: {exc}") from None
        root = base.path.rstrip("/")
        files = [path for path, info in found.items() if info.get("type") == "file"]
        return sorted(f"{folder}/{posixpath.relpath(path, root)}" for path in files)

    def delete_tree(self, uri: str) -> None:
        loc = self.locate(uri)
        if loc.through_link:  # never follow a link into a tree that is not ours
            raise PermissionDenied(f"{uri} is reached through a symbolic link; batchline will not delete it")
        if loc.fs.exists(loc.path):
            loc.fs.rm(loc.path, recursive=True)


def _read_size(handle: Any, loc: Location, max_bytes: int) -> int:
    """How much to read: one byte over the limit tells a file too large. A local file's own size, when it has
    one, spares allocating the limit (30 MB) for every read: 40 us of the 50 an 80 KB image took."""
    size = os.fstat(handle.fileno()).st_size if loc.is_local else 0
    return min(size, max_bytes) + 1 if size else max_bytes + 1


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _check_key(key: str, uri: str) -> None:
    if any(part == ".." for part in key.split("/")):
        raise PermissionDenied(f"{uri}: '..' is not allowed in object paths")


def join(prefix: str, name: str) -> str:
    return prefix.rstrip("/") + "/" + name
