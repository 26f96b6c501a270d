"""Integration fixtures: real servers batchline talks to, started for the test session and thrown away after.

* `postgres_url`: a throwaway PostgreSQL (15 preferred) from the machine's own binaries, on 127.0.0.1 only, its
  unix socket in its temp dir. As root, initdb and pg_ctl run as the `postgres` user.
* `job_store`: a fresh JobStore, once on SQLite and once on PostgreSQL (a new database per test).
* `gcs_emulator` / `gcs_bucket`: a real gcp-storage-emulator process and a fresh bucket in it; gcsfs reaches it
  through STORAGE_EMULATOR_HOST.
* `s3_server` / `s3_bucket`: a real moto S3 server process (`moto_server`) and a fresh bucket in it; s3fs reaches
  it through the standard AWS_ENDPOINT_URL (botocore's own setting), with dummy AWS_* credentials.

A missing PostgreSQL or emulator FAILS the tests that need it, saying what to install, unless
BATCHLINE_TEST_ALLOW_SKIP=1 is set (then they are skipped).
"""

from __future__ import annotations

import os

# Both must be set before gcsfs / google.auth are imported: gcsfs 2026.x picks its (slow, HNS-probing) file
# system class at import, and google.auth reads NO_GCE_CHECK at import (no metadata-server probes here).
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
os.environ.setdefault("NO_GCE_CHECK", "true")

import glob  # noqa: E402
import pwd  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from batchline.store import JobStore  # noqa: E402

ALLOW_SKIP = os.environ.get("BATCHLINE_TEST_ALLOW_SKIP") == "1"
PG_INSTALL_HINT = (
    "install the PostgreSQL 15 server binaries (Debian/Ubuntu, as root: `apt-get update && apt-get install -y "
    "postgresql-15`), or point BATCHLINE_TEST_PG_BINDIR at a folder holding initdb and pg_ctl"
)


def missing(what: str) -> None:
    """A dependency of the integration tests is absent: fail loudly, or skip if BATCHLINE_TEST_ALLOW_SKIP=1."""
    if ALLOW_SKIP:
        pytest.skip(f"{what} (skipped: BATCHLINE_TEST_ALLOW_SKIP=1)")
    pytest.fail(f"{what}\n(set BATCHLINE_TEST_ALLOW_SKIP=1 to skip these tests instead)", pytrace=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{_tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"did not listen on 127.0.0.1:{port} within {timeout} s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------------------------- PostgreSQL


def _pg_bindir() -> Path | None:
    wanted = os.environ.get("BATCHLINE_TEST_PG_BINDIR")
    if wanted:  # an explicit choice: no guessing past it
        folder = Path(wanted)
        return folder if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file() else None
    candidates = [Path("/usr/lib/postgresql/15/bin")]
    candidates += sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p).parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
        reverse=True,
    )
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


class PostgresServer:
    """initdb + pg_ctl in a temp dir; as root, every server command runs as the `postgres` user."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        # As root the temp dir must be reachable by `postgres`: /tmp, not a root-only TMPDIR.
        self.root = Path(tempfile.mkdtemp(prefix="batchline-pg-", dir="/tmp" if self.as_root else None))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        if self.as_root:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root, ignore_errors=True)
                raise RuntimeError("running as root, but there is no `postgres` user to run the server as") from None
            os.chown(self.root, user.pw_uid, user.pw_gid)

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            if shutil.which("runuser"):
                command = ["runuser", "-u", "postgres", "--", *command]
            else:
                command = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(command)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(
                f"{shlex.join(command)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}\n{_tail(self.log)}"
            )
        return done

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        for attempt in range(3):  # a free port can be taken between probing and binding it
            self.port = free_port()
            options = " ".join(
                [
                    "-c listen_addresses=127.0.0.1",
                    f"-p {self.port}",
                    f"-k {self.root}",  # the unix socket lives in the temp dir, not /var/run/postgresql
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                    "-c max_connections=200",
                ]
            )
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options, "start")
                return
            except RuntimeError:
                if attempt == 2 or "could not bind" not in _tail(self.log):
                    raise

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql)

    def empty(self, database: str) -> None:
        """Drop everything in `database` (its connections too): as good as new, without CREATE DATABASE's ~1 s."""
        self.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )
        self.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public", database)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = _pg_bindir()
    if bindir is None:
        missing(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {PG_INSTALL_HINT}")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing("psycopg is not installed: `pip install -e '.[test]'` (or `pip install 'psycopg[binary]'`)")
    try:
        server = PostgresServer(bindir)
    except RuntimeError as exc:
        missing(f"cannot run PostgreSQL: {exc}; {PG_INSTALL_HINT}")
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """postgresql://postgres@127.0.0.1:PORT/batchline on the session's throwaway server."""
    postgres_server.execute("CREATE DATABASE batchline")
    return postgres_server.url("batchline")


@pytest.fixture(scope="session")
def _scratch_database(postgres_server: PostgresServer) -> str:
    postgres_server.execute("CREATE DATABASE scratch")
    return "scratch"


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer, _scratch_database: str) -> Iterator[str]:
    """An empty database for one test (tables dropped before and after it, open connections closed)."""
    postgres_server.empty(_scratch_database)
    yield postgres_server.url(_scratch_database)
    postgres_server.empty(_scratch_database)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def job_store(store_url: str) -> Iterator[JobStore]:
    """A fresh JobStore, on SQLite and on PostgreSQL."""
    store = JobStore(store_url)
    yield store
    store.close()


