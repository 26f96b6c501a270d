"""Train the example shapes classifier and export it to examples/models/shapes-classifier/model.onnx.

Training images come from scripts/shapes.py: a pool of fresh images is generated in parallel, stored in a
random format like write_dataset does (JPEG round-trips in memory) and kept as 64x64 uint8 pixels; epochs
then see them under random flips and 90-degree turns, which keep the label. After export the ONNX file is
scored with onnxruntime on images written to disk with another seed and decoded through the same
preprocessing the server applies (see model.yaml).

Needs torch, onnx, onnxruntime, numpy and Pillow (CPU is enough):
    nice -n 5 python scripts/train_shapes_classifier.py
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shapes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "examples" / "models" / "shapes-classifier" / "model.onnx"
SIZE = 64
CHUNK = 500  # images per generation task; chunk i of a pool is seeded with (seed, i)
TRAIN_SEED, VAL_SEED, TEST_SEED = 1, 2, 20240607  # training pool, per-epoch check, final test

Images = tuple[np.ndarray, np.ndarray]  # uint8 NHWC 64x64 pixels, int64 label indices


def to_pixels(img: Image.Image) -> np.ndarray:
    """Server preprocessing, part 1: RGB, stretched to 64x64 with bilinear resampling (uint8 HWC)."""
    return np.asarray(img.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR))


def normalize(pixels: np.ndarray) -> np.ndarray:
    """Server preprocessing, part 2: uint8 NHWC -> x/255, (x-0.5)/0.5 as float32 NCHW."""
    x = (pixels.astype(np.float32) * (1 / 255) - 0.5) / 0.5
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def generate_chunk(task: tuple[int, int, int]) -> Images:
    seed, index, n = task
    rng = np.random.default_rng([seed, index])
    pixels, labels = np.empty((n, SIZE, SIZE, 3), np.uint8), np.empty(n, np.int64)
    for i in range(n):
        labels[i] = rng.integers(len(shapes.LABELS))
        img = shapes.make_image(rng, shapes.LABELS[labels[i]])
        ext, options = shapes.pick_format(rng)
        if ext == "jpg":  # PNG is lossless, so only JPEG needs the round trip
            buf = io.BytesIO()
            img.save(buf, format="JPEG", **options)
            img = Image.open(buf)
        pixels[i] = to_pixels(img)
    return pixels, labels


def make_pool(n: int, seed: int) -> Images:
    """n labelled images, generated on 2 processes."""
    tasks = [(seed, i, min(CHUNK, n - start)) for i, start in enumerate(range(0, n, CHUNK))]
    with multiprocessing.Pool(2) as workers:
        chunks = workers.map(generate_chunk, tasks)
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def build_model() -> nn.Module:
    def block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
        conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        return [conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(3, 16, stride=2),  # 32x32
        *block(16, 32), nn.MaxPool2d(2),  # 16x16
        *block(32, 64), nn.MaxPool2d(2),  # 8x8
        *block(64, 128), nn.MaxPool2d(2),  # 4x4
        *block(128, 128),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, len(shapes.LABELS)),
    )  # fmt: skip


@torch.no_grad()
def accuracy(model: nn.Module, pixels: np.ndarray, labels: np.ndarray) -> float:
    model.eval()
    predicted = model(torch.from_numpy(normalize(pixels))).argmax(1).numpy()
    return float((predicted == labels).mean())


def train(model: nn.Module, train_set: Images, val_set: Images, epochs: int, batch_size: int, lr: float) -> None:
    pixels, labels = train_set
    steps = len(labels) // batch_size
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
    loss_fn = nn.CrossEntropyLoss()
    start = time.time()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(labels), generator=gen).numpy()
        total = 0.0
        for step in range(steps):
            idx = order[step * batch_size : (step + 1) * batch_size]
            x = torch.from_numpy(normalize(pixels[idx]))
            # Shapes keep their label under quarter turns and mirroring: one of the 8 per batch.
            k = int(torch.randint(0, 8, (), generator=gen))
            x = torch.rot90(x, k % 4, (2, 3))
            x = x.flip(3) if k >= 4 else x
            loss = loss_fn(model(x), torch.from_numpy(labels[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        print(
            f"epoch {epoch}/{epochs}: loss {total / steps:.4f}  val acc {accuracy(model, *val_set):.4f}"
            f"  ({time.time() - start:.0f}s)",
            flush=True,
        )


def export(model: nn.Module, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, SIZE, SIZE),),
        str(out),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,  # the TorchScript exporter keeps all weights inside the single .onnx file
    )


def evaluate_onnx(path: Path, n: int) -> float:
    """Top-1 accuracy of the ONNX model on n fresh images saved to disk and decoded like the server does."""
    with tempfile.TemporaryDirectory() as tmp:
        pairs = shapes.write_dataset(Path(tmp), n, TEST_SEED)
        pixels = np.stack([to_pixels(Image.open(p)) for p, _ in pairs])
    labels = np.array([shapes.LABELS.index(label) for _, label in pairs])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = np.concatenate(
        [session.run(["logits"], {"input": normalize(pixels[i : i + 64])})[0] for i in range(0, n, 64)]
    )
    return float((logits.argmax(1) == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-n", type=int, default=30_000, help="size of the generated training pool")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--test-n", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(0)
    start = time.time()
    train_set, val_set = make_pool(args.train_n, TRAIN_SEED), make_pool(1000, VAL_SEED)
    print(f"generated {args.train_n} training + 1000 validation images in {time.time() - start:.0f}s")
    model = build_model()
    train(model, train_set, val_set, args.epochs, args.batch_size, args.lr)
    print(f"total training time (generation included) {time.time() - start:.0f}s")
    export(model, args.out)
    print(f"exported {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    acc = evaluate_onnx(args.out, args.test_n)
    print(f"onnxruntime top-1 accuracy on {args.test_n} fresh images (seed {TEST_SEED}): {acc:.4f}")


if __name__ == "__main__":
    main()
