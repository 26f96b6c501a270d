"""batchline's speed, measured side by side in one run (see shared BENCHMARKS.md and bench/README.md).

    .venv/bin/python bench/run.py --n 2000                        # every figure and the bars, MobileNetV3-Small
    .venv/bin/python bench/run.py --n 2000 --model yolov8n-320    # the same for the YOLOv8n detector
    .venv/bin/python bench/run.py --rss-check                     # peak server RSS at N = 2,000 vs N = 20,000

Inputs: N 640x480 JPEGs (generated once, cached in bench/out/images-640x480-q90/) and a model with random weights,
built with a torch venv on first use and cached in bench/out/MODEL/: MobileNetV3-Small 224 (bench/mobilenet.py) or
YOLOv8n 320 (bench/yolov8n.py). Each run makes a fresh data dir under bench/out/, imports the model with
`batchline models import`, and measures:

  model-only   ONNX Runtime alone on pre-decoded tensors, best of batch 1 / 8 / 32, each as one run at a time on
               all cores (batchline's session, and ONNX Runtime's defaults, which spin) and as one single-threaded
               run per core at once (what batch jobs do on CPU)
  decode-only  batchline's preprocessor.batch (read + decode + resize + normalise) on every core,
               a pool of cores-many threads and one of cores-many processes; the faster counts
  limit        n / (c_dec + c_model), c_x = n / rate_x: core-seconds per image in each stage; model-only and
               decode-only are measured before and after the end-to-end jobs and each rate is the mean of the two
               (the shared host's speed drifts by 10 % over minutes)
  end-to-end   the real `batchline serve` subprocess: a job over HTTP, poll until it ends; N / (done - submit)
               by the server's clock (the job's createTime to when it ended); the poll that sees it done comes up
               to --poll later, and is printed beside. The median of --e2e-repeats jobs (default 3): one job of
               2,000 images lasts 3.5 s, short enough for the shared host to move it by 10 %. The jobs do the
               naive loop's work: the classifier's are Vertex AI batchPredictionJobs with maxPredictions 5 and
               confidenceThreshold 0 (the top 5 labels; AutoML's batchPredict has no top-k), the detector's AutoML
               batchPredict with score_threshold 0.0002 (see MODELS)
  naive        one Python loop on a default InferenceSession: read, PIL decode, resize, normalise, session.run on
               one image, postprocess (softmax top 5; for the detector batchline's threshold + NMS), append a
               JSON line
  six-image    submit-to-done time of a six-image job of the same kind on the warm server (polled every 20 ms)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
OUT = BENCH / "out"
WIDTH, HEIGHT, QUALITY = 640, 480, 90
IMAGES = OUT / f"images-{WIDTH}x{HEIGHT}-q{QUALITY}"
PROJECT, LOCATION, BUCKET = "bench", "us-central1", "bench"
DEFAULT_TORCH_PYTHON = "/tmp/benchenv/bin/python"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The bars from the issue (set for N = 2,000 on the 2-core machine).
BAR_LIMIT_RATIO = 0.8
BAR_NAIVE_RATIO = 2.0
BAR_SIX_SECONDS = 1.5
BAR_RSS_GROWTH = 1.25


@dataclass(frozen=True)
class BenchModel:
    """A model the bench measures: the script that builds it into bench/out/<key>/, the API its end-to-end jobs go
    through and what they are asked."""

    key: str
    title: str
    builder: str
    surface: str = "automl"  # "automl": batchPredict operations; "vertex": batchPredictionJobs (see JOB_KINDS)
    # Every job's params (AutoML: strings) or modelParameters (Vertex: JSON values); the naive loop's too.
    params: dict[str, Any] = field(default_factory=dict)
    params_why: str = ""
    labels_per_image: int | None = None  # every result line must hold exactly this many (the naive loop's count)

    @property
    def folder(self) -> Path:
        return OUT / self.key


MODELS = {
    # Vertex, not AutoML: an AutoML job would write no labels at all (none passes its default threshold, and
    # batchPredict has no top-k), far less work than the naive loop's top 5.
    "mobilenetv3-small": BenchModel(
        "mobilenetv3-small", "MobileNetV3-Small", "mobilenet.py", "vertex",
        {"confidenceThreshold": 0.0, "maxPredictions": 5},
        "the top 5 labels per image, as the naive loop writes them (random weights put no label over AutoML's "
        "default score_threshold 0.5, and AutoML's batchPredict has no top-k)",
        labels_per_image=5,
    ),
    "yolov8n-320": BenchModel(
        "yolov8n-320", "YOLOv8n", "yolov8n.py", "automl", {"score_threshold": "0.0002"},
        # Measured on the first 200 bench images with bench/yolov8n.py's seed-0 model.
        "the naive loop's postprocess takes them too; random weights score every box near the class prior (~1e-5 "
        "to 2e-4): at the default 0.5 no box passes; at 0.0002 each image keeps 16-100 boxes after NMS (median "
        "~30), like a busy photo",
    ),
}


# ---------------------------------------------------------------------------------------------------- the machine
def n_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def system_busy_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine, from /proc/stat; (0, 0) where there is none."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle, sum(fields[:8])


def child_pids(pid: int) -> list[int]:
    """The live children of a process (the server's decoder processes)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its live children (the server and its decoder processes)."""
    return process_cpu_seconds(pid) + sum(process_cpu_seconds(child) for child in child_pids(pid))


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process (all its threads) so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        parts = stat[stat.rindex(")") + 2 :].split()
        return (int(parts[11]) + int(parts[12])) / CLK_TCK
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            times = psutil.Process(pid).cpu_times()
            return times.user + times.system
        except Exception:  # noqa: BLE001 - no way to tell; report nothing rather than fail the run
            return float("nan")


class CpuMeter:
    """Cores kept busy between start() and stop(): by one process and its children, and by the whole machine."""

    def __init__(self, pid: int | None = None):
        self.pid = pid

    def start(self) -> CpuMeter:
        self.t0 = time.perf_counter()
        self.proc0 = tree_cpu_seconds(self.pid) if self.pid else 0.0
        self.sys0 = system_busy_ticks()
        return self

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        proc = (tree_cpu_seconds(self.pid) - self.proc0) if self.pid else float("nan")
        busy1, total1 = system_busy_ticks()
        busy, total = busy1 - self.sys0[0], total1 - self.sys0[1]
        machine = (busy / total * n_all_cpus()) if total else float("nan")
        return {"wall_s": wall, "process_cpu_s": proc, "process_cores": proc / wall, "machine_cores": machine}


def n_all_cpus() -> int:
    return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------------- inputs
def ensure_model(model: BenchModel, torch_python: str) -> None:
    if (model.folder / "model.onnx").is_file() and (model.folder / "model.yaml").is_file():
        return
    if not Path(torch_python).exists():
        sys.exit(
            f"the model is not built yet and {torch_python} does not exist; make a torch venv once:\n"
            f"  python3 -m venv /tmp/benchenv && /tmp/benchenv/bin/pip install torch==2.13.0 onnx\n"
            f"(or pass --torch-python PYTHON_WITH_TORCH)"
        )
    print(f"building the model with {torch_python} bench/{model.builder} ...", flush=True)
    subprocess.run([torch_python, str(BENCH / model.builder), "--out", str(model.folder)], check=True)


_NOISE: np.ndarray | None = None


def _noise() -> np.ndarray:
    global _NOISE
    if _NOISE is None:  # one fixed noise field per process; each image takes a random window of it
        _NOISE = np.random.default_rng(12345).normal(0, 7, (2 * HEIGHT, 2 * WIDTH, 3)).astype(np.int16)
    return _NOISE


def make_jpeg(index: int) -> bytes:
    """A photo-like 640x480 JPEG (q90, ~80 KB): a smooth colour field, 8-19 flat shapes, sensor-like noise."""
    rng = np.random.default_rng(index)
    field_ = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(field_).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(8, 20))):
        x0, y0 = int(rng.integers(-100, WIDTH)), int(rng.integers(-100, HEIGHT))
        x1, y1 = x0 + int(rng.integers(20, 300)), y0 + int(rng.integers(20, 300))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=fill)
    oy, ox = int(rng.integers(0, HEIGHT)), int(rng.integers(0, WIDTH))
    pixels = np.asarray(image, dtype=np.int16) + _noise()[oy : oy + HEIGHT, ox : ox + WIDTH]
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=QUALITY)
    return buffer.getvalue()


