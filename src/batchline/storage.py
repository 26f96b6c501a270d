"""Storage URIs on top of fsspec: gs:// (embedded bucket folder or real GCS), s3://, file:// and local paths.

Every access goes through `locate`, which is where confinement happens: a local path outside the folders it may
be read from (the embedded buckets and the operator's read roots) or written to (an existing bucket and the
operator's write roots), or a bucket key that climbs out of its bucket, is PERMISSION_DENIED. Local files are then
checked again as opened: what the open file descriptor is must be a regular file inside those folders, so a folder
swapped for a symbolic link between the check and the open is caught, and a FIFO or device is never read.
Messages name the user's URI, never the server's own paths.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import fsspec

from batchline.config import Settings
from batchline.errors import BatchlineError, Internal, InvalidArgument, NotFound, PermissionDenied

WILDCARDS = "*?["
WHOLE_READ_LIMIT = 30 * 1024 * 1024  # whole reads are for small objects (images, input files); streams for the rest
_NAME_MAX = 255  # bytes in one path segment, on the file systems the embedded buckets live on
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC  # a FIFO opens at once, and is refused


@dataclass(frozen=True)
class Location:
    fs: fsspec.AbstractFileSystem
    path: str
    uri: str
    through_link: bool = False  # a local path whose real place differs from where it was asked for
    roots: tuple[str, ...] = ()  # a local path: the folders it must stay within (checked again once opened)

    @property
    def is_local(self) -> bool:
        return "file" in self.fs.protocol


class Storage:
    def __init__(self, settings: Settings):
        self.buckets_root = (settings.data_dir / "buckets").resolve()
        # The data dir itself is not a root: its database and models are nobody's input.
        self.write_roots = tuple(str(p.resolve()) for p in settings.write_roots)  # besides existing buckets
        # What a job wrote, it may read back (the writers check their own staged files).
        self.read_roots = (str(self.buckets_root), *(str(p.resolve()) for p in settings.read_roots), *self.write_roots)
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

    def locate(self, uri: str, write: bool = False) -> Location:
        """Where `uri` lives, if it may be read (or, with `write`, written); PERMISSION_DENIED if not."""
        if "\0" in uri:
            raise InvalidArgument(f"{uri!r} holds a NUL character")
        scheme, sep, rest = uri.partition("://")
        if not sep:
            return self._local_path(uri, uri, write)
        scheme = scheme.lower()
        if scheme == "file":
            return self._local_path(rest, uri, write)
        if scheme == "gs" and self.gs_backend == "local":
            return self._embedded_bucket(rest, uri, write)
        if scheme in ("gs", "s3"):
            bucket, _, key = rest.partition("/")
            _check_key(key, uri)
            return Location(self._remote_fs(scheme), f"{bucket}/{posixpath.normpath(key) if key else ''}", uri)
        raise InvalidArgument(f"unsupported storage URI {uri!r}; use gs://, s3://, file:// or a local path")

    def _local_path(self, raw: str, uri: str, write: bool) -> Location:
        asked = os.path.abspath(raw)
        path = _realpath(asked, uri)
        roots = self._write_roots_for(path, uri) if write else self.read_roots
        if not any(_within(path, root) for root in roots):
            raise PermissionDenied(_outside_message(uri, write))
        return Location(self._local, path, uri, through_link=path != asked, roots=roots)

    def _write_roots_for(self, path: str, uri: str) -> tuple[str, ...]:
        """A local path may be written inside an existing bucket (never making a new one) or a write root."""
        if _within(path, str(self.buckets_root)):
            bucket = os.path.relpath(path, self.buckets_root).split(os.sep)[0]
            if bucket == "." or not os.path.isdir(self.buckets_root / bucket):
                raise NotFound(f"{uri} is not in an existing bucket; buckets are made by the operator, not by jobs")
            return (str(self.buckets_root / bucket),)
        return self.write_roots

    def _embedded_bucket(self, rest: str, uri: str, write: bool) -> Location:
        bucket, _, key = rest.partition("/")
        if not bucket or bucket in (".", "..") or "\\" in bucket:
            raise InvalidArgument(f"{uri} has no valid bucket name")
        _check_key(key, uri)
        if write and (missing := self._missing_bucket(uri)):  # buckets are the operator's to make
            raise NotFound(missing)
        bucket_dir = str(self.buckets_root / bucket)
        asked = os.path.normpath(os.path.join(bucket_dir, key))
        path = _realpath(asked, uri)  # follows symlinks: they must not lead out either
        if not _within(path, bucket_dir):
            raise PermissionDenied(f"{uri} points outside bucket gs://{bucket}")
        return Location(self._local, path, uri, through_link=path != asked, roots=(bucket_dir,))

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
    def read(self, uri: str, max_bytes: int = WHOLE_READ_LIMIT) -> bytes:
        """The whole object; NOT_FOUND if missing, INVALID_ARGUMENT if over max_bytes or not a regular file."""
        loc = self.locate(uri)
        try:
            if loc.is_local:  # skips fsspec's wrapper: this runs once per input on the hot path
                fd, size = self._open_confined(loc)
                with os.fdopen(fd, "rb") as handle:
                    data = handle.read(min(size, max_bytes) + 1)
            else:
                with loc.fs.open(loc.path, "rb") as handle:
                    data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise self._os_error(exc, uri) from None
        if len(data) > max_bytes:
            raise InvalidArgument(f"{uri} is larger than the {max_bytes // (1024 * 1024)} MB limit")
        return data

    @contextlib.contextmanager
    def open(self, uri: str) -> Iterator[IO[bytes]]:
        """An object opened for reading as a seekable file, never read whole (a video); the errors of `read`."""
        loc = self.locate(uri)
        try:
            handle = os.fdopen(self._open_confined(loc)[0], "rb") if loc.is_local else loc.fs.open(loc.path, "rb")
        except OSError as exc:
            raise self._os_error(exc, uri) from None
        with handle:
            yield handle

    def _open_confined(self, loc: Location) -> tuple[int, int]:
        """Open a local file for reading and check what was opened, not the path: a regular file, really inside
        its roots. Returns the descriptor and the file's size."""
        fd = os.open(loc.path, _OPEN_FLAGS)
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a folder")
            if not stat.S_ISREG(info.st_mode):
                raise InvalidArgument(
                    f"{loc.uri} is not a regular file (a FIFO, socket or device); only files can be inputs"
                )
            if not any(_within(_opened_path(fd, loc.path), root) for root in loc.roots):
                raise PermissionDenied(_outside_message(loc.uri, write=False))
        except BaseException:
            os.close(fd)
            raise
        return fd, info.st_size

    def _os_error(self, exc: OSError, uri: str) -> BatchlineError:
        """An operating system error as the user's error, in terms of their URI (never the server's paths)."""
        if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
            return NotFound(self._missing_bucket(uri) or f"{uri} does not exist")
        if isinstance(exc, PermissionError):
            return PermissionDenied(f"{uri} cannot be read: permission denied")
        if exc.errno == errno.ENAMETOOLONG:
            return InvalidArgument(f"{uri} has a name segment over {_NAME_MAX} bytes, more than this storage allows")
        if exc.errno == errno.ELOOP:
            return PermissionDenied(f"{uri} is reached through a loop of symbolic links")
        return Internal(f"{uri} cannot be read: {exc.strerror or type(exc).__name__}")

    def _missing_bucket(self, uri: str) -> str | None:
        """A message if `uri` is in an embedded bucket that does not exist."""
        scheme, _, rest = uri.partition("://")
        folder = self.buckets_root / rest.partition("/")[0]
        if scheme.lower() != "gs" or self.gs_backend != "local" or folder.is_dir():
            return None
        return (
            f"bucket gs://{folder.name} does not exist; with embedded storage an operator creates it as the folder "
            f"buckets/{folder.name} of the data dir"
        )

    # -- writing
    def check_output_prefix(self, uri: str) -> None:
        """Fail early if results could never be written there: INVALID_ARGUMENT, in the terms of `uri`."""
        loc = self.locate(uri.rstrip("/") + "/", write=True)
        if not loc.is_local:
            return
        try:
            os.makedirs(loc.path, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise InvalidArgument(
                f"output prefix {uri} runs through an object that is a file, not a folder; choose another prefix"
            ) from None
        except OSError as exc:
            raise self._os_error(exc, uri) from None

    def publish(self, uri: str, data: bytes) -> None:
        """Write a whole file so that no reader ever sees part of it."""
        loc = self.locate(uri, write=True)
        if not loc.is_local:  # an object store upload is all-or-nothing
            loc.fs.pipe_file(loc.path, data)
            return
        os.makedirs(posixpath.dirname(loc.path), exist_ok=True)
        folder = self._open_folder(loc, posixpath.dirname(loc.path))
        name, tmp = posixpath.basename(loc.path), f".{uuid.uuid4().hex}.tmp"
        try:  # written and renamed inside the opened, checked folder: a rename within one folder is atomic
            with open(tmp, "xb", opener=lambda path, flags: os.open(path, flags | os.O_NOFOLLOW, dir_fd=folder)) as f:
                f.write(data)
            os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:  # a failed write (disk full) must not leave its half-written tmp behind
            _remove(tmp, folder)
            raise
        finally:
            os.close(folder)

    def _open_folder(self, loc: Location, path: str) -> int:
        """A descriptor of a local folder that is really inside the location's roots, as opened."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if not any(_within(_opened_path(fd, path), root) for root in loc.roots):
            os.close(fd)
            raise PermissionDenied(_outside_message(loc.uri, write=True))
        return fd

    def move(self, src: str, dst: str) -> None:
        a, b = self.locate(src, write=True), self.locate(dst, write=True)
        if a.is_local:
            source = self._open_folder(a, posixpath.dirname(a.path))
            target = self._open_folder(b, posixpath.dirname(b.path))
            try:
                name_a, name_b = posixpath.basename(a.path), posixpath.basename(b.path)
                os.replace(name_a, name_b, src_dir_fd=source, dst_dir_fd=target)
            finally:
                os.close(source)
                os.close(target)
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
        loc = self.locate(uri, write=True)
        if loc.through_link:  # never follow a link into a tree that is not ours
            raise PermissionDenied(f"{uri} is reached through a symbolic link; batchline will not delete it")
        if loc.fs.exists(loc.path):
            loc.fs.rm(loc.path, recursive=True)


def _realpath(path: str, uri: str) -> str:
    """The real place of a path; NOT_FOUND if a link on the way vanishes while it is followed."""
    try:
        return os.path.realpath(path)
    except OSError:
        raise NotFound(f"{uri} does not exist") from None


def _opened_path(fd: int, path: str) -> str:
    """Where an open descriptor really is (Linux: its /proc link). Elsewhere, the path's real place now, which a
    swap between the open and this call could still fool."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)


def _remove(name: str, folder: int) -> None:
    try:
        os.unlink(name, dir_fd=folder)
    except FileNotFoundError:
        pass


def _outside_message(uri: str, write: bool) -> str:
    verb, setting = ("write", "BATCHLINE_WRITE_ROOTS") if write else ("read", "BATCHLINE_READ_ROOTS")
    return f"{uri} is outside the storage batchline may {verb}; an operator can allow local folders with {setting}"


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _check_key(key: str, uri: str) -> None:
    if any(part == ".." for part in key.split("/")):
        raise PermissionDenied(f"{uri}: '..' is not allowed in object paths")


def join(prefix: str, name: str) -> str:
    return prefix.rstrip("/") + "/" + name
