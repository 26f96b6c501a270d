"""batchline's video object tracking, measured side by side in one run (see bench/README.md, "Video").

    .venv/bin/python bench/video.py                               # 4 videos of 60 s: every figure and the bar
    .venv/bin/python bench/video.py --seconds 60 --videos 2       # fewer frames
    .venv/bin/python bench/video.py --rss-check                   # peak server RSS, a 10-minute video vs 1 minute

Inputs: the YOLOv8n-size detector at 320 (bench/out/yolov8n-320, built by bench/yolov8n.py as bench/run.py does),
copied to bench/out/yolov8n-320-tracker with `problem: video_object_tracking` and `video: {frame_rate: 5}` (the
same ONNX file, input and output sections, batch_size); H.264 videos of moving shapes made by scripts/videos.py
(640x480, 30 fps, cached in bench/out/videos-*). Each run makes a fresh data dir, imports the model with `batchline
models import`, and measures, in frames sampled per second:

  model-only   bench/run.py's model_only on sampled frames: ONNX Runtime alone at batch 1 / 8 / 32 in three
               layouts; the best counts
  decode-only  VideoPreprocessor.plan + fill (seek, decode, RGB, letterbox, normalise, histogram) over the videos,
               in fill tasks of the size the executor hands its decoders (16 sampled frames), one process per core
               at once, each on its own videos (or segments of them); also one fill per video (one seek, decoding
               straight through), not part of the limit: what larger tasks could reach
  limit        cores / (c_dec + c_model), c_x = cores / rate_x: core-seconds per sampled frame; both stages measured
               before and after the end-to-end jobs, each rate the mean of the two
  end-to-end   the real `batchline serve`: an AutoML batchPredict job over the videos (CSV lines `URI,0,inf`), the
               tracker running in the reducer; sampled frames / (done - submit) by the server's clock; the median of
               --e2e-repeats jobs
  tracker      the reducer's own cost per frame (shot cuts + batchline.problems.video.tracker.track + filtering), on
               one video's candidates as the job makes them, and on the detections of the trained shapes-tracker
               example model (random weights leave the tracker nothing to associate)
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def _load_run():
    """bench/run.py as a module: its machine, model-only, server and job helpers."""
    loaded = sys.modules.get("bench_run")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # before running it: its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


run = _load_run()
OUT, BUCKET, line, mib, verdict = run.OUT, run.BUCKET, run.line, run.mib, run.verdict

SOURCE_MODEL = "yolov8n-320"
TRACKER_KEY = "yolov8n-320-tracker"
FRAME_RATE = 5.0  # the tracker model's video.frame_rate: frames sampled per second of video
EXAMPLE_TRACKER = ROOT / "examples" / "models" / "shapes-tracker"
BAR_LIMIT_RATIO = run.BAR_LIMIT_RATIO  # 0.8
BAR_RSS_GROWTH = run.BAR_RSS_GROWTH  # 1.25
ROW_RING = 16  # distinct rows the decode-only fills cycle through (a task of 16 fills 16 distinct rows)

TRACKER = run.BenchModel(
    TRACKER_KEY, "YOLOv8n tracker", "yolov8n.py", "automl", {"score_threshold": "0.0002"},
    # As bench/run.py's detector jobs: random weights score every box near the class prior.
    "the tracking candidates' threshold is min(score_threshold, 0.1), so at 0.0002 every frame keeps its busy "
    "frame's worth of boxes after NMS (up to 300) for the tracker, as the image detector's jobs do; at the default "
    "0.5 no box of random weights passes and postprocess would do no NMS at all. No box of random weights reaches "
    "the tracker's own 0.1 (low) or 0.5 (high), so no track starts and the output is empty",
)


# ---------------------------------------------------------------------------------------------------- inputs
def ensure_tracker_model(torch_python: str) -> Path:
    """bench/out/yolov8n-320 (built on first use), copied as a video_object_tracking model at 5 frames a second."""
    import yaml

    source = run.MODELS[SOURCE_MODEL]
    run.ensure_model(source, torch_python)
    folder = TRACKER.folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("model.onnx", "reference.npz"):
        src, dst = source.folder / name, folder / name
        if not src.is_file():
            continue
        if dst.exists() and os.path.samefile(src, dst):
            continue
        dst.unlink(missing_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    manifest = yaml.safe_load((source.folder / "model.yaml").read_text())
    manifest.update(id=TRACKER_KEY, display_name=TRACKER_KEY.replace("-", "_"), problem="video_object_tracking",
                    video={"frame_rate": FRAME_RATE})
    text = (f"# Written by bench/video.py: bench/out/{SOURCE_MODEL} (its ONNX file, input, output and batch_size) "
            f"as a video object tracker.\n" + yaml.safe_dump(manifest, sort_keys=False))
    path = folder / "model.yaml"
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return folder


def video_dir(size: tuple[int, int], fps: int, seconds: float) -> Path:
    return OUT / f"videos-{size[0]}x{size[1]}-{fps}fps-h264-{seconds:g}s"


def ensure_videos(size: tuple[int, int], fps: int, seconds: float, count: int, workers: int) -> list[Path]:
    """Videos 0..count-1 of moving shapes, made by scripts/videos.py (video i with --seed i), cached."""
    folder = video_dir(size, fps, seconds)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:05d}.mp4" for i in range(count)]
    missing = [i for i, p in enumerate(paths) if not p.is_file()]
    if missing:
        print(f"generating {len(missing)} {seconds:g} s {size[0]}x{size[1]} {fps} fps H.264 videos into {folder} "
              f"(scripts/videos.py, cached) ...", flush=True)
        t0 = time.perf_counter()
        running: list[tuple[int, Path, subprocess.Popen]] = []

        def reap(proc_entry: tuple[int, Path, subprocess.Popen]) -> None:
            index, tmp, proc = proc_entry
            if proc.wait() != 0:
                sys.exit(f"scripts/videos.py failed for video {index}")
            (tmp / "00000.json").replace(folder / f"{index:05d}.json")
            (tmp / "00000.mp4").replace(paths[index])
            shutil.rmtree(tmp, ignore_errors=True)

        for index in missing:
            if len(running) >= workers:
                reap(running.pop(0))
            tmp = Path(tempfile.mkdtemp(prefix=f"gen-{index}-", dir=folder))
            cmd = [sys.executable, str(ROOT / "scripts" / "videos.py"), str(tmp), "--n", "1", "--seed", str(index),
                   "--size", f"{size[0]}x{size[1]}", "--fps", str(fps), "--codec", "h264", "--seconds", f"{seconds:g}"]
            running.append((index, tmp, subprocess.Popen(cmd)))
        for entry in running:
            reap(entry)
        print(f"  generated in {time.perf_counter() - t0:.1f} s", flush=True)
    return paths


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    duration: float
    fps: float
    width: int
    height: int
    frames: int  # the stream's frames
    keyframes: tuple[float, ...]  # presentation times of its keyframes, s from the first frame
    sampled: int  # frames the job samples from it (0 to its end at FRAME_RATE)


def probe(path: Path, preprocessor: Any, params: Any) -> VideoInfo:
    """The video's facts as the job plans them, and its keyframes (from the packets: nothing is decoded)."""
    import av

    with path.open("rb") as handle:
        plan = preprocessor.plan(handle, {"start": 0.0, "end": math.inf}, params)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        base, origin = stream.time_base, (stream.start_time or 0)
        times = sorted(float((p.pts - origin) * base) for p in container.demux(stream) if p.pts is not None
                       and p.is_keyframe)
        frames = stream.frames
    facts = plan.facts
    return VideoInfo(path, facts.duration, facts.fps, facts.width, facts.height, frames, tuple(times), len(plan.refs))


