"""The batchline command line: `serve` runs the server; the other commands talk to it over HTTP."""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from batchline.domain.predictions import (
    Classification,
    Detection,
    Detections,
    Label,
    Track,
    TrackedBox,
    VideoTracks,
)

app = typer.Typer(help="batchline: Google Cloud AutoML v1 prediction, self-hosted.", no_args_is_help=True)
operations_app = typer.Typer(help="Long-running operations (batch jobs, deploys).", no_args_is_help=True)
models_app = typer.Typer(
    help="Models: import into the data dir, list and show through the server.", no_args_is_help=True
)
jobs_app = typer.Typer(
    help="Vertex AI batch prediction jobs, through the server's Vertex AI port (serve --vertex-port).",
    no_args_is_help=True,
)
app.add_typer(operations_app, name="operations")
app.add_typer(models_app, name="models")
app.add_typer(jobs_app, name="jobs")
console = Console()
err = Console(stderr=True)

Server = Annotated[str, typer.Option(envvar="BATCHLINE_SERVER", help="batchline server URL.")]
Project = Annotated[str, typer.Option(help="Project in resource names (any name works).")]
Location = Annotated[str, typer.Option(help="Location in resource names.")]
VertexServer = Annotated[
    str, typer.Option("--server", envvar="BATCHLINE_VERTEX_SERVER", help="batchline Vertex AI API URL.")
]
VERTEX_SERVER = "http://127.0.0.1:8081"
JOB_DONE_STATES = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _call(method: str, url: str, **kwargs: Any) -> dict:
    try:
        response = httpx.request(method, url, timeout=120, **kwargs)
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach the batchline server at {url}: {exc}; is `batchline serve` running?") from None
    body = response.json() if response.content else {}
    if response.status_code >= 400:
        error = body.get("error", {})
        raise _fail(f"{error.get('status', response.status_code)}: {error.get('message', response.text)}")
    return body


def _base(server: str, project: str, location: str) -> str:
    return f"{server.rstrip('/')}/v1/projects/{project}/locations/{location}"


def _op_url(server: str, project: str, location: str, op: str) -> str:
    if op.startswith("projects/"):
        return f"{server.rstrip('/')}/v1/{op}"
    return f"{_base(server, project, location)}/operations/{op}"


def _settings_help() -> str:
    """Every BATCHLINE_* setting with its default, for `serve --help`."""
    from batchline.config import Settings

    lines = ["Settings (environment variables; the flags above override them):"]
    for name, field in Settings.model_fields.items():
        default = "-" if field.default in (None, "") or field.default_factory else field.default
        lines.append(f"BATCHLINE_{name.upper()} (default {default}): {field.description}")
    return "\n\n".join(lines)


def _progress_bar() -> Progress:
    percent = TextColumn("{task.percentage:>3.0f}%")
    return Progress(TextColumn("{task.description}"), BarColumn(), percent, TimeElapsedColumn(), console=err)


def _wait(url: str) -> dict:
    """Poll an operation with a progress bar until it is done; exit non-zero if it failed."""
    with _progress_bar() as progress:
        task = progress.add_task("running", total=100)
        while True:
            op = _call("GET", url)
            progress.update(task, completed=op.get("metadata", {}).get("progressPercent", 0))
            if op.get("done"):
                progress.update(task, completed=100 if "response" in op else None, description="done")
                break
            time.sleep(0.3)
    if "error" in op:
        raise _fail(f"operation failed with code {op['error']['code']}: {op['error']['message']}")
    return op