def image_path(index: int) -> Path:
    return IMAGES / f"img_{index:06d}.jpg"


def _write_images(indices: list[int]) -> int:
    for index in indices:
        path = image_path(index)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(make_jpeg(index))
        tmp.replace(path)
    return len(indices)


def ensure_images(n: int, workers: int) -> list[Path]:
    """The first n cached JPEGs, generating those missing (in parallel); the same index always gives the same file."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(n) if not image_path(i).is_file()]
    if missing:
        print(f"generating {len(missing):,} {WIDTH}x{HEIGHT} JPEGs into {IMAGES} (cached) ...", flush=True)
        t0 = time.perf_counter()
        chunks = [missing[i : i + 100] for i in range(0, len(missing), 100)]
        with ProcessPoolExecutor(workers) as pool:
            done = 0
            for count in pool.map(_write_images, chunks):
                done += count
                if done % 2000 < count:
                    print(f"  {done:,} / {len(missing):,}", flush=True)
        print(f"  generated in {time.perf_counter() - t0:.1f} s", flush=True)
    return [image_path(i) for i in range(n)]


def warm_page_cache(paths: list[Path]) -> int:
    """Read every file once so that every figure sees the same, warm page cache; total bytes."""
    return sum(len(p.read_bytes()) for p in paths)


@dataclass
class DataDir:
    root: Path
    uris: list[str]
    csvs: dict[str, str] = field(default_factory=dict)  # name -> gs:// URI of a CSV listing inputs

    def add_csv(self, name: str, uris: list[str]) -> str:
        path = self.root / "buckets" / BUCKET / "csv" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(u + "\n" for u in uris))
        self.csvs[name] = f"gs://{BUCKET}/csv/{name}.csv"
        return self.csvs[name]

    def local(self, uri: str) -> Path:
        bucket, _, key = uri.removeprefix("gs://").partition("/")
        return self.root / "buckets" / bucket / key


def make_data_dir(paths: list[Path]) -> DataDir:
    """A fresh batchline data dir whose embedded bucket gs://bench/images/ holds the images (hard links)."""
    root = Path(tempfile.mkdtemp(prefix="data-", dir=OUT))
    images = root / "buckets" / BUCKET / "images"
    images.mkdir(parents=True)
    uris = []
    for path in paths:
        target = images / path.name
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
        uris.append(f"gs://{BUCKET}/images/{path.name}")
    return DataDir(root, uris)


def batchline_cmd() -> list[str]:
    script = Path(sys.executable).parent / "batchline"
    return [str(script)] if script.exists() else [sys.executable, "-m", "batchline"]


