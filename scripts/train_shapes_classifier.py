"""Train the example shapes classifier and export it to examples/models/shapes-classifier/model.onnx.

Training images are generated on the fly by scripts/shapes.py (every batch is fresh, so the model never
sees an image twice), encoded as JPEG/PNG and decoded again like real uploads. After export the ONNX file
is scored with onnxruntime on images written to disk with a different seed and read back through the
same preprocessing the server applies (see model.yaml).

Needs torch, onnx, onnxruntime, numpy and Pillow (CPU is enough):
    nice -n 5 python scripts/train_shapes_classifier.py
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shapes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "examples" / "models" / "shapes-classifier" / "model.onnx"
SIZE = 64
TRAIN_SEED, VAL_SEED, TEST_SEED = 1, 2, 20240607  # distinct streams: training, per-epoch check, final test


def preprocess(img: Image.Image) -> np.ndarray:
    """What the server does per model.yaml: RGB, stretch to 64x64 bilinear, x/255, (x-0.5)/0.5, CHW."""
    pixels = np.asarray(img.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float32)
    return ((pixels * (1 / 255) - 0.5) / 0.5).transpose(2, 0, 1)


def sample(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A fresh labelled image, stored in a random format (JPEG round-trips in memory) like write_dataset."""
    label = int(rng.integers(len(shapes.LABELS)))
    img = shapes.make_image(rng, shapes.LABELS[label])
    ext, options = shapes.pick_format(rng)
    if ext == "jpg":  # PNG is lossless, so only JPEG needs the round trip
        buf = io.BytesIO()
        img.save(buf, format="JPEG", **options)
        img = Image.open(buf)
    return preprocess(img), label


class FreshShapes(IterableDataset):
    """An endless, seeded stream of fresh samples (use with num_workers <= 1 to keep it deterministic)."""

    def __init__(self, seed: int):
        self.seed = seed

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        while True:
            yield sample(rng)


def build_model() -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(3, 16), nn.MaxPool2d(2),  # 32x32
        *block(16, 32), nn.MaxPool2d(2),  # 16x16
        *block(32, 64), nn.MaxPool2d(2),  # 8x8
        *block(64, 128), *block(128, 128),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, len(shapes.LABELS)),
    )  # fmt: skip


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return (model(x).argmax(1) == y).float().mean().item()


def train(model: nn.Module, epochs: int, steps: int, batch_size: int) -> None:
    rng = np.random.default_rng(VAL_SEED)
    val = [sample(rng) for _ in range(1000)]
    val_x = torch.from_numpy(np.stack([v[0] for v in val]))
    val_y = torch.tensor([v[1] for v in val])

    # One endless iterator across all epochs, so each epoch continues the stream instead of restarting it.
    batches = iter(DataLoader(FreshShapes(TRAIN_SEED), batch_size=batch_size, num_workers=1))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * steps)
    loss_fn = nn.CrossEntropyLoss()
    start = time.time()
    for epoch in range(1, epochs + 1):
        model.train()
        total = 0.0
        for _ in range(steps):
            x, y = next(batches)
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        print(
            f"epoch {epoch}/{epochs}: loss {total / steps:.4f}  val acc {accuracy(model, val_x, val_y):.4f}"
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
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    correct = 0
    with tempfile.TemporaryDirectory() as tmp:
        pairs = shapes.write_dataset(Path(tmp), n, TEST_SEED)
        for i in range(0, n, 64):
            chunk = pairs[i : i + 64]
            x = np.stack([preprocess(Image.open(p)) for p, _ in chunk])
            (logits,) = session.run(["logits"], {"input": x})
            correct += sum(shapes.LABELS[k] == label for k, (_, label) in zip(logits.argmax(1), chunk))
    return correct / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--steps", type=int, default=200, help="batches per epoch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--test-n", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = build_model()
    start = time.time()
    train(model, args.epochs, args.steps, args.batch_size)
    print(f"training took {time.time() - start:.0f}s")
    export(model, args.out)
    print(f"exported {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    acc = evaluate_onnx(args.out, args.test_n)
    print(f"onnxruntime top-1 accuracy on {args.test_n} fresh images (seed {TEST_SEED}): {acc:.4f}")


if __name__ == "__main__":
    main()
