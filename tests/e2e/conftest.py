"""End-to-end fixtures: the real `batchline serve` process, started as a user starts it, on 127.0.0.1 only.

`ServerProcess` owns one server on one data dir; it can be stopped (SIGTERM), killed (SIGKILL) and started again
on the same data dir. Its stdout and stderr go to a log file; when a test fails, the logs of the servers it used
are added to the failure report.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import make_color_model

REPO = Path(__file__).resolve().parents[2]
PROJECT_LOCATION = "projects/p/locations/us-central1"
READY_PATH = f"/v1/{PROJECT_LOCATION}/models"
LOG_TAIL_LINES = 150

_SERVERS: list[ServerProcess] = []  # every server of the session, for failure reports


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a server (or the CLI) runs with: no stray BATCHLINE_* settings, no example models."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHLINE_")}
    env["BATCHLINE_EXAMPLES_DIR"] = str(data_dir.parent / "no-examples-here")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class ServerProcess:
    """`python -m batchline serve` on a free 127.0.0.1 port over one data dir; with `vertex`, the Vertex AI API
    on a second free port too."""

    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, log_dir: Path | None = None, vertex: bool = False
    ):
        self.data_dir = data_dir
        self.vertex = vertex
        self.vertex_port: int | None = None
        self.env = server_env(data_dir, env)
        self.log_path = (log_dir or data_dir.parent) / f"server-{len(_SERVERS) + 1}.log"
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.last_alive = 0.0
        _SERVERS.append(self)

    @property
    def url(self) -> str:
        assert self.port is not None, "server not started"
        return f"http://127.0.0.1:{self.port}"

    @property
    def vertex_url(self) -> str:
        assert self.vertex_port is not None, "server not started with vertex=True"
        return f"http://127.0.0.1:{self.vertex_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60) -> ServerProcess:
        assert not self.running, "server already running"
        self.port = free_port()
        self.starts += 1
        command = [
            sys.executable,
            "-m",
            "batchline",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        if self.vertex:
            self.vertex_port = free_port()
            command += ["--vertex-port", str(self.vertex_port)]
        with self.log_path.open("a") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(command)}\n")
            log.flush()
            self.proc = subprocess.Popen(
                command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.last_alive = time.time()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"batchline serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                ready = [self.url, *([self.vertex_url] if self.vertex else [])]
                if all(httpx.get(url + READY_PATH, timeout=2).status_code == 200 for url in ready):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"batchline serve did not answer within {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM, as Ctrl-C or a service manager would; SIGKILL if it does not exit in time."""
        if not self.running:
            return self.proc.returncode if self.proc else None
        self.last_alive = time.time()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int | None:
        """SIGKILL: the process dies at once, as in a crash or an OOM kill."""
        if not self.running:
            return self.proc.returncode if self.proc else None
        self.last_alive = time.time()
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(10)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        started = call.start - 1
        for server in _SERVERS:
            if server.running or server.last_alive >= started:
                report.sections.append((f"batchline server log {server.log_path}", server.log_tail()))


def make_data_dir(root: Path) -> Path:
    """A data dir with the colour model (id `colors`) and an empty bucket gs://b."""
    from batchline.models.repository import ModelRepository

    data = root / "data"
    (data / "buckets" / "b").mkdir(parents=True)
    ModelRepository(data / "models").import_folder(make_color_model(root / "colors-src"))
    return data


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    """start_server(data_dir, env={...}) -> a started ServerProcess; every one is stopped at teardown."""
    started: list[ServerProcess] = []

    def start(data_dir: Path, env: dict[str, str] | None = None) -> ServerProcess:
        server = ServerProcess(data_dir, env, log_dir=tmp_path)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
