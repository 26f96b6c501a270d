"""Train the example shapes detector and export it to examples/models/shapes-detector/ (model.onnx + model.yaml).

Data: scenes from scripts/shapes.py (1-8 circles, squares, triangles and stars per image, 240-640 px sides),
encoded as JPEG or PNG like write_scenes does, then decoded and letterboxed by batchline's own
preprocessing (batchline.problems.image.decode.decode_image with the input spec of MODEL_YAML), so training sees
exactly the pixels the server feeds the model. Epochs see the pool under random flips and transposes, which
keep every label.

Model: a small anchor-free, FCOS/YOLOv8-style detector. A conv backbone with residual stages (strides 2-32)
feeds a top-down feature pyramid; a head per level (strides 8, 16, 32) predicts, at every grid point, the distances
from the point to the box's four sides and one score per class. A point learns an object when it lies inside
its box, near its centre and on the pyramid level that suits its size (FCOS assignment with centre
sampling); its class score learns the IoU of its predicted box (quality focal loss), so that scores rank
boxes by quality as mAP wants. The export decodes boxes and applies the sigmoid in the graph: one output
`output0` [batch, 4 + 4, anchors] of cx, cy, w, h in input pixels and class scores, as Ultralytics exports.

After export the script scores the shipped files through batchline itself (manifest, problem, runtime: the
NMS and box mapping users get) on fresh scenes written to disk with a seed training never uses, and prints
mAP@0.5 from pycocotools.

Needs torch, onnx, pycocotools and batchline's dependencies (onnxruntime, Pillow, simplejpeg, pydantic, ...).
On this repo's machines:
    PYTHONPATH=src:.venv/lib/python3.11/site-packages nice -n 19 /tmp/benchenv/bin/python \\
        scripts/train_shapes_detector.py
or, in a venv with `pip install -e '.[train,test]'`: python scripts/train_shapes_detector.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
import yaml
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from batchline.models.manifest import Manifest, load_manifest
from batchline.problems import problem_for
from batchline.problems.image.decode import decode_image
from batchline.runtimes import load_runtime

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shapes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "examples" / "models" / "shapes-detector"
SIZE = 320  # the model's square input
CLASSES = len(shapes.LABELS)
STRIDES = (8, 16, 32)
# FCOS scale ranges: a point on level i learns a box whose farthest side lies within RANGES[i] px of it.
RANGES = ((0, 32), (32, 64), (64, math.inf))
CENTRE_RADIUS = 2.5  # centre sampling: positives lie within this many strides of the box centre
VAL_N = 300
CHUNK = 250  # scenes per generation task; chunk i of a pool is seeded with (seed, i)
TRAIN_SEED, VAL_SEED, EVAL_SEED = 11, 12, 20240611  # training pool, per-epoch loss check, final mAP

MODEL_YAML = f"""\
id: shapes-detector
display_name: shapes_detector
problem: image_object_detection
format: onnx
artifact: model.onnx
labels: [{", ".join(shapes.LABELS)}]
input:
  name: images
  size: [{SIZE}, {SIZE}]
  resize: letterbox
  channel_order: rgb
  layout: nchw
  dtype: float32
  scale: 0.00392156862745098
output:
  format: yolo
  predictions: output0
  activation: none
  iou_threshold: 0.5
batch_size: 16
"""
INPUT_SPEC = Manifest.model_validate(yaml.safe_load(MODEL_YAML)).input

Pool = tuple[np.ndarray, list[np.ndarray]]  # uint8 NHWC letterboxed pixels; per image [k, 5] of x0 y0 x1 y1 class


# -- data


def generate_chunk(task: tuple[int, int, int]) -> Pool:
    """n scenes through a JPEG/PNG round trip and the server's decoding; boxes mapped into the model input."""
    seed, index, n = task
    rng = np.random.default_rng([seed, index])
    pixels, targets = np.empty((n, SIZE, SIZE, 3), np.uint8), []
    for i in range(n):
        img, objects = shapes.make_scene(rng)
        pixels[i], geometry = decode_image(shapes.encode(img, rng)[1], INPUT_SPEC)
        scale = np.array([geometry.scale_x, geometry.scale_y] * 2)
        pad = np.array([geometry.pad_x, geometry.pad_y] * 2)
        rows = [[*(np.array(box) * scale + pad), shapes.LABELS.index(label)] for label, box in objects]
        targets.append(np.array(rows, np.float32).reshape(-1, 5))
    return pixels, targets