@app.command(epilog=_settings_help())
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address [BATCHLINE_HOST, default 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port [BATCHLINE_PORT, default 8080].")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Data folder: batchline.db, models/, buckets/ [BATCHLINE_DATA_DIR, default ./data]."),
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="Job store URL, sqlite:///... or postgresql://... [BATCHLINE_DATABASE_URL].")
    ] = None,
    storage: Annotated[str | None, typer.Option(help="Where gs:// lives: local or gcs [BATCHLINE_STORAGE].")] = None,
    vertex_port: Annotated[
        int | None, typer.Option(help="Also serve the Vertex AI v1 API on this port [BATCHLINE_VERTEX_PORT, 0 = off].")
    ] = None,
) -> None:
    """Run the AutoML v1 API (and, with --vertex-port, the Vertex AI v1 API) and the batch worker in one process."""
    from batchline.api.server import serve as run_servers
    from batchline.config import Settings

    given = {
        "host": host,
        "port": port,
        "data_dir": data_dir,
        "database_url": database_url,
        "storage": storage,
        "vertex_port": vertex_port,
    }
    settings = Settings(**{k: v for k, v in given.items() if v is not None})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_servers(settings)


@app.command("batch-predict")
def batch_predict(
    model: Annotated[str, typer.Option(help="Model id.")],
    input: Annotated[list[str], typer.Option(help="CSV file URI listing the inputs (repeat for several).")],
    output: Annotated[str, typer.Option(help="Output URI prefix, e.g. gs://bucket/out/.")],
    param: Annotated[list[str], typer.Option(help="KEY=VALUE, e.g. score_threshold=0.2 (repeatable).")] = [],  # noqa: B006
    wait: Annotated[bool, typer.Option(help="Wait for the job with a progress bar.")] = False,
    server: Server = "http://127.0.0.1:8080",
    project: Project = "local",
    location: Location = "us-central1",
) -> None:
    """Start a batch prediction; prints the operation name (and waits with --wait)."""
    params = dict(p.split("=", 1) for p in param if "=" in p)
    if len(params) != len(param):
        raise _fail("--param takes KEY=VALUE")
    body = {
        "inputConfig": {"gcsSource": {"inputUris": input}},
        "outputConfig": {"gcsDestination": {"outputUriPrefix": output}},
        "params": params,
    }
    op = _call("POST", f"{_base(server, project, location)}/models/{model}:batchPredict", json=body)
    console.print(op["name"])
    if wait:
        op = _wait(f"{server.rstrip('/')}/v1/{op['name']}")
        console.print(f"output: {op['metadata']['batchPredictDetails']['outputInfo']['gcsOutputDirectory']}")


@app.command()
def predict(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Image file.")],
    model: Annotated[str, typer.Option(help="Model id.")],
    score_threshold: Annotated[float | None, typer.Option(help="Only labels scoring at least this.")] = None,
    max_bounding_box_count: Annotated[int | None, typer.Option(help="Detectors: at most this many boxes.")] = None,
    render: Annotated[
        Path | None, typer.Option(help="Also draw the boxes and labels onto the image and write it here as PNG.")
    ] = None,
    server: Server = "http://127.0.0.1:8080",
    project: Project = "local",
    location: Location = "us-central1",
) -> None:
    """Predict one image online: labels (and boxes, for a detector) with scores, highest first."""
    data = image.read_bytes()
    params = {"score_threshold": score_threshold, "max_bounding_box_count": max_bounding_box_count}
    body: dict[str, Any] = {
        "payload": {"image": {"imageBytes": base64.b64encode(data).decode()}},
        "params": {key: str(value) for key, value in params.items() if value is not None},
    }
    reply = _call("POST", f"{_base(server, project, location)}/models/{model}:predict", json=body)
    prediction = _prediction(reply.get("payload", []))
    if isinstance(prediction, Detections):
        table = Table("label", "score", "box (x_min, y_min, x_max, y_max)")
        for found in prediction.boxes:
            table.add_row(found.label, f"{found.score:.4f}", ", ".join(f"{v:.3f}" for v in found.box))
    else:
        table = Table("label", "score")
        for label in prediction.labels:
            table.add_row(label.label, f"{label.score:.4f}")
    console.print(table)
    if render is not None:
        from batchline.render import render as draw

        render.write_bytes(draw(data, prediction))
        console.print(f"drawn onto {render}")