def decoded_per_sampled(info: VideoInfo, refs: list[float], task: int) -> float:
    """Source frames a fill decodes per sampled frame when the refs come in tasks of `task` (0: one task): each
    task seeks to the keyframe at or before its first ref and decodes forward to its last."""
    keys = np.asarray(info.keyframes)
    decoded = 0
    step = task or len(refs)
    for i in range(0, len(refs), step):
        first, last = refs[i], refs[min(i + step, len(refs)) - 1]
        key = keys[np.searchsorted(keys, first + 1e-6, side="right") - 1]
        decoded += round((last - key) * info.fps) + 1
    return decoded / len(refs)


# ---------------------------------------------------------------------------------------------------- decode-only
Piece = tuple[str, float, float]  # a video's path and the segment [start, end) of it one decoder plans and fills


def split_pieces(infos: list[VideoInfo], workers: int, task: int) -> list[list[Piece]]:
    """Each decoder's own videos, or segments of them where the videos do not share out evenly: equal shares of
    the sampled frames, cut at task boundaries (a multiple of `task` sampled frames from a video's start)."""
    if len(infos) % workers == 0 and len({v.sampled for v in infos}) == 1:
        return [[(str(v.path), 0.0, math.inf) for v in infos[w::workers]] for w in range(workers)]
    total = sum(v.sampled for v in infos)
    shares: list[list[Piece]] = [[] for _ in range(workers)]
    worker, room = 0, total / workers
    for video in infos:
        at = 0
        while at < video.sampled:
            take = video.sampled - at
            if worker < workers - 1 and take > room:
                take = max(task, round(room / task) * task)
            end = math.inf if at + take >= video.sampled else (at + take) / FRAME_RATE
            shares[worker].append((str(video.path), at / FRAME_RATE, end))
            at += take
            room -= take
            if room <= task / 2 and worker < workers - 1:
                worker, room = worker + 1, total / workers
    return [s for s in shares if s]


def _warm_decoder(_: int = 0) -> int:
    import av  # noqa: F401

    from batchline.problems import problem_for  # noqa: F401

    return os.getpid()