def make_pool(n: int, seed: int) -> Pool:
    """n scenes, generated on 2 processes."""
    tasks = [(seed, i, min(CHUNK, n - start)) for i, start in enumerate(range(0, n, CHUNK))]
    with multiprocessing.Pool(2) as workers:
        chunks = workers.map(generate_chunk, tasks)
    return np.concatenate([c[0] for c in chunks]), [t for c in chunks for t in c[1]]


def make_batch(pool: Pool, idx: np.ndarray, flip: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images scaled like the server does (x * input.scale, NCHW) and targets padded to [B, most objects, 5]
    (class -1 = padding).

    flip's bits pick a transpose, a left-right and an up-down flip: the 8 symmetries of the square input.
    """
    x = torch.from_numpy(pool[0][idx]).permute(0, 3, 1, 2).float().mul_(INPUT_SPEC.scale)
    rows = [pool[1][i] for i in idx]
    targets = torch.full((len(idx), max(1, *(len(r) for r in rows)), 5), -1.0)
    for j, r in enumerate(rows):
        targets[j, : len(r)] = torch.from_numpy(r)
    x0, y0, x1, y1, label = targets.unbind(-1)
    if flip & 1:
        x, (x0, y0, x1, y1) = x.transpose(2, 3), (y0, x0, y1, x1)
    if flip & 2:
        x, (x0, x1) = x.flip(3), (SIZE - x1, SIZE - x0)
    if flip & 4:
        x, (y0, y1) = x.flip(2), (SIZE - y1, SIZE - y0)
    return x.contiguous(), torch.stack([x0, y0, x1, y1, label], -1)


# -- model


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU(inplace=True))


class Residual(nn.Module):
    """Two 3x3 convs with a skip connection: depth that still trains fast from scratch."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels), conv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def grid_points() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centres [A, 2] (x, y in input pixels), strides [A, 1] and RANGES [A, 2] of all grid points, level by
    level, row-major: the anchors of the output."""
    points, strides, ranges = [], [], []
    for stride, size_range in zip(STRIDES, RANGES, strict=True):
        n = SIZE // stride
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        points.append((torch.stack([xs, ys], -1).reshape(-1, 2) + 0.5) * stride)
        strides.append(torch.full((n * n, 1), float(stride)))
        ranges.append(torch.tensor(size_range, dtype=torch.float32).expand(n * n, 2))
    return torch.cat(points), torch.cat(strides), torch.cat(ranges)


class Detector(nn.Module):
    """Backbone (strides 2-32) -> top-down pyramid (64 channels at strides 8/16/32) -> a head per level.

    forward() gives raw [B, A, 4 + classes]: the box side distances before softplus and the class logits.
    """

    def __init__(self, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(conv(3, 16, 2), conv(16, 32, 2))  # stride 4
        self.c3 = nn.Sequential(conv(32, 64, 2), Residual(64))  # stride 8
        self.c4 = nn.Sequential(conv(64, 96, 2), Residual(96))  # stride 16
        self.c5 = nn.Sequential(conv(96, 128, 2), Residual(128))  # stride 32
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in (64, 96, 128))
        self.smooth = nn.ModuleList(conv(width, width) for _ in STRIDES)
        self.heads = nn.ModuleList(
            nn.Sequential(conv(width, width), conv(width, width), nn.Conv2d(width, 4 + CLASSES, 1)) for _ in STRIDES
        )
        for head in self.heads:  # start every score at 0.01 so the many background points don't swamp the loss
            nn.init.constant_(head[-1].bias[4:], -math.log(99))
        points, strides, ranges = grid_points()
        self.register_buffer("points", points, persistent=False)
        self.register_buffer("strides", strides, persistent=False)
        self.register_buffer("ranges", ranges, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c3 = self.c3(self.stem(x))
        c4 = self.c4(c3)
        c5 = self.c5(c4)
        p5 = self.lateral[2](c5)
        p4 = self.lateral[1](c4) + F.interpolate(p5, scale_factor=2.0, mode="nearest")
        p3 = self.lateral[0](c3) + F.interpolate(p4, scale_factor=2.0, mode="nearest")
        levels = [head(smooth(p)) for head, smooth, p in zip(self.heads, self.smooth, (p3, p4, p5), strict=True)]
        return torch.cat([level.flatten(2) for level in levels], 2).transpose(1, 2)

    def boxes(self, raw: torch.Tensor) -> torch.Tensor:
        """xyxy input pixels [B, A, 4] from the raw side distances (in strides, made positive by softplus)."""
        sides = F.softplus(raw[..., :4]) * self.strides
        return torch.cat([self.points - sides[..., :2], self.points + sides[..., 2:]], -1)


class Exported(nn.Module):
    """The graph users get: output0 [B, 4 + classes, A] of cx, cy, w, h (input pixels) and sigmoid scores."""

    def __init__(self, model: Detector):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raw = self.model(images)
        xyxy = self.model.boxes(raw)
        cxcywh = torch.cat([(xyxy[..., :2] + xyxy[..., 2:]) / 2, xyxy[..., 2:] - xyxy[..., :2]], -1)
        return torch.cat([cxcywh, raw[..., 4:].sigmoid()], -1).transpose(1, 2)


# -- assignment and loss


def assign(model: Detector, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FCOS assignment: for each point [B, A] the index of the object it learns and whether it learns one.

    A point learns an object when it lies inside the box, within CENTRE_RADIUS strides of its centre and its
    level's range holds the distance to the box's farthest side; of several, the smallest box wins.
    """
    px, py = model.points[:, 0, None], model.points[:, 1, None]  # [A, 1] against objects [B, 1, M]
    x0, y0, x1, y1 = (targets[:, None, :, k] for k in range(4))
    sides = torch.stack([px - x0, py - y0, x1 - px, y1 - py], -1)  # [B, A, M, 4]
    radius = CENTRE_RADIUS * model.strides
    near = ((px - (x0 + x1) / 2).abs() < radius) & ((py - (y0 + y1) / 2).abs() < radius)
    farthest = sides.max(-1).values
    in_range = (farthest > model.ranges[:, :1]) & (farthest <= model.ranges[:, 1:])
    ok = (sides.min(-1).values > 0) & near & in_range & (targets[:, None, :, 4] >= 0)  # class -1: padding
    area = ((x1 - x0) * (y1 - y0)).expand_as(ok).masked_fill(~ok, math.inf)
    return area.argmin(-1), ok.any(-1)


def giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and generalized IoU of matching xyxy rows."""
    inter = (torch.min(a[:, 2:], b[:, 2:]) - torch.max(a[:, :2], b[:, :2])).clamp(min=0).prod(-1)
    union = (a[:, 2:] - a[:, :2]).prod(-1) + (b[:, 2:] - b[:, :2]).prod(-1) - inter
    iou = inter / union.clamp(min=1e-6)
    hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).prod(-1).clamp(min=1e-6)
    return iou, iou - (hull - union) / hull


def detection_loss(model: Detector, raw: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quality focal loss on the class scores and GIoU loss on the boxes, each per positive point."""
    index, positive = assign(model, targets)
    image, point = positive.nonzero(as_tuple=True)
    matched = targets[image, index[image, point]]  # [P, 5]
    iou, g = giou(model.boxes(raw)[image, point], matched[:, :4])
    quality = torch.zeros_like(raw[..., 4:])  # soft target: the IoU of the point's box, for its object's class
    quality[image, point, matched[:, 4].long()] = iou.detach().clamp(min=0.01)
    logits = raw[..., 4:]
    focal = (logits.sigmoid() - quality).abs().pow(2)
    n = max(1, len(point))
    cls_loss = (F.binary_cross_entropy_with_logits(logits, quality, reduction="none") * focal).sum() / n
    return cls_loss, 2.0 * (1 - g).sum() / n


# -- training


def train(model: Detector, pool: Pool, val: Pool, epochs: int, batch_size: int, lr: float) -> None:
    steps = len(pool[1]) // batch_size
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps, pct_start=0.15)
    start = time.time()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(pool[1]), generator=gen).numpy()
        totals = np.zeros(2)
        for step in range(steps):
            flip = int(torch.randint(8, (), generator=gen))
            x, targets = make_batch(pool, order[step * batch_size : (step + 1) * batch_size], flip)
            cls_loss, box_loss = detection_loss(model, model(x), targets)
            opt.zero_grad()
            (cls_loss + box_loss).backward()
            opt.step()
            sched.step()
            totals += [cls_loss.item(), box_loss.item()]
            if step % 100 == 99:
                mean = totals / (step + 1)
                print(f"  step {step + 1}/{steps}: cls {mean[0]:.4f} box {mean[1]:.4f}  ({time.time() - start:.0f}s)")
        mean = totals / steps
        print(
            f"epoch {epoch}/{epochs}: train cls {mean[0]:.4f} box {mean[1]:.4f}  val {validate(model, val)}"
            f"  ({time.time() - start:.0f}s)",
            flush=True,
        )