def import_model(data: DataDir, folder: Path) -> str:
    result = subprocess.run(
        [*batchline_cmd(), "models", "import", str(folder), "--data-dir", str(data.root)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        sys.exit(f"batchline models import failed:\n{result.stdout}{result.stderr}")
    from batchline.models.manifest import load_manifest

    return load_manifest(folder).id


def check_model_matches_reference(artifact: Path, folder: Path) -> None:
    """ONNX Runtime must give what torch gave at export: the model is the network it claims to be.

    reference.npz holds `input` and torch's output under the output's name (bench/modelexport.py). Checked on
    CPU: a GPU's TF32 convolutions differ from torch's fp32 by more than the tolerance.
    """
    import onnxruntime

    ref = folder / "reference.npz"
    if not ref.is_file():
        return
    data = np.load(ref)
    session = onnxruntime.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, {session.get_inputs()[0].name: data["input"]}), strict=True))
    for name in set(data.files) - {"input"}:
        if not np.allclose(got[name], data[name], rtol=1e-3, atol=1e-4):
            diff = np.abs(got[name] - data[name]).max()
            sys.exit(f"the ONNX model's {name!r} disagrees with torch's reference output (max diff {diff}); "
                     f"rebuild it with --force")


# ---------------------------------------------------------------------------------------------------- figures
def model_only(manifest: Any, artifact: Path, cores: int, tensors: np.ndarray, seconds: float,
               gpu: bool) -> dict[str, float]:
    """Images/s of the runtime alone at batch 1, 8 and 32, laid out three ways on CPU: one run at a time on every
    core ("1x2": one session, intra-op threads = cores), the same with ONNX Runtime's defaults ("1x2 spinning":
    its threads spin between ops, which batchline's sessions do not, to leave the cores to the decoders), and one
    single-threaded run per core at once ("2x1", what batchline's batch jobs do on CPU). All count: the limit
    takes the best. On a GPU one run at a time and two at once (batchline's default there)."""
    from batchline.runtimes.onnx import OnnxRuntime

    rates = {}
    if gpu:
        layouts = [(1, cores, False), (2, cores, False)]
    else:
        layouts = [(1, cores, False), (1, cores, True), (cores, 1, False)]
    for streams, threads, spinning in layouts:
        runtime = DefaultSession(artifact) if spinning else OnnxRuntime(manifest, artifact, threads=threads)
        for batch_size in (1, 8, 32):
            batch = np.ascontiguousarray(tensors[:batch_size])
            name = f"{streams}x{threads}{' spinning' if spinning else ''} b{batch_size}"
            rates[name] = _concurrent_rate(runtime, batch, streams, seconds)
        runtime.close()
    return rates


class DefaultSession:
    """ONNX Runtime as a user makes it first, `InferenceSession(model)`: intra-op threads on every core, spinning
    between ops; on the providers batchline would pick."""

    def __init__(self, artifact: Path):
        import onnxruntime

        from batchline.runtimes.onnx import providers

        self.session = onnxruntime.InferenceSession(str(artifact), providers=providers())
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def predict_batch(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(None, {self.input_name: batch}), strict=True))

    def close(self) -> None:
        del self.session


def _concurrent_rate(runtime: Any, batch: np.ndarray, streams: int, seconds: float) -> float:
    for _ in range(3):
        runtime.predict_batch(batch)
    counts = [0] * streams
    start = time.perf_counter()

    def run(stream: int) -> None:
        if streams > 1 and streams == n_cores():  # as batch jobs pin one stream per core
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[stream]})
        while time.perf_counter() - start < seconds or counts[stream] * len(batch) < 64:
            runtime.predict_batch(batch)
            counts[stream] += 1

    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(run, range(streams)))
    return sum(counts) * len(batch) / (time.perf_counter() - start)


_MANIFEST: Any = None


def _init_decoder(manifest: Any) -> None:
    global _MANIFEST
    _MANIFEST = manifest


def _decode_chunk(paths: list[str], manifest: Any = None) -> int:
    """What batchline does per image before the model: read the file, decode and preprocess it into a batch."""
    from batchline.problems import problem_for

    problem = problem_for(manifest or _MANIFEST)
    problem.preprocessor.batch([Path(p).read_bytes() for p in paths])
    return len(paths)


def decode_only(paths: list[Path], manifest: Any, workers: int, batch_size: int) -> dict[str, float]:
    """Images/s of read + decode + resize + normalise on every core: threads, then processes."""
    chunks = [[str(p) for p in paths[i : i + batch_size]] for i in range(0, len(paths), batch_size)]
    rates = {}
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(_decode_chunk, chunks[: workers * 2], [manifest] * (workers * 2)))  # warm-up
        t0 = time.perf_counter()
        count = sum(pool.map(_decode_chunk, chunks, [manifest] * len(chunks)))
        rates["threads"] = count / (time.perf_counter() - t0)
    with ProcessPoolExecutor(workers, initializer=_init_decoder, initargs=(manifest,)) as pool:
        list(pool.map(_decode_chunk, chunks[: workers * 2]))  # start the processes and import, untimed
        t0 = time.perf_counter()
        count = sum(pool.map(_decode_chunk, chunks))
        rates["processes"] = count / (time.perf_counter() - t0)
    return rates