def _decode_pieces(manifest_json: str, params_json: str, pieces: list[Piece], task: int) -> dict[str, float]:
    """In a decoder process: plan each piece and fill its sampled frames in tasks of `task` (0: all in one fill),
    each task from its own open of the file, as the executor's decoders do. Rows cycle through ROW_RING buffers."""
    from batchline.models.manifest import Manifest
    from batchline.problems import problem_for

    problem = problem_for(Manifest.model_validate_json(manifest_json))
    preprocessor, params = problem.preprocessor, problem.Params.model_validate_json(params_json)
    shape, dtype = preprocessor.layout
    ring = np.zeros((ROW_RING, *shape), dtype)
    frames, t0, cpu0 = 0, time.monotonic(), time.process_time()
    for path, start, end in pieces:
        with open(path, "rb") as handle:
            refs = preprocessor.plan(handle, {"start": start, "end": end}, params).refs
        step = task or len(refs)
        for i in range(0, len(refs), step):
            part = refs[i : i + step]
            with open(path, "rb") as handle:
                found = preprocessor.fill(handle, part, [ring[j % ROW_RING] for j in range(len(part))])
            failed = [f for f in found if isinstance(f, BaseException)]
            if failed:
                raise failed[0]
            frames += len(part)
    return {"frames": frames, "start": t0, "end": time.monotonic(), "cpu_s": time.process_time() - cpu0}


def decode_only(shares: list[list[Piece]], manifest_json: str, params_json: str, tasks: dict[str, int]) -> dict:
    """Sampled frames/s of plan + fill with every decoder busy at once, one per share, per task size."""
    import multiprocessing

    rates: dict[str, dict[str, float]] = {}
    with ProcessPoolExecutor(len(shares), mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_warm_decoder, range(len(shares))))  # start and import, untimed
        warm = [[(p, s, min(e, s + 2.0)) for p, s, e in share[:1]] for share in shares]  # a short warm-up
        list(pool.map(_decode_pieces, [manifest_json] * len(warm), [params_json] * len(warm), warm,
                      [16] * len(warm)))
        for name, task in tasks.items():
            done = list(pool.map(_decode_pieces, [manifest_json] * len(shares), [params_json] * len(shares), shares,
                                 [task] * len(shares)))
            frames = sum(d["frames"] for d in done)
            wall = max(d["end"] for d in done) - min(d["start"] for d in done)
            rates[name] = {"rate": frames / wall, "frames": frames, "wall_s": wall,
                           "cpu_per_frame_s": sum(d["cpu_s"] for d in done) / frames}
    return rates


def decode_costs(path: Path, repeats: int = 10) -> dict[str, float]:
    """What a fill task pays besides its own frames, in this process: opening the video (PyAV's av.open, whose
    probe decodes the file's first frame), and decoding a keyframe against any other frame (one pass through the
    video, one thread as the decoders run)."""
    import av

    cpu = time.process_time()
    for _ in range(repeats):
        with path.open("rb") as handle:
            av.open(handle, "r", metadata_errors="ignore").close()
    open_s = (time.process_time() - cpu) / repeats
    seconds: dict[bool, list[float]] = {True: [], False: []}
    sizes: dict[bool, list[int]] = {True: [], False: []}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type, stream.codec_context.thread_count = "SLICE", 1
        for packet in container.demux(stream):
            t0 = time.perf_counter()
            packet.decode()
            seconds[bool(packet.is_keyframe)].append(time.perf_counter() - t0)
            sizes[bool(packet.is_keyframe)].append(packet.size)
    return {"open_s": open_s, "keyframe_s": statistics.mean(seconds[True]), "frame_s": statistics.mean(seconds[False]),
            "keyframe_bytes": statistics.mean(sizes[True]), "frame_bytes": statistics.mean(sizes[False] or [0])}


def task_overheads(info: VideoInfo, costs: dict[str, float], task: int) -> dict[str, float]:
    """Per sampled frame, in tasks of `task` (0: one per video): decoding time from the keyframe counts (each task
    starts at a keyframe), and the open each task pays."""
    refs = [round(i / FRAME_RATE, 6) for i in range(info.sampled)]
    tasks = math.ceil(len(refs) / (task or len(refs)))
    decoded = decoded_per_sampled(info, refs, task) * len(refs)
    keyframes = tasks + sum(1 for k in info.keyframes if k > 0) if task else len(info.keyframes)
    keyframes = min(keyframes, decoded)
    decode_s = keyframes * costs["keyframe_s"] + (decoded - keyframes) * costs["frame_s"]
    return {"decoded": decoded / len(refs), "decode_ms": decode_s / len(refs) * 1e3,
            "open_ms": tasks * costs["open_s"] / len(refs) * 1e3}