@torch.no_grad()
def validate(model: Detector, val: Pool) -> str:
    model.eval()
    totals = np.zeros(2)
    batches = range(0, len(val[1]), 50)
    for i in batches:
        x, targets = make_batch(val, np.arange(i, min(i + 50, len(val[1]))))
        totals += [loss.item() for loss in detection_loss(model, model(x), targets)]
    return f"cls {totals[0] / len(batches):.4f} box {totals[1] / len(batches):.4f}"


def export(model: Detector, out_dir: Path) -> Path:
    """model.onnx (opset 17, IR 9, weights inside) and model.yaml into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    model.eval()
    torch.onnx.export(
        Exported(model),
        (torch.zeros(1, 3, SIZE, SIZE),),
        str(path),
        input_names=["images"],
        output_names=["output0"],
        dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
        opset_version=17,
        dynamo=False,  # the TorchScript exporter keeps all weights inside the single .onnx file
    )
    graph = onnx.load(str(path))
    graph.ir_version = min(graph.ir_version, 9)  # at most IR 9, so that older onnxruntime releases load it too
    dims = graph.graph.output[0].type.tensor_type.shape.dim  # the exporter leaves these two symbolic
    dims[1].dim_value, dims[2].dim_value = 4 + CLASSES, len(model.points)
    onnx.checker.check_model(graph, full_check=True)
    onnx.save(graph, str(path))
    (out_dir / "model.yaml").write_text(
        "# Example model: trained by scripts/train_shapes_detector.py on generated shape scenes.\n" + MODEL_YAML
    )
    return path


# -- evaluation through batchline


def evaluate(model_dir: Path, n: int, seed: int) -> np.ndarray:
    """COCO stats (stats[1] = mAP@0.5) of the exported model, run by batchline, on n fresh scenes from disk."""
    manifest = load_manifest(model_dir)
    problem = problem_for(manifest)
    runtime = load_runtime(manifest, model_dir / manifest.artifact, threads=0)
    params = problem.Params(score_threshold=0.05, max_bounding_box_count=100)
    images, annotations, detections = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for image_id, (path, objects) in enumerate(shapes.write_scenes(Path(tmp), n, seed), start=1):
            batch, [geometry] = problem.preprocessor.batch([path.read_bytes()])
            found = problem.predictions(runtime.predict_batch(batch), [geometry], params)[0].boxes
            w, h = geometry.width, geometry.height
            images.append({"id": image_id, "width": w, "height": h})
            for label, (x0, y0, x1, y1) in objects:
                annotations.append(coco_box(image_id, label, x0, y0, x1, y1, id=len(annotations) + 1, iscrowd=0))
            for a in found:
                x0, y0, x1, y1 = a.box
                detections.append(coco_box(image_id, a.label, x0 * w, y0 * h, x1 * w, y1 * h, score=a.score))
    return coco_stats(images, annotations, detections)


def coco_box(image_id: int, label: str, x0: float, y0: float, x1: float, y1: float, **extra) -> dict:
    w, h = x1 - x0, y1 - y0
    category = shapes.LABELS.index(label) + 1
    return {"image_id": image_id, "category_id": category, "bbox": [x0, y0, w, h], "area": w * h, **extra}


def coco_stats(images: list[dict], annotations: list[dict], detections: list[dict]) -> np.ndarray:
    if not detections:  # loadRes cannot take an empty list
        return np.zeros(12)
    categories = [{"id": i + 1, "name": label} for i, label in enumerate(shapes.LABELS)]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        truth = COCO()
        truth.dataset = {"images": images, "annotations": annotations, "categories": categories}
        truth.createIndex()
        found = truth.loadRes(detections)
        evaluation = COCOeval(truth, found, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
    evaluation.summarize()
    return evaluation.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-n", type=int, default=8000, help="size of the generated training pool")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--eval-n", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(0)
    start = time.time()
    pool, val = make_pool(args.train_n, TRAIN_SEED), make_pool(VAL_N, VAL_SEED)
    print(f"generated {args.train_n} training + {VAL_N} validation scenes in {time.time() - start:.0f}s", flush=True)
    model = Detector()
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters", flush=True)
    train(model, pool, val, args.epochs, args.batch_size, args.lr)
    print(f"total training time (generation included) {time.time() - start:.0f}s")
    path = export(model, args.out)
    print(f"exported {path} ({path.stat().st_size / 1e6:.2f} MB) and model.yaml")
    stats = evaluate(args.out, args.eval_n, EVAL_SEED)
    print(f"batchline + pycocotools on {args.eval_n} fresh scenes (seed {EVAL_SEED}): mAP@0.5 {stats[1]:.4f}")


if __name__ == "__main__":
    main()