def naive_loop(paths: list[Path], artifact: Path, problem: Any, params: dict[str, Any], out: Path) -> float:
    """The loop a user writes first: file -> PIL -> resize -> normalise -> session.run(1 image) -> JSON line, on
    the session a user makes first (`DefaultSession`; at batch 1 its spinning threads run the model about 20 %
    faster than batchline's own sessions, which do not spin)."""
    session = DefaultSession(artifact)
    spec = problem.manifest.input
    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    annotate = NAIVE_POSTPROCESS[problem.name][0]
    t0 = time.perf_counter()
    with out.open("w") as sink:
        for path in paths:
            with Image.open(path) as image:
                rgb, geometry = naive_resize(image.convert("RGB"), spec)
            x = (np.asarray(rgb, np.float32) * np.float32(spec.scale) - mean) / std
            x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
            outputs = session.predict_batch(x)
            annotations = annotate(outputs, x[0], geometry, problem, params)
            sink.write(json.dumps({"ID": str(path), "annotations": annotations}) + "\n")
    return len(paths) / (time.perf_counter() - t0)


def naive_resize(image: Image.Image, spec: Any) -> tuple[Image.Image, Any]:
    """Stretch to the model's size, or letterbox: scale to fit, centre on grey (114) as YOLO exports expect."""
    from batchline.problems.image.decode import Geometry

    height, width = spec.size
    geometry = Geometry.fit(image.width, image.height, spec)  # the same arithmetic a user writes for a letterbox
    resized = image.resize(geometry.scaled_size, Image.Resampling.BILINEAR)
    if spec.resize == "stretch":
        return resized, geometry
    canvas = Image.new("RGB", (width, height), (114, 114, 114))
    canvas.paste(resized, (geometry.pad_x, geometry.pad_y))
    return canvas, geometry


def naive_top5(outputs: dict[str, np.ndarray], tensor: np.ndarray, geometry: Any, problem: Any,
               params: dict[str, Any]) -> list[dict]:
    """A classifier user's postprocess: softmax by hand, the top 5 labels."""
    logits = next(iter(outputs.values()))[0]
    scores = np.exp(logits - logits.max())
    scores /= scores.sum()
    labels = problem.manifest.labels
    return [{"display_name": labels[i], "classification": {"score": float(scores[i])}}
            for i in np.argsort(scores)[::-1][:5]]


def naive_detections(outputs: dict[str, np.ndarray], tensor: np.ndarray, geometry: Any, problem: Any,
                     params: dict[str, Any]) -> list[dict]:
    """A detector user's postprocess (threshold, NMS, boxes back to the image) for one image: batchline's own,
    so that the loop does the same work per image as the server, one image at a time."""
    [found] = problem.predictions(outputs, [geometry], params)
    return [{"display_name": a.label, "score": a.score, "box": a.box} for a in found.boxes]


# Per problem: the naive loop's postprocess, and how the naive line describes it.
NAIVE_POSTPROCESS = {
    "image_classification": (naive_top5, "softmax top 5"),
    "image_object_detection": (naive_detections, "letterbox, batchline's postprocess (threshold, NMS)"),
}


# ---------------------------------------------------------------------------------------------------- the server
def free_ports(count: int) -> list[int]:
    """Distinct free local ports: all bound at once, so that two calls cannot hand out the same one."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def read_proc_status(pid: int, key: str) -> int | None:
    """A kB field of /proc/PID/status (VmHWM = peak RSS, VmRSS = RSS now) in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


class RssSampler(threading.Thread):
    """Largest RSS seen, sampled every 50 ms: the fallback where /proc/PID/status has no VmHWM."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop_event = pid, 0, threading.Event()
        try:
            import psutil

            self._proc = psutil.Process(pid)
        except Exception:  # noqa: BLE001 - psutil missing or the process gone
            self._proc = None

    def run(self) -> None:
        while not self.stop_event.wait(0.05):
            rss = read_proc_status(self.pid, "VmRSS")
            if rss is None and self._proc is not None:
                try:
                    rss = self._proc.memory_info().rss
                except Exception:  # noqa: BLE001
                    rss = None
            self.peak = max(self.peak, rss or 0)


class Job(NamedTuple):
    seconds: float  # submit to done, by the server's clock: the job's createTime to the time it ended
    observed: float  # submit to the poll that saw it done: `seconds` plus up to one poll interval
    annotations: int  # in all its result lines


class Jobs:
    """How the bench submits, polls and checks a model's jobs on one API; the subclasses say which. Every job reads
    the same kind of input, a file of image URIs one a line (an AutoML CSV and a Vertex file-list alike)."""

    title = ""
    params_name = ""
    vertex_port = False  # the server must also serve the Vertex AI API
    results = ""  # glob of the result files in a job's output folder

    def __init__(self, model: BenchModel, problem: Any):
        self.params, self.labels_per_image = model.params, model.labels_per_image
        self.problem = problem

    def typed_params(self) -> Any:
        """The params as the server reads them: what the naive loop's postprocess takes."""
        raise NotImplementedError

    def submit(self, server: Server, model_id: str, list_uri: str, out_uri: str) -> str:
        """Create the job; the URL to poll."""
        raise NotImplementedError

    def ended(self, polled: dict) -> bool:
        raise NotImplementedError

    def outcome(self, polled: dict) -> tuple[float, str]:
        """(submit-to-done seconds by the server's clock, the output folder's URI); exit if the job failed."""
        raise NotImplementedError

    def labels(self, record: dict) -> int:
        """Annotations in one result line."""
        raise NotImplementedError


def _created(reply: httpx.Response, what: str) -> dict:
    if reply.status_code != 200:
        sys.exit(f"{what} was refused: {reply.status_code} {reply.text}")
    return reply.json()