# ------------------------------------------------------------------------------------------ GCS (the emulator)

# The emulator's HTTPServer keeps the listen backlog of 5, which stalls concurrent clients (batchline fetches
# inputs from 16 threads): raise it before the emulator starts serving.
_EMULATOR_MAIN = (
    "import http.server, sys; http.server.HTTPServer.request_queue_size = 1024; "
    "from gcp_storage_emulator.__main__ import main; main(sys.argv[1:])"
)


@dataclass
class GcsEmulator:
    url: str
    log: Path
    make_fs: Callable[[], object]

    def create_bucket(self, name: str) -> str:
        self.make_fs().mkdir(name)
        return name


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    """A real gcp-storage-emulator (in memory) in its own process; STORAGE_EMULATOR_HOST points at it."""
    try:
        import gcp_storage_emulator  # noqa: F401
        import gcsfs
    except ImportError as exc:
        missing(f"{exc.name} is not installed: `pip install -e '.[test]'` (gcsfs and gcp-storage-emulator)")
    if gcsfs.GCSFileSystem.__name__ != "GCSFileSystem":
        pytest.fail(
            "gcsfs was imported with its experimental HNS support on (it stalls ~60 s per bucket on the emulator); "
            "set GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false before anything imports gcsfs",
            pytrace=False,
        )
    folder = tmp_path_factory.mktemp("gcs-emulator")
    log = folder / "emulator.log"
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _EMULATOR_MAIN, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for_port(port, proc, 30, log)
    except RuntimeError as exc:
        proc.kill()
        pytest.fail(f"gcp-storage-emulator did not start: {exc}", pytrace=False)
    url = f"http://127.0.0.1:{port}"
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = url

    def make_fs() -> object:  # its own instance: listing the root here must not leave entries in shared caches
        return gcsfs.GCSFileSystem(token="anon", skip_instance_cache=True)

    try:
        yield GcsEmulator(url, log, make_fs)
    finally:
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def gcs_bucket(gcs_emulator: GcsEmulator) -> str:
    """A new, empty bucket in the emulator (its name; lower case, unique per test)."""
    return gcs_emulator.create_bucket(f"it-{uuid.uuid4().hex[:12]}")


# ------------------------------------------------------------------------------------------ S3 (moto's server)

# What the session sets while moto runs: botocore (under s3fs) reads all of these itself, so batchline's s3:// needs
# no setting of its own to reach the server. Values there before are put back afterwards.
_S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ENDPOINT_URL": "",  # the server's URL, once it listens
}
# ...and what is unset meanwhile: any of these from the machine's environment would steer botocore elsewhere.
_S3_ENV_UNSET = (
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL_S3",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_REGION",
)


@dataclass
class S3Server:
    url: str
    log: Path
    make_fs: Callable[[], object]

    def create_bucket(self, name: str) -> str:
        self.make_fs().mkdir(name)
        return name


def _clear_s3fs_instances() -> None:
    """Forget cached S3FileSystem instances: one made before (or after) the session would keep its endpoint."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real moto S3 server (in memory) in its own process; AWS_ENDPOINT_URL and dummy credentials point at it."""
    try:
        import moto.server  # noqa: F401
        import s3fs
    except ImportError as exc:
        missing(f"{exc.name} is not installed: `pip install -e '.[test]'` (s3fs and moto[server])")
    folder = tmp_path_factory.mktemp("s3-server")
    log = folder / "moto.log"
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for_port(port, proc, 30, log)
    except RuntimeError as exc:
        proc.kill()
        pytest.fail(f"moto_server did not start: {exc}", pytrace=False)
    url = f"http://127.0.0.1:{port}"
    previous = {name: os.environ.get(name) for name in (*_S3_ENV, *_S3_ENV_UNSET)}
    os.environ.update(_S3_ENV, AWS_ENDPOINT_URL=url)
    for name in _S3_ENV_UNSET:
        os.environ.pop(name, None)
    _clear_s3fs_instances()

    def make_fs() -> object:  # its own instance: listings made here must not leave entries in shared caches
        return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)

    try:
        yield S3Server(url, log, make_fs)
    finally:
        _clear_s3fs_instances()
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket in the moto server (its name; lower case, unique per test)."""
    return s3_server.create_bucket(f"it-{uuid.uuid4().hex[:12]}")