# ---------------------------------------------------------------------------------------------------- tracker cost
def frames_of(preprocessor: Any, path: Path, params: Any, count: int | None = None) -> tuple[Any, list, np.ndarray]:
    """(video facts, frame facts, rows) of the first `count` (all) sampled frames, filled in tasks of 16."""
    with path.open("rb") as handle:
        plan = preprocessor.plan(handle, {"start": 0.0, "end": math.inf}, params)
    refs = list(plan.refs[:count] if count else plan.refs)
    shape, dtype = preprocessor.layout
    rows = np.zeros((len(refs), *shape), dtype)
    facts: list[Any] = []
    for i in range(0, len(refs), 16):
        with path.open("rb") as handle:
            found = preprocessor.fill(handle, refs[i : i + 16], list(rows[i : i + 16]))
        facts += found
    return plan.facts, facts, rows


def tracker_cost(problem: Any, folder: Path, path: Path, job_params: Any, cores: int) -> dict[str, Any]:
    """The reducer's cost per frame over one video: on the job's own candidates (this model, the job's params),
    and on the detections of the trained shapes-tracker example (its default params)."""
    from batchline.models.manifest import load_manifest
    from batchline.problems import problem_for
    from batchline.problems.video.object_tracking import _TRACKER, _tracked_by_shot
    from batchline.problems.video.tracker import track
    from batchline.runtimes.onnx import OnnxRuntime

    video_facts, facts, rows = frames_of(problem.preprocessor, path, job_params)
    results = {}
    cases = [("job", problem, folder, job_params)]
    if (EXAMPLE_TRACKER / "model.yaml").is_file():
        example = problem_for(load_manifest(EXAMPLE_TRACKER))
        cases.append(("shapes-tracker", example, EXAMPLE_TRACKER, example.Params()))
    for name, prob, model_dir, params in cases:
        if prob.manifest.input.model_dump(exclude={"name"}) != problem.manifest.input.model_dump(exclude={"name"}):
            _, facts_x, rows_x = frames_of(prob.preprocessor, path, params)
        else:
            facts_x, rows_x = facts, rows
        runtime = OnnxRuntime(prob.manifest, model_dir / prob.manifest.artifact, threads=cores)
        items: list[Any] = []
        for i in range(len(rows_x)):
            outputs = runtime.predict_batch(rows_x[i : i + 1])
            items += prob.postprocessor.decode(outputs, facts_x[i : i + 1], params)
        runtime.close()
        boxes = [len(c.scores) for _, c in items]
        above_low = [int((c.scores >= _TRACKER.low).sum()) for _, c in items]
        t0 = time.perf_counter()
        reduced = prob.reducer.reduce(video_facts, items, params)
        reduce_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        tracked = track(((f.time, c.boxes, c.scores, c.classes) for f, c in items), _TRACKER)
        track_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        _tracked_by_shot(items)
        by_shot_s = time.perf_counter() - t0
        results[name] = {
            "frames": len(items), "boxes_per_frame": statistics.mean(boxes),
            "tracker_detections_per_frame": statistics.mean(above_low), "tracks_one_shot": len(tracked),
            "tracks_output": len(reduced.tracks), "reduce_ms_per_frame": reduce_s / len(items) * 1e3,
            "track_ms_per_frame": track_s / len(items) * 1e3, "by_shot_ms_per_frame": by_shot_s / len(items) * 1e3,
        }
    return results


# ---------------------------------------------------------------------------------------------------- jobs
class VideoJobs(run.AutomlJobs):
    """AutoML batchPredict over video CSV lines `URI,START,END`: its index video_object_tracking.csv (a line per
    input, with its status) and a JSON of annotation payloads per successful line."""

    title = "AutoML batchPredict (video object tracking)"


class VideoServer(run.Server):
    def _check_outputs(self, output_dir: str, expected: int) -> int:
        """Every input line OK in the index, each with its JSON; the payloads (tracked boxes) in all."""
        folder = self.data.local(output_dir)
        index_path = folder / "video_object_tracking.csv"
        if not index_path.is_file():
            sys.exit(f"{folder}: no video_object_tracking.csv")
        rows = list(csv.reader(io.StringIO(index_path.read_text())))
        bad = [r for r in rows if r[-1] != "OK"]
        if len(rows) != expected or bad:
            sys.exit(f"{folder}: {len(rows)} index lines, {len(bad)} not OK (expected {expected}): {bad[:3]}")
        return sum(len(json.loads((folder / r[3]).read_text())) for r in rows)


class SplitCpu:
    """CPU seconds of the server process itself and of its decoder processes, apart, from creation to stop()."""

    def __init__(self, pid: int):
        self.pid = pid
        self.server0, self.decoders0 = self._now()

    def _now(self) -> tuple[float, float]:
        return (run.process_cpu_seconds(self.pid),
                sum(run.process_cpu_seconds(child) for child in run.child_pids(self.pid)))

    def stop(self) -> dict[str, float]:
        server, decoders = self._now()
        return {"server_cpu_s": server - self.server0, "decoders_cpu_s": decoders - self.decoders0}