class AutomlJobs(Jobs):
    """AutoML batchPredict: an operation to poll until done, <problem>_N.jsonl results."""

    title, params_name = "AutoML batchPredict", "params"

    def __init__(self, model: BenchModel, problem: Any):
        super().__init__(model, problem)
        from batchline.surfaces import automl

        self.results = f"{automl.spec(problem).results_stem}_*.jsonl"

    def typed_params(self) -> Any:
        from batchline.surfaces import automl

        return automl.params(self.problem, self.params)

    def submit(self, server: Server, model_id: str, list_uri: str, out_uri: str) -> str:
        body = {
            "inputConfig": {"gcsSource": {"inputUris": [list_uri]}},
            "outputConfig": {"gcsDestination": {"outputUriPrefix": out_uri}},
            "params": self.params,
        }
        reply = server.client.post(f"{server.automl_base}/models/{model_id}:batchPredict", json=body)
        return f"{server.url}/v1/{_created(reply, 'batchPredict')['name']}"

    def ended(self, polled: dict) -> bool:
        return bool(polled.get("done"))

    def outcome(self, polled: dict) -> tuple[float, str]:
        if "error" in polled:
            sys.exit(f"the job failed: {polled['error']}")
        metadata = polled["metadata"]  # a done operation's last updateTime is when it ended
        return (_epoch(metadata["updateTime"]) - _epoch(metadata["createTime"]),
                metadata["batchPredictDetails"]["outputInfo"]["gcsOutputDirectory"])

    def labels(self, record: dict) -> int:
        return len(record["annotations"])


class VertexJobs(Jobs):
    """A Vertex AI batchPredictionJob with a file-list input: the job to poll until it ends, predictions_N.jsonl
    results. Its modelParameters have what AutoML's params lack: maxPredictions, a top-k per image."""

    title, params_name = "Vertex AI batchPredictionJob", "modelParameters"
    vertex_port = True
    results = "predictions_*.jsonl"
    ENDED = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")

    def typed_params(self) -> Any:
        from batchline.surfaces import vertex

        return vertex.params(self.problem, self.params)

    def submit(self, server: Server, model_id: str, list_uri: str, out_uri: str) -> str:
        body = {
            "displayName": "bench",
            "model": f"projects/{PROJECT}/locations/{LOCATION}/models/{model_id}",
            "inputConfig": {"instancesFormat": "file-list", "gcsSource": {"uris": [list_uri]}},
            "modelParameters": self.params,
            "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": out_uri}},
        }
        reply = server.client.post(f"{server.vertex_base}/batchPredictionJobs", json=body)
        return f"{server.vertex_url}/v1/{_created(reply, 'the batchPredictionJob')['name']}"

    def ended(self, polled: dict) -> bool:
        return polled.get("state") in self.ENDED

    def outcome(self, polled: dict) -> tuple[float, str]:
        if polled["state"] != "JOB_STATE_SUCCEEDED":
            sys.exit(f"the job ended {polled['state']}: {polled.get('error')}")
        return _epoch(polled["endTime"]) - _epoch(polled["createTime"]), polled["outputInfo"]["gcsOutputDirectory"]

    def labels(self, record: dict) -> int:
        return len(record["prediction"]["ids"])


JOB_KINDS: dict[str, type[Jobs]] = {"automl": AutomlJobs, "vertex": VertexJobs}


def jobs_for(model: BenchModel, problem: Any) -> Jobs:
    return JOB_KINDS[model.surface](model, problem)