def _prediction(payload: list[dict[str, Any]]) -> Classification | Detections:
    """An online reply's payload back into the prediction it encodes."""
    if not any("imageObjectDetection" in item for item in payload):
        return Classification(tuple(Label(p["displayName"], p["classification"]["score"]) for p in payload))
    boxes = []
    for item in payload:
        detection = item["imageObjectDetection"]
        top_left, bottom_right = detection["boundingBox"]["normalizedVertices"]
        box = (top_left.get("x", 0.0), top_left.get("y", 0.0), bottom_right.get("x", 0.0), bottom_right.get("y", 0.0))
        boxes.append(Detection(item["displayName"], detection["score"], box))
    return Detections(tuple(boxes))


@app.command()
def render(
    video: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The video file the tracks are of.")],
    tracks: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="Its tracks: an AutoML video_object_trackinng_N.json, or a Vertex prediction (a JSON list of tracks).",
        ),
    ],
    out: Annotated[Path, typer.Option(help="Where to write the contact sheet (PNG).")] = Path("tracks.png"),
    frames: Annotated[int, typer.Option(min=1, max=64, help="Frames on the sheet.")] = 12,
) -> None:
    """Draw a video's tracked boxes, with their instance ids and labels, on a contact sheet of its frames."""
    from batchline.render import contact_sheet

    found = _tracks(json.loads(tracks.read_text()))
    out.write_bytes(contact_sheet(video, found, frames))
    console.print(f"{len(found.tracks)} tracks drawn on {out}")


def _tracks(payload: list[dict[str, Any]]) -> VideoTracks:
    """AutoML's payloads (one per box per frame) or Vertex's tracks, back into tracks."""
    if payload and "frames" in payload[0]:  # Vertex: one entry per track
        return VideoTracks(tuple(
            Track(number, t["displayName"], t["confidence"], tuple(
                TrackedBox(_seconds(f["timeOffset"]), (f["xMin"], f["yMin"], f["xMax"], f["yMax"]), t["confidence"])
                for f in t["frames"]
            ))
            for number, t in enumerate(payload, 1)
        ))  # fmt: skip
    boxes: dict[int, list[tuple[str, TrackedBox]]] = {}
    for item in payload:
        found = item["video_object_tracking"]
        top_left, bottom_right = found["bounding_box"]["normalized_vertices"]
        box = (top_left.get("x", 0.0), top_left.get("y", 0.0), bottom_right.get("x", 0.0), bottom_right.get("y", 0.0))
        tracked = TrackedBox(_seconds(found["time_offset"]), box, found["score"])
        boxes.setdefault(int(found["instance_id"]), []).append((item["display_name"], tracked))
    return VideoTracks(tuple(
        Track(i, entries[0][0], sum(b.score for _, b in entries) / len(entries), tuple(b for _, b in entries))
        for i, entries in sorted(boxes.items())
    ))  # fmt: skip


def _seconds(duration: str) -> float:
    return float(duration.rstrip("s"))


@operations_app.command("get")
def operations_get(
    op: str, server: Server = "http://127.0.0.1:8080", project: Project = "local", location: Location = "us-central1"
) -> None:
    """Print an operation as JSON."""
    console.print_json(json.dumps(_call("GET", _op_url(server, project, location, op))))


@operations_app.command("wait")
def operations_wait(
    op: str, server: Server = "http://127.0.0.1:8080", project: Project = "local", location: Location = "us-central1"
) -> None:
    """Wait for an operation with a progress bar; non-zero exit if it failed."""
    done = _wait(_op_url(server, project, location, op))
    console.print_json(json.dumps(done))


@operations_app.command("list")
def operations_list(
    server: Server = "http://127.0.0.1:8080",
    project: Project = "local",
    location: Location = "us-central1",
    filter: str = "",
) -> None:
    """List operations, newest first."""
    reply = _call("GET", f"{_base(server, project, location)}/operations", params={"filter": filter})
    # The id, not the full name: a 70-character name is cut to "…" in an 80-column table, and
    # `operations get/wait/cancel` take the id as well as the name.
    table = Table(Column("operation", no_wrap=True), "done", "progress", "error")
    for op in reply.get("operations", []):
        error = op.get("error", {}).get("message", "")
        op_id = op["name"].rsplit("/", 1)[-1]
        table.add_row(op_id, str(op.get("done", False)), f"{op['metadata'].get('progressPercent', 0)}%", error)
    console.print(table)