def make_video_data(paths: list[Path]) -> run.DataDir:
    """A fresh data dir whose embedded bucket gs://bench/videos/ holds the videos (hard links), each named after its
    cache folder too: videos of two folders share names (00000.mp4), and a copy over a link would overwrite the
    cached file."""
    root = Path(tempfile.mkdtemp(prefix="data-video-", dir=OUT))
    target_dir = root / "buckets" / BUCKET / "videos"
    target_dir.mkdir(parents=True)
    uris = []
    for path in paths:
        name = f"{path.parent.name}-{path.name}"
        target = target_dir / name
        if target.exists():
            sys.exit(f"{path} is listed twice")
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
        uris.append(f"gs://{BUCKET}/videos/{name}")
    return run.DataDir(root, uris)


def warm_page_cache(paths: list[Path]) -> int:
    return sum(len(p.read_bytes()) for p in paths)


# ---------------------------------------------------------------------------------------------------- reporting
def print_header(manifest: Any, cores: int, infos: list[VideoInfo], total_bytes: int, jobs: VideoJobs,
                 task: int, task_given: bool = False) -> None:
    import onnxruntime

    overrides = {k: v for k, v in os.environ.items() if k.startswith("BATCHLINE_")}
    first = infos[0]
    gops = np.diff(first.keyframes) * first.fps if len(first.keyframes) > 1 else np.array([first.frames])
    sampled = sum(v.sampled for v in infos)
    print("== batchline video benchmark")
    print(f"machine      {cores} cores usable ({run.n_all_cpus()} online), {run.cpu_model()}; load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"software     Python {platform.python_version()}, ONNX Runtime {onnxruntime.__version__}, "
          f"PyAV {_av_version()}, numpy {np.__version__}")
    print(f"model        {TRACKER.title}: {manifest.input.size[0]}x{manifest.input.size[1]} {manifest.input.resize}, "
          f"{len(manifest.labels)} classes, random weights, fp32, batch_size {manifest.batch_size}, "
          f"{manifest.problem} at {manifest.video.frame_rate:g} frames/s ({TRACKER.folder})")
    print(f"videos       {len(infos)} x {first.duration:g} s, {first.width}x{first.height}, {first.fps:g} fps H.264 "
          f"(libx264 veryfast crf 18, scripts/videos.py), mean {total_bytes / len(infos) / 2**20:.1f} MiB; keyframes "
          f"every {np.median(gops):.0f} frames (median; {len(first.keyframes)} in video 0, x264's scene cuts add "
          f"some); {sampled:,} sampled frames in all ({first.path.parent})")
    print(f"jobs         {jobs.title}, CSV lines URI,0,inf; params score_threshold={TRACKER.params['score_threshold']}"
          f": {TRACKER.params_why}")
    whose = "as --task says; the server makes its own" if task_given else "the executor's chunk for this model"
    print(f"server       batchline serve, settings: {overrides or 'defaults'}; decode-only in tasks of {task} sampled "
          f"frames ({whose})")


def _av_version() -> str:
    import av

    return av.__version__