class Server:
    """`batchline serve` on free local ports (AutoML's, and Vertex's where the jobs need it), as a subprocess, with
    its own data dir; it runs the model's jobs as `jobs` says."""

    def __init__(self, data: DataDir, jobs: Jobs):
        self.data, self.jobs = data, jobs
        self.port, vertex_port = free_ports(2)
        self.url = f"http://127.0.0.1:{self.port}"
        self.automl_base = f"{self.url}/v1/projects/{PROJECT}/locations/{LOCATION}"
        self.log_path = data.root / f"server-{self.port}.log"
        cmd = [*batchline_cmd(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--data-dir", str(data.root)]
        ready = [f"{self.automl_base}/models"]
        if jobs.vertex_port:  # only then: an AutoML-only run serves what it always did
            self.vertex_url = f"http://127.0.0.1:{vertex_port}"
            self.vertex_base = f"{self.vertex_url}/v1/projects/{PROJECT}/locations/{LOCATION}"
            cmd += ["--vertex-port", str(vertex_port)]
            ready.append(f"{self.vertex_base}/models")
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=data.root)
        self.client = httpx.Client(timeout=60)
        self.sampler = RssSampler(self.proc.pid)
        self.sampler.start()
        for url in ready:
            self._wait_ready(url)

    def _wait_ready(self, url: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"batchline serve exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                if self.client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        sys.exit(f"batchline serve did not answer {url} within {timeout} s; see {self.log_path}")

    def wait_ended(self, url: str, poll: float, timeout: float = 3600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                polled = self.client.get(url).json()
            except httpx.HTTPError as exc:
                if self.proc.poll() is not None:
                    sys.exit(f"batchline serve died ({self.proc.returncode}):\n{self.log_path.read_text()[-4000:]}")
                raise SystemExit(f"polling {url} failed: {exc}") from None
            if self.jobs.ended(polled):
                return polled
            time.sleep(poll)
        sys.exit(f"{url} not done after {timeout} s")

    def run_job(self, model_id: str, list_uri: str, expected: int, poll: float) -> Job:
        """Submit, poll until it ends, check the outputs."""
        t0 = time.perf_counter()
        url = self.jobs.submit(self, model_id, list_uri, f"gs://{BUCKET}/out/")
        polled = self.wait_ended(url, poll)
        observed = time.perf_counter() - t0
        seconds, output_dir = self.jobs.outcome(polled)
        return Job(seconds, observed, self._check_outputs(output_dir, expected))

    def _check_outputs(self, output_dir: str, expected: int) -> int:
        """N result lines (each with labels_per_image annotations, where set) and no errors, or exit; the
        annotations in all result lines."""
        folder = self.data.local(output_dir)
        per_line = [n for path in sorted(folder.glob(self.jobs.results)) for n in _labels_per_line(path, self.jobs)]
        errors = sum(_count_lines(p) for p in folder.glob("errors_*.jsonl"))
        if len(per_line) != expected or errors:
            sys.exit(f"{folder}: {len(per_line)} result lines and {errors} error lines, expected {expected} results")
        exact = self.jobs.labels_per_image
        if exact is not None and set(per_line) != {exact}:
            sys.exit(f"{folder}: result lines hold {min(per_line)} to {max(per_line)} labels, expected {exact} each")
        return sum(per_line)

    def peak_rss(self) -> int:
        """The server's peak RSS plus each decoder process's (an upper bound of their peak together)."""
        own = read_proc_status(self.proc.pid, "VmHWM") or self.sampler.peak
        return own + sum(read_proc_status(pid, "VmHWM") or 0 for pid in child_pids(self.proc.pid))

    def stop(self) -> None:
        self.sampler.stop_event.set()
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _epoch(timestamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp as batchline writes them (UTC, microseconds)."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _labels_per_line(path: Path, jobs: Jobs) -> list[int]:
    """The annotations in each line of a result file."""
    with path.open("rb") as handle:
        return [jobs.labels(json.loads(line)) for line in handle]


class PySpy:
    """Optional: py-spy records the server while the big job runs (--py-spy FILE)."""

    def __init__(self, target: Path | None, pid: int):
        self.proc = None
        if target is None:
            return
        exe = shutil.which("py-spy") or next(
            (str(p) for p in (Path(sys.executable).parent / "py-spy", Path("/tmp/benchenv/bin/py-spy")) if p.exists()),
            None,
        )
        if exe is None:
            print("py-spy not found (pip install py-spy); not profiling", file=sys.stderr)
            return
        fmt = {".svg": "flamegraph", ".json": "speedscope"}.get(target.suffix, "raw")
        cmd = [exe, "record", "--pid", str(pid), "--rate", "200", "--threads", "--idle", "--format", fmt,
               "--output", str(target)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # let it attach before the job starts

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# ---------------------------------------------------------------------------------------------------- reporting
def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_header(model: BenchModel, manifest: Any, cores: int, image_bytes: int, count: int, jobs: Jobs) -> None:
    import onnxruntime

    overrides = {k: v for k, v in os.environ.items() if k.startswith("BATCHLINE_")}
    print("== batchline benchmark")
    print(f"machine      {cores} cores usable ({n_all_cpus()} online), {cpu_model()}; load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"software     Python {platform.python_version()}, ONNX Runtime {onnxruntime.__version__} "
          f"({', '.join(onnxruntime.get_available_providers())}), numpy {np.__version__}")
    print(f"model        {model.title} {manifest.input.size[0]}x{manifest.input.size[1]}, "
          f"{len(manifest.labels)} classes, random weights, fp32, batch_size {manifest.batch_size} ({model.folder})")
    asked = ", ".join(f"{k}={v}" for k, v in model.params.items()) or "defaults"
    why = f": {model.params_why}" if model.params_why else ""
    print(f"jobs         {jobs.title} (every job of the run), {jobs.params_name} {asked}{why}")
    print(f"images       N = {count:,} JPEGs {WIDTH}x{HEIGHT} q{QUALITY}, mean {image_bytes / count / 1024:.0f} KiB")
    print(f"server       batchline serve{' --vertex-port' if jobs.vertex_port else ''}, "
          f"settings: {overrides or 'defaults'}")


def line(name: str, value: str, note: str = "") -> None:
    print(f"{name:<28}{value:>16}   {note}")


# ---------------------------------------------------------------------------------------------------- the runs
def run_all(args: argparse.Namespace) -> dict[str, Any]:
    from batchline.models.manifest import load_manifest
    from batchline.problems import problem_for
    from batchline.runtimes.onnx import OnnxRuntime

    cores = n_cores()
    model = MODELS[args.model]
    ensure_model(model, args.torch_python)
    manifest = load_manifest(model.folder)
    problem = problem_for(manifest)
    jobs = jobs_for(model, problem)
    paths = ensure_images(args.n, cores)
    image_bytes = warm_page_cache(paths)
    print_header(model, manifest, cores, image_bytes, len(paths), jobs)
    data = make_data_dir(paths)
    figures: dict[str, Any] = {"model": model.key, "jobs": jobs.title, "params": model.params, "n": args.n,
                               "cores": cores, "cpu": cpu_model(), "load_average_start": os.getloadavg()}
    server = None
    try:
        model_id = import_model(data, model.folder)
        sample = min(len(paths), args.sample)
        runtime = OnnxRuntime(manifest, model.folder / manifest.artifact, threads=cores)
        check_model_matches_reference(model.folder / manifest.artifact, model.folder)
        tensors, _ = problem.preprocessor.batch([p.read_bytes() for p in paths[:32]])

        gpu = runtime.device == "cuda"

        def measure_stages() -> tuple[dict[str, float], dict[str, float]]:
            return (model_only(manifest, model.folder / manifest.artifact, cores, tensors, args.model_seconds, gpu),
                    decode_only(paths[:sample], manifest, cores, manifest.batch_size))

        before = measure_stages()
        server = Server(data, jobs)
        data.add_csv("warm", data.uris[:6])
        first_six = server.run_job(model_id, data.csvs["warm"], 6, poll=0.02).observed
        spy = PySpy(args.py_spy, server.proc.pid)
        all_csv, runs = data.add_csv("all", data.uris), []
        for _ in range(args.e2e_repeats):
            meter = CpuMeter(server.proc.pid).start()
            runs.append((server.run_job(model_id, all_csv, len(data.uris), poll=args.poll), meter.stop()))
        spy.stop()
        after = measure_stages()  # the host's speed drifts over minutes: the limit takes the mean of both sides
        e2e, cpu = sorted(runs, key=lambda run: run[0].seconds)[len(runs) // 2]  # the median job (the slower of two)
        e2e_rates = [len(data.uris) / job.seconds for job, _ in runs]
        print("\n-- figures (images per second unless said otherwise)")
        model_rates, decode_rates = before[0], before[1]
        best_batch, best_pool = max(model_rates, key=model_rates.get), max(decode_rates, key=decode_rates.get)
        rate_model = statistics.mean([max(before[0].values()), max(after[0].values())])
        rate_dec = statistics.mean([max(before[1].values()), max(after[1].values())])
        line("model-only", f"{rate_model:,.0f}", f"the mean of the best before ({max(before[0].values()):,.0f}) and "
             f"after ({max(after[0].values()):,.0f}) the end-to-end jobs; before, best {best_batch}: " + ", ".join(
            f"{b}: {r:,.0f}" for b, r in model_rates.items()) + " (runs x intra-op threads, batch)")
        line("decode-only", f"{rate_dec:,.0f}", f"the mean of the best before ({max(before[1].values()):,.0f}) and "
             f"after ({max(after[1].values()):,.0f}); {cores} {best_pool} faster before: " + ", ".join(
            f"{k}: {r:,.0f}" for k, r in decode_rates.items()) + f"; {sample:,} images")
        c_model, c_dec = cores / rate_model, cores / rate_dec
        if gpu:  # the model runs beside the decoders, not on their cores
            limit = min(rate_model, rate_dec)
            line("limit", f"{limit:,.0f}", "min(GPU model rate, decode rate on every core)")
        else:
            limit = cores / (c_dec + c_model)
            line("limit", f"{limit:,.0f}", f"n / (c_dec + c_model); c_dec {c_dec * 1e3:.2f} ms, "
                 f"c_model {c_model * 1e3:.2f} ms core-time per image")
        e2e_seconds = e2e.seconds
        rate_e2e = len(data.uris) / e2e_seconds
        peak = server.peak_rss()
        per_image_ms = cpu["process_cpu_s"] / len(data.uris) * 1e3
        line("batchline end-to-end", f"{rate_e2e:,.0f}", f"the median of {len(runs)} jobs one after another "
             f"({', '.join(f'{r:,.0f}' for r in e2e_rates)}); {len(data.uris):,} images in {e2e_seconds:.2f} s "
             f"submit-to-done by the server's clock ({e2e.observed:.2f} s to the poll that saw it done, every "
             f"{args.poll} s); server and decoders busy {cpu['process_cores']:.2f} cores "
             f"({per_image_ms:.2f} ms CPU per image), whole machine {cpu['machine_cores']:.2f}; "
             f"{e2e.annotations / len(data.uris):.1f} annotations per image")
        line("server peak RSS", mib(peak), "VmHWM of the batchline serve process plus its decoders'")

        naive_paths = paths[:sample]
        with tempfile.TemporaryDirectory(dir=OUT) as tmp:
            rate_naive = naive_loop(naive_paths, model.folder / manifest.artifact, problem,
                                    jobs.typed_params(), Path(tmp) / "naive.jsonl")
        line("naive loop", f"{rate_naive:,.0f}", f"{len(naive_paths):,} images, PIL, batch 1, a default session, "
             f"{NAIVE_POSTPROCESS[problem.name][1]}")

        six = [server.run_job(model_id, data.add_csv(f"six{i}", data.uris[6 * i + 6 : 6 * i + 12]), 6,
                              poll=0.02).observed for i in range(args.six_repeats)]
        six_median = statistics.median(six)
        line("six-image job", f"{six_median:.3f} s", f"submit-to-done, median of {len(six)} on the warm server "
             f"(min {min(six):.3f}, max {max(six):.3f}; first job after start {first_six:.3f})")
        figures.update(
            model_only=model_rates, model_only_after=after[0], model_best_batch=best_batch, model_rate=rate_model,
            decode_only=decode_rates, decode_only_after=after[1], decode_best=best_pool, decode_rate=rate_dec,
            c_model_s=c_model, c_dec_s=c_dec, limit=limit, end_to_end=rate_e2e, end_to_end_runs=e2e_rates,
            end_to_end_seconds=e2e_seconds,
            end_to_end_observed_seconds=e2e.observed,
            end_to_end_annotations=e2e.annotations, server_cpu=cpu, peak_rss_bytes=peak, naive=rate_naive,
            six_image_s=six, six_image_median_s=six_median, first_job_s=first_six,
        )

        print("\n-- ratios and bars" + ("" if args.n == 2000 else " (the bars are set for N = 2,000)"))
        to_limit, to_naive = rate_e2e / limit, rate_e2e / rate_naive
        line("end-to-end / limit", f"{to_limit:.2f}", f"bar >= {BAR_LIMIT_RATIO}   "
             f"{verdict(to_limit >= BAR_LIMIT_RATIO)}")
        line("end-to-end / naive", f"{to_naive:.2f}", f"bar >= {BAR_NAIVE_RATIO}   "
             f"{verdict(to_naive >= BAR_NAIVE_RATIO)}")
        line("six-image job", f"{six_median:.3f} s", f"bar <= {BAR_SIX_SECONDS} s "
             f"{verdict(six_median <= BAR_SIX_SECONDS)} (median; worst {max(six):.3f} s)")
        figures["bars"] = {
            "end_to_end_over_limit": [to_limit, to_limit >= BAR_LIMIT_RATIO],
            "end_to_end_over_naive": [to_naive, to_naive >= BAR_NAIVE_RATIO],
            "six_image_median_s": [six_median, six_median <= BAR_SIX_SECONDS],
        }
        print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
              f"(other work on the machine makes every figure lower; the ratios are what to compare)")
        if args.py_spy and spy.proc is not None:
            print(f"py-spy profile of the server during the end-to-end job: {args.py_spy}")
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(data.root, ignore_errors=True)
        else:
            print(f"kept the data dir {data.root}")
    return figures


def run_rss_check(args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS of the server for a job of each size in --rss-sizes, each on a fresh server."""
    from batchline.models.manifest import load_manifest
    from batchline.problems import problem_for

    cores = n_cores()
    model = MODELS[args.model]
    ensure_model(model, args.torch_python)
    manifest = load_manifest(model.folder)
    jobs = jobs_for(model, problem_for(manifest))  # the same job kind as the end-to-end figure's
    sizes = sorted(args.rss_sizes)
    paths = ensure_images(max(sizes), cores)
    image_bytes = warm_page_cache(paths) if args.warm_cache else sum(p.stat().st_size for p in paths)
    print_header(model, manifest, cores, image_bytes, len(paths), jobs)
    print("\n-- peak RSS of batchline serve by job size (a fresh server per size)")
    figures: dict[str, Any] = {"model": model.key, "jobs": jobs.title, "params": model.params, "cores": cores,
                               "rss": {}}
    data = make_data_dir(paths)
    try:
        model_id = import_model(data, model.folder)
        for n in sizes:
            csv = data.add_csv(f"n{n}", data.uris[:n])
            server = Server(data, jobs)
            try:
                seconds = server.run_job(model_id, csv, n, poll=args.poll).seconds
                peak = server.peak_rss()
            finally:
                server.stop()
            figures["rss"][n] = {"peak_rss_bytes": peak, "seconds": seconds, "rate": n / seconds}
            line(f"N = {n:,}", mib(peak), f"{n / seconds:,.0f} img/s, {seconds:.1f} s submit-to-done")
        small, large = figures["rss"][sizes[0]]["peak_rss_bytes"], figures["rss"][sizes[-1]]["peak_rss_bytes"]
        growth = large / small
        line(f"RSS {sizes[-1]:,} / {sizes[0]:,}", f"{growth:.3f}",
             f"bar <= {BAR_RSS_GROWTH} (within 25 %)   {verdict(growth <= BAR_RSS_GROWTH)}")
        figures["rss_growth"] = [growth, growth <= BAR_RSS_GROWTH]
    finally:
        if not args.keep:
            shutil.rmtree(data.root, ignore_errors=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="mobilenetv3-small",
                        help="the model to measure (default %(default)s)")
    parser.add_argument("--n", type=int, default=2000, help="images in the end-to-end job (default %(default)s)")
    parser.add_argument("--sample", type=int, default=2000,
                        help="images for the decode-only and naive figures, at most N (default %(default)s)")
    parser.add_argument("--model-seconds", type=float, default=3.0, help="seconds per batch size in model-only")
    parser.add_argument("--e2e-repeats", type=int, default=3,
                        help="N-image jobs to time one after another on the same server (median reported)")
    parser.add_argument("--six-repeats", type=int, default=5, help="six-image jobs to time (median reported)")
    parser.add_argument("--poll", type=float, default=0.1,
                        help="poll interval for the big jobs, seconds (each poll costs the server ~1-3 ms of CPU)")
    parser.add_argument("--rss-check", action="store_true", help="compare the server's peak RSS across --rss-sizes")
    parser.add_argument("--rss-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[2000, 20000],
                        help="job sizes for --rss-check (default 2000,20000)")
    parser.add_argument("--warm-cache", action=argparse.BooleanOptionalAction, default=True,
                        help="read every image once before measuring (default on)")
    parser.add_argument("--torch-python", default=os.environ.get("BENCH_TORCH_PYTHON", DEFAULT_TORCH_PYTHON),
                        help="a Python with torch, to build the model on first use (default %(default)s)")
    parser.add_argument("--py-spy", type=Path, help="record the server with py-spy during the end-to-end job "
                        "into this file (.svg flame graph, .json speedscope, else raw collapsed stacks)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the run's data dir (server log, outputs)")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a bar fails")
    args = parser.parse_args(argv)
    if args.n < 12 + 6 * args.six_repeats and not args.rss_check:
        parser.error(f"--n must be at least {12 + 6 * args.six_repeats} (the six-image jobs take distinct images)")
    args.sample = min(args.sample, args.n)
    OUT.mkdir(parents=True, exist_ok=True)
    figures = run_rss_check(args) if args.rss_check else run_all(args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    failed = [k for k, v in {**figures.get("bars", {}), "rss": figures.get("rss_growth", [0, True])}.items()
              if not v[1]]
    return 2 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