@operations_app.command("cancel")
def operations_cancel(
    op: str, server: Server = "http://127.0.0.1:8080", project: Project = "local", location: Location = "us-central1"
) -> None:
    """Ask a running operation to stop."""
    _call("POST", _op_url(server, project, location, op) + ":cancel")
    console.print(f"cancel requested for {op}")


@models_app.command("import")
def models_import(
    path: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="Folder with model.yaml and the artifact.")
    ],
    id: Annotated[str | None, typer.Option("--id", help="Model id (default: the manifest's).")] = None,
    display_name: Annotated[str | None, typer.Option(help="Display name (default: the manifest's).")] = None,
    data_dir: Annotated[Path, typer.Option(envvar="BATCHLINE_DATA_DIR", help="The server's data folder.")] = Path(
        "data"
    ),
) -> None:
    """Copy a model folder into DATA_DIR/models after checking it loads; the server sees it at once."""
    from batchline.errors import BatchlineError
    from batchline.models.repository import ModelRepository

    try:
        model = ModelRepository(data_dir / "models").import_folder(path, id, display_name)
    except BatchlineError as exc:
        raise _fail(exc.message) from None
    console.print(f"imported {model.manifest.id} ({model.manifest.problem}) into {model.path}")


@models_app.command("list")
def models_list(
    server: Server = "http://127.0.0.1:8080", project: Project = "local", location: Location = "us-central1"
) -> None:
    """List the server's models."""
    reply = _call("GET", f"{_base(server, project, location)}/models")
    table = Table("id", "display name", "state")
    for m in reply.get("model", []):
        table.add_row(m["name"].rsplit("/", 1)[-1], m["displayName"], m["deploymentState"])
    console.print(table)


@models_app.command("show")
def models_show(
    model: str, server: Server = "http://127.0.0.1:8080", project: Project = "local", location: Location = "us-central1"
) -> None:
    """Print one model as JSON."""
    console.print_json(json.dumps(_call("GET", f"{_base(server, project, location)}/models/{model}")))


# -- Vertex AI batch prediction jobs


def _job_url(server: str, project: str, location: str, job: str = "") -> str:
    if job.startswith("projects/"):
        return f"{server.rstrip('/')}/v1/{job}"
    return f"{_base(server, project, location)}/batchPredictionJobs" + (f"/{job}" if job else "")


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = dict(v.split("=", 1) for v in values if "=" in v)
    if len(pairs) != len(values):
        raise _fail(f"{option} takes KEY=VALUE")
    return pairs