def executor_chunk(manifest: Any, problem: Any, cores: int) -> int:
    """The sampled frames per decoding task the local executor makes for this model (executor/local.py)."""
    from batchline.executor import local

    shape, dtype = problem.preprocessor.layout
    row_bytes = math.prod(shape) * np.dtype(dtype).itemsize
    return max(1, min(problem.preprocessor.items_per_task, local._DECODED_BYTES // (2 * cores * row_bytes)))


# ---------------------------------------------------------------------------------------------------- the runs
def run_all(args: argparse.Namespace) -> dict[str, Any]:
    from batchline.models.manifest import load_manifest
    from batchline.problems import problem_for
    from batchline.runtimes.onnx import OnnxRuntime

    cores = run.n_cores()
    folder = ensure_tracker_model(args.torch_python)
    manifest = load_manifest(folder)
    problem = problem_for(manifest)
    jobs = VideoJobs(TRACKER, problem)
    params = jobs.typed_params()
    paths = ensure_videos(args.size, args.fps, args.seconds, args.videos, cores)
    total_bytes = warm_page_cache(paths)
    infos = [probe(p, problem.preprocessor, params) for p in paths]
    task = args.task or executor_chunk(manifest, problem, cores)
    print_header(manifest, cores, infos, total_bytes, jobs, task, bool(args.task))
    sampled = sum(v.sampled for v in infos)
    figures: dict[str, Any] = {"model": TRACKER_KEY, "jobs": jobs.title, "params": TRACKER.params, "cores": cores,
                               "cpu": run.cpu_model(), "videos": len(infos), "seconds": args.seconds,
                               "size": list(args.size), "fps": args.fps, "sampled_frames": sampled, "task": task,
                               "load_average_start": os.getloadavg()}
    data = make_video_data(paths)
    server = None
    try:
        model_id = run.import_model(data, folder)
        artifact = folder / manifest.artifact
        run.check_model_matches_reference(artifact, folder)
        runtime = OnnxRuntime(manifest, artifact, threads=cores)
        gpu = runtime.device == "cuda"
        runtime.close()
        _, _, tensors = frames_of(problem.preprocessor, paths[0], params, 32)
        shares = split_pieces(infos, cores, task)
        manifest_json, params_json = manifest.model_dump_json(), params.model_dump_json()
        decode_tasks = {f"tasks of {task}": task, "one fill per video": 0}

        def measure_stages() -> tuple[dict[str, float], dict[str, dict[str, float]]]:
            return (run.model_only(manifest, artifact, cores, tensors, args.model_seconds, gpu),
                    decode_only(shares, manifest_json, params_json, decode_tasks))

        before = measure_stages()
        server = VideoServer(data, jobs)
        data.add_csv("warm", [f"{data.uris[0]},0,{2 * task / FRAME_RATE:g}"])
        first_job = server.run_job(model_id, data.csvs["warm"], 1, poll=0.02).observed
        spy = run.PySpy(args.py_spy, server.proc.pid)
        all_csv, runs = data.add_csv("all", [f"{uri},0,inf" for uri in data.uris]), []
        for _ in range(args.e2e_repeats):
            meter, split = run.CpuMeter(server.proc.pid).start(), SplitCpu(server.proc.pid)
            job = server.run_job(model_id, all_csv, len(data.uris), poll=args.poll)
            runs.append((job, {**meter.stop(), **split.stop()}))
        spy.stop()
        after = measure_stages()
        peak = server.peak_rss()
        server.stop()
        server = None
        e2e, cpu = sorted(runs, key=lambda r: r[0].seconds)[len(runs) // 2]
        e2e_rates = [sampled / job.seconds for job, _ in runs]

        print("\n-- figures (sampled frames per second unless said otherwise)")
        model_rates = before[0]
        best_batch = max(model_rates, key=model_rates.get)
        rate_model = statistics.mean([max(before[0].values()), max(after[0].values())])
        line("model-only", f"{rate_model:,.0f}", f"the mean of the best before ({max(before[0].values()):,.0f}) and "
             f"after ({max(after[0].values()):,.0f}) the end-to-end jobs; before, best {best_batch}: " + ", ".join(
                 f"{b}: {r:,.0f}" for b, r in model_rates.items()) + " (runs x intra-op threads, batch)")
        chunked, whole = f"tasks of {task}", "one fill per video"
        rate_dec = statistics.mean([before[1][chunked]["rate"], after[1][chunked]["rate"]])
        rate_whole = statistics.mean([before[1][whole]["rate"], after[1][whole]["rate"]])
        refs = [round(i / FRAME_RATE, 6) for i in range(infos[0].sampled)]
        amp_task, amp_whole = decoded_per_sampled(infos[0], refs, task), decoded_per_sampled(infos[0], refs, 0)
        whole_videos = all(s == 0.0 and math.isinf(e) for share in shares for _, s, e in share)
        layout = f"{cores} processes, each on {len(shares[0])} of its own {'videos' if whole_videos else 'segments'}"
        line("decode-only", f"{rate_dec:,.0f}", f"plan + fill in tasks of {task} sampled frames (a seek each), the "
             f"mean of before ({before[1][chunked]['rate']:,.0f}) and after ({after[1][chunked]['rate']:,.0f}); "
             f"{layout}; {before[1][chunked]['cpu_per_frame_s'] * 1e3:.2f} ms CPU per frame; ~{amp_task:.1f} "
             f"source frames decoded per sampled frame")
        line("decode-only, whole videos", f"{rate_whole:,.0f}", f"(not in the limit) one fill per video, one seek: "
             f"before {before[1][whole]['rate']:,.0f}, after {after[1][whole]['rate']:,.0f}; "
             f"{before[1][whole]['cpu_per_frame_s'] * 1e3:.2f} ms CPU per frame; ~{amp_whole:.1f} source frames "
             f"decoded per sampled frame; {rate_whole / rate_dec:.2f}x the tasks of {task}")
        costs = decode_costs(paths[0])
        ours, one = task_overheads(infos[0], costs, task), task_overheads(infos[0], costs, 0)
        line("fill costs", f"{costs['open_s'] * 1e3:.1f} ms", f"CPU per av.open of a video (its probe decodes the "
             f"first frame; every fill task opens anew); decoding a keyframe {costs['keyframe_s'] * 1e3:.2f} ms "
             f"(mean {costs['keyframe_bytes'] / 1024:.0f} KiB), any other frame {costs['frame_s'] * 1e3:.2f} ms "
             f"({costs['frame_bytes'] / 1024:.1f} KiB). Per sampled frame of video 0, in tasks of {task}: opens "
             f"{ours['open_ms']:.2f} ms + decoding {ours['decode_ms']:.2f} ms ({ours['decoded']:.1f} source frames); "
             f"one fill per video: {one['open_ms']:.2f} + {one['decode_ms']:.2f} ms ({one['decoded']:.1f})")
        figures["fill_costs"] = {**costs, "task": ours, "whole": one}
        c_model, c_dec = cores / rate_model, cores / rate_dec
        if gpu:
            limit = min(rate_model, rate_dec)
            line("limit", f"{limit:,.0f}", "min(GPU model rate, decode rate on every core)")
        else:
            limit = cores / (c_dec + c_model)
            line("limit", f"{limit:,.0f}", f"cores / (c_dec + c_model); c_dec {c_dec * 1e3:.2f} ms, c_model "
                 f"{c_model * 1e3:.2f} ms core-time per sampled frame")
        rate_e2e = sampled / e2e.seconds
        line("batchline end-to-end", f"{rate_e2e:,.0f}", f"the median of {len(runs)} jobs one after another "
             f"({', '.join(f'{r:,.0f}' for r in e2e_rates)}); {sampled:,} frames of {len(infos)} videos in "
             f"{e2e.seconds:.2f} s submit-to-done by the server's clock ({e2e.observed:.2f} s to the poll that saw "
             f"it done, every {args.poll} s); server and decoders busy {cpu['process_cores']:.2f} cores "
             f"({cpu['process_cpu_s'] / sampled * 1e3:.2f} ms CPU per frame: the server process "
             f"{cpu['server_cpu_s'] / sampled * 1e3:.2f}, its decoders {cpu['decoders_cpu_s'] / sampled * 1e3:.2f}), "
             f"whole machine "
             f"{cpu['machine_cores']:.2f}; {e2e.annotations} tracked boxes written; first job after start "
             f"({2 * task} frames) {first_job:.2f} s")
        line("server peak RSS", mib(peak), "VmHWM of the batchline serve process plus its decoders'")
        figures.update(
            model_only=model_rates, model_only_after=after[0], model_best_batch=best_batch, model_rate=rate_model,
            decode_only=before[1], decode_only_after=after[1], decode_rate=rate_dec, decode_whole_rate=rate_whole,
            decoded_per_sampled={"task": amp_task, "whole": amp_whole}, c_model_s=c_model, c_dec_s=c_dec,
            limit=limit, end_to_end=rate_e2e, end_to_end_runs=e2e_rates, end_to_end_seconds=e2e.seconds,
            end_to_end_observed_seconds=e2e.observed, end_to_end_annotations=e2e.annotations, server_cpu=cpu,
            peak_rss_bytes=peak, first_job_s=first_job,
        )

        if args.tracker:
            costs = tracker_cost(problem, folder, paths[0], params, cores)
            job = costs["job"]
            line("tracker, job's candidates", f"{job['reduce_ms_per_frame']:.3f} ms",
                 f"the reducer per frame (shot cuts, track, filter) over video 0's {job['frames']} frames; track() "
                 f"alone {job['track_ms_per_frame']:.3f} ms; {job['boxes_per_frame']:.0f} candidates per frame, "
                 f"{job['tracker_detections_per_frame']:.1f} of them at or above the tracker's low 0.1: "
                 f"{job['tracks_output']} tracks; {job['reduce_ms_per_frame'] / 1e3 / (c_dec + c_model):.1%} of "
                 f"c_dec + c_model")
            if "shapes-tracker" in costs:
                ex = costs["shapes-tracker"]
                line("tracker, real detections", f"{ex['reduce_ms_per_frame']:.3f} ms",
                     f"the same on the trained shapes-tracker's detections of the same frames (default params): "
                     f"track() alone {ex['track_ms_per_frame']:.3f} ms; {ex['boxes_per_frame']:.1f} candidates and "
                     f"{ex['tracker_detections_per_frame']:.1f} tracker detections per frame, "
                     f"{ex['tracks_output']} tracks written; {ex['reduce_ms_per_frame'] / 1e3 / (c_dec + c_model):.1%}"
                     f" of c_dec + c_model")
            figures["tracker"] = costs

        print("\n-- ratio and bar")
        to_limit = rate_e2e / limit
        line("end-to-end / limit", f"{to_limit:.2f}",
             f"bar >= {BAR_LIMIT_RATIO}   {verdict(to_limit >= BAR_LIMIT_RATIO)}")
        figures["bars"] = {"end_to_end_over_limit": [to_limit, to_limit >= BAR_LIMIT_RATIO]}
        print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
              f"(other work on the machine makes every figure lower; the ratios are what to compare)")
        if args.py_spy and spy.proc is not None:
            print(f"py-spy profile of the server during the end-to-end jobs: {args.py_spy}")
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(data.root, ignore_errors=True)
        else:
            print(f"kept the data dir {data.root}")
    return figures


def run_rss_check(args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS of a fresh server for one job over one video of each length in --rss-seconds."""
    from batchline.models.manifest import load_manifest
    from batchline.problems import problem_for

    cores = run.n_cores()
    folder = ensure_tracker_model(args.torch_python)
    manifest = load_manifest(folder)
    problem = problem_for(manifest)
    jobs = VideoJobs(TRACKER, problem)
    params = jobs.typed_params()
    lengths = sorted(args.rss_seconds)
    paths = [ensure_videos(args.rss_size, args.fps, s, 1, cores)[0] for s in lengths]
    warm_page_cache(paths)
    infos = [probe(p, problem.preprocessor, params) for p in paths]
    chunk = executor_chunk(manifest, problem, cores)
    print_header(manifest, cores, infos[:1], paths[0].stat().st_size, jobs, chunk)
    listed = (f"{v.duration:g} s ({v.sampled:,} frames sampled, {mib(v.path.stat().st_size)})" for v in infos)
    print(f"rss videos   {', '.join(listed)}")
    print("\n-- peak RSS of batchline serve by video length (a fresh server per length, one job over one video)")
    figures: dict[str, Any] = {"model": TRACKER_KEY, "jobs": jobs.title, "params": TRACKER.params, "cores": cores,
                               "size": list(args.rss_size), "rss": {}}
    data = make_video_data(paths)
    try:
        model_id = run.import_model(data, folder)
        for info, uri in zip(infos, data.uris, strict=True):
            csv_uri = data.add_csv(f"s{info.duration:g}", [f"{uri},0,inf"])
            server = VideoServer(data, jobs)
            try:
                seconds = server.run_job(model_id, csv_uri, 1, poll=args.poll).seconds
                own = run.read_proc_status(server.proc.pid, "VmHWM") or server.sampler.peak
                peak = server.peak_rss()
            finally:
                server.stop()
            figures["rss"][info.duration] = {"peak_rss_bytes": peak, "server_bytes": own, "seconds": seconds,
                                             "rate": info.sampled / seconds, "frames": info.sampled}
            line(f"{_length(info.duration)} video", mib(peak), f"server {mib(own)} + decoders "
                 f"{mib(peak - own)}; {info.sampled:,} frames at {info.sampled / seconds:,.0f} frames/s, "
                 f"{seconds:.1f} s submit-to-done")
        small, large = (figures["rss"][infos[i].duration]["peak_rss_bytes"] for i in (0, -1))
        growth = large / small
        line(f"RSS {_length(lengths[-1])} / {_length(lengths[0])}", f"{growth:.3f}",
             f"bar <= {BAR_RSS_GROWTH} (within 25 %)   {verdict(growth <= BAR_RSS_GROWTH)}")
        figures["rss_growth"] = [growth, growth <= BAR_RSS_GROWTH]
    finally:
        if not args.keep:
            shutil.rmtree(data.root, ignore_errors=True)
        else:
            print(f"kept the data dir {data.root}")
    return figures


def _length(seconds: float) -> str:
    return f"{seconds / 60:g}-minute" if seconds % 60 == 0 else f"{seconds:g}-second"


def _size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4, help="videos in the end-to-end job (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each video (default %(default)s)")
    parser.add_argument("--size", type=_size, default=(640, 480), help="WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--fps", type=int, default=30, help="the videos' frame rate (default %(default)s)")
    parser.add_argument("--model-seconds", type=float, default=3.0, help="seconds per batch size in model-only")
    parser.add_argument("--task", type=int, default=0,
                        help="sampled frames per decode-only fill task (default: the executor's chunk, 16)")
    parser.add_argument("--e2e-repeats", type=int, default=3, help="jobs to time one after another (median)")
    parser.add_argument("--poll", type=float, default=0.1, help="poll interval for the jobs, seconds")
    parser.add_argument("--tracker", action=argparse.BooleanOptionalAction, default=True,
                        help="time the reducer (tracker) per frame after the jobs (default on)")
    parser.add_argument("--rss-check", action="store_true", help="peak server RSS, one video of each --rss-seconds")
    parser.add_argument("--rss-seconds", type=lambda s: [float(x) for x in s.split(",")], default=[60.0, 600.0],
                        help="video lengths for --rss-check (default 60,600)")
    parser.add_argument("--rss-size", type=_size, default=(320, 240), help="video size for --rss-check (320x240)")
    parser.add_argument("--torch-python", default=os.environ.get("BENCH_TORCH_PYTHON", run.DEFAULT_TORCH_PYTHON),
                        help="a Python with torch, to build the model on first use (default %(default)s)")
    parser.add_argument("--py-spy", type=Path, help="record the server with py-spy during the end-to-end jobs")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the run's data dir (server log, outputs)")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a bar fails")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    figures = run_rss_check(args) if args.rss_check else run_all(args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    failed = [k for k, v in {**figures.get("bars", {}), "rss": figures.get("rss_growth", [0, True])}.items()
              if not v[1]]
    return 2 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