def _json_value(text: str) -> Any:
    """A modelParameters value as JSON (0.5 is a number); anything else stays a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _job_progress(job: dict) -> float:
    stats = job.get("completionStats", {})
    done = int(stats.get("successfulCount", 0)) + int(stats.get("failedCount", 0))
    total = done + int(stats.get("incompleteCount", 0))
    return 100.0 * done / total if total else 0.0


def _wait_job(url: str) -> dict:
    """Poll a job with a progress bar until it ends; exit non-zero with its error unless it succeeded."""
    with _progress_bar() as progress:
        task = progress.add_task("JOB_STATE_PENDING", total=100)
        while True:
            job = _call("GET", url)
            progress.update(task, completed=_job_progress(job), description=job["state"])
            if job["state"] in JOB_DONE_STATES:
                break
            time.sleep(0.3)
    if job["state"] != "JOB_STATE_SUCCEEDED":
        error = job.get("error", {})
        raise _fail(f"job {job['state']}: code {error.get('code')}: {error.get('message', '')}")
    return job


@jobs_app.command("create")
def jobs_create(
    model: Annotated[str, typer.Option(help="Model id or name (ID@1 and ID@default work too).")],
    input: Annotated[list[str], typer.Option(help="Instances file URI, wildcards allowed (repeat for several).")],
    output: Annotated[str, typer.Option(help="Output URI prefix, e.g. gs://bucket/out/.")],
    format: Annotated[str, typer.Option(help="Instances format: jsonl, csv or file-list.")] = "jsonl",
    display_name: Annotated[str, typer.Option(help="The job's display name.")] = "batchline-job",
    param: Annotated[
        list[str], typer.Option(help="modelParameters KEY=VALUE, e.g. confidenceThreshold=0.5 (repeatable).")
    ] = [],  # noqa: B006
    key_field: Annotated[str | None, typer.Option(help="instanceConfig.keyField: output keys, not instances.")] = None,
    label: Annotated[list[str], typer.Option(help="KEY=VALUE label (repeatable).")] = [],  # noqa: B006
    wait: Annotated[bool, typer.Option(help="Wait for the job with a progress bar.")] = False,
    server: VertexServer = VERTEX_SERVER,
    project: Project = "local",
    location: Location = "us-central1",
) -> None:
    """Create a batch prediction job; prints its name (and waits with --wait)."""
    name = model if model.startswith("projects/") else f"projects/{project}/locations/{location}/models/{model}"
    body: dict[str, Any] = {
        "displayName": display_name,
        "model": name,
        "inputConfig": {"instancesFormat": format, "gcsSource": {"uris": input}},
        "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": output}},
        "labels": _pairs(label, "--label"),
    }
    if param:
        body["modelParameters"] = {k: _json_value(v) for k, v in _pairs(param, "--param").items()}
    if key_field:
        body["instanceConfig"] = {"keyField": key_field}
    job = _call("POST", _job_url(server, project, location), json=body)
    console.print(job["name"])
    if wait:
        job = _wait_job(_job_url(server, project, location, job["name"]))
        stats = job["completionStats"]
        console.print(f"succeeded: {stats['successfulCount']}, failed: {stats['failedCount']}")
        console.print(f"output: {job['outputInfo']['gcsOutputDirectory']}")


@jobs_app.command("get")
def jobs_get(
    job: str, server: VertexServer = VERTEX_SERVER, project: Project = "local", location: Location = "us-central1"
) -> None:
    """Print a job (id or name) as JSON."""
    console.print_json(json.dumps(_call("GET", _job_url(server, project, location, job))))


@jobs_app.command("list")
def jobs_list(
    filter: Annotated[str, typer.Option(help='e.g. state=JOB_STATE_SUCCEEDED AND labels.team="a"')] = "",
    server: VertexServer = VERTEX_SERVER,
    project: Project = "local",
    location: Location = "us-central1",
) -> None:
    """List jobs, newest first."""
    reply = _call("GET", _job_url(server, project, location), params={"filter": filter})
    table = Table(Column("job", no_wrap=True), "display name", "state", "progress", "error")
    for job in reply.get("batchPredictionJobs", []):
        error = job.get("error", {}).get("message", "")
        progress = f"{_job_progress(job):.0f}%"
        table.add_row(job["name"].rsplit("/", 1)[-1], job["displayName"], job["state"], progress, error)
    console.print(table)


@jobs_app.command("cancel")
def jobs_cancel(
    job: str, server: VertexServer = VERTEX_SERVER, project: Project = "local", location: Location = "us-central1"
) -> None:
    """Ask a pending or running job to stop."""
    _call("POST", _job_url(server, project, location, job) + ":cancel", json={})
    console.print(f"cancel requested for {job}")


@jobs_app.command("delete")
def jobs_delete(
    job: str, server: VertexServer = VERTEX_SERVER, project: Project = "local", location: Location = "us-central1"
) -> None:
    """Delete an ended job's record (its output files stay)."""
    _call("DELETE", _job_url(server, project, location, job))
    console.print(f"deleted {job}")
