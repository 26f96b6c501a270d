"""MobileNetV3-Small (224x224, 1000 classes) in plain torch, exported with random weights to ONNX + model.yaml.

The architecture follows Howard et al., "Searching for MobileNetV3" (2019), Table 2, the way torchvision builds it:
a 3x3 stem, eleven inverted-residual blocks (1x1 expand, depthwise kxk, optional squeeze-and-excite, 1x1 project,
residual when shapes allow) with ReLU or hardswish, a 1x1 conv to 576 channels, global pooling and a
576 -> 1024 -> 1000 classifier head. It has 2,542,856 parameters, as torchvision's mobilenet_v3_small does.

Weights are random (speed does not depend on their values); BatchNorm statistics are calibrated on a few random
batches so that activations, and so the softmax scores, stay finite.

Needs torch (not installed beside batchline; torchvision is not needed):

    python3 -m venv /tmp/benchenv && /tmp/benchenv/bin/pip install torch==2.13.0 onnx
    /tmp/benchenv/bin/python bench/mobilenet.py            # -> bench/out/mobilenetv3-small/{model.onnx,model.yaml}

The export is cached: a second run with the folder already there does nothing (pass --force to rebuild).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
MODEL_DIR = OUT / "mobilenetv3-small"
MODEL_ID = "mobilenetv3-small"
NUM_CLASSES = 1000
SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Table 2 of the paper: kernel, expansion size, output channels, squeeze-and-excite, nonlinearity, stride.
BLOCKS = [
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
]
STEM, LAST_CONV, HEAD = 16, 576, 1024
EXPECTED_PARAMETERS = 2_542_856


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of 8, never going below 90 % of the value (the MobileNet rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def build_model():  # noqa: C901 - the nested module classes need torch, imported here
    import torch
    from torch import nn

    def conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = "HS"):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=0.001, momentum=0.01),
        ]
        if act == "HS":
            layers.append(nn.Hardswish())
        elif act == "RE":
            layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    class SqueezeExcite(nn.Module):
        def __init__(self, channels: int):
            super().__init__()
            squeezed = make_divisible(channels // 4)
            self.fc1 = nn.Conv2d(channels, squeezed, 1)
            self.fc2 = nn.Conv2d(squeezed, channels, 1)
            self.relu = nn.ReLU()
            self.gate = nn.Hardsigmoid()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scale = nn.functional.adaptive_avg_pool2d(x, 1)
            return x * self.gate(self.fc2(self.relu(self.fc1(scale))))

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, kernel: int, expanded: int, cout: int, se: bool, act: str, stride: int):
            super().__init__()
            self.residual = stride == 1 and cin == cout
            layers: list[nn.Module] = []
            if expanded != cin:
                layers.append(conv_bn_act(cin, expanded, 1, act=act))
            layers.append(conv_bn_act(expanded, expanded, kernel, stride, groups=expanded, act=act))
            if se:
                layers.append(SqueezeExcite(expanded))
            layers.append(conv_bn_act(expanded, cout, 1, act=None))
            self.block = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.block(x)
            return x + y if self.residual else y

    class MobileNetV3Small(nn.Module):
        def __init__(self, num_classes: int = NUM_CLASSES):
            super().__init__()
            layers: list[nn.Module] = [conv_bn_act(3, STEM, 3, stride=2, act="HS")]
            cin = STEM
            for kernel, expanded, cout, se, act, stride in BLOCKS:
                layers.append(InvertedResidual(cin, kernel, expanded, cout, se, act, stride))
                cin = cout
            layers.append(conv_bn_act(cin, LAST_CONV, 1, act="HS"))
            self.features = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(
                nn.Linear(LAST_CONV, HEAD), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(HEAD, num_classes)
            )
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.zeros_(m.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(torch.flatten(self.pool(self.features(x)), 1))

    return MobileNetV3Small()


def calibrate_batchnorm(model, batches: int = 4, batch_size: int = 16) -> None:
    """Set BatchNorm running statistics from a few random, normalised-looking batches."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(batch_size, 3, SIZE, SIZE))
    model.eval()


def manifest_text() -> str:
    labels = "\n".join(f"  - class_{i:03d}" for i in range(NUM_CLASSES))
    return f"""id: {MODEL_ID}
display_name: mobilenetv3_small
problem: image_classification
format: onnx
artifact: model.onnx
labels:
{labels}
input:
  name: input
  size: [{SIZE}, {SIZE}]
  resize: stretch
  channel_order: rgb
  layout: nchw
  dtype: float32
  scale: 0.00392156862745098
  mean: [{", ".join(map(str, IMAGENET_MEAN))}]
  std: [{", ".join(map(str, IMAGENET_STD))}]
output:
  scores: logits
  activation: softmax
batch_size: 32
"""


def export(folder: Path, seed: int = 0) -> None:
    import numpy as np
    import onnx
    import torch

    torch.manual_seed(seed)
    model = build_model()
    count = sum(p.numel() for p in model.parameters())
    if count != EXPECTED_PARAMETERS:
        raise SystemExit(f"MobileNetV3-Small should have {EXPECTED_PARAMETERS:,} parameters, this one has {count:,}")
    calibrate_batchnorm(model)
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / "model.onnx.tmp"
    example = torch.randn(2, 3, SIZE, SIZE)
    warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
    torch.onnx.export(
        model, (example,), str(staging), input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
    )
    onnx.checker.check_model(str(staging))
    with torch.no_grad():
        expected = model(example).numpy()
    _check_with_onnxruntime(staging, example.numpy(), expected, np)
    np.savez(folder / "reference.npz", input=example.numpy(), logits=expected)  # bench/run.py checks ORT against it
    staging.replace(folder / "model.onnx")
    (folder / "model.yaml").write_text(manifest_text(), encoding="utf-8")
    print(f"exported MobileNetV3-Small ({count:,} parameters, random weights, seed {seed}) to {folder}")


def _check_with_onnxruntime(path: Path, x, expected, np) -> None:
    try:
        import onnxruntime as ort
    except ImportError:
        return  # the torch venv need not have it; bench/run.py loads the model with ONNX Runtime anyway
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], {"input": x})[0]
    if not np.allclose(got, expected, rtol=1e-3, atol=1e-4):
        raise SystemExit(f"ONNX Runtime disagrees with torch: max abs diff {np.abs(got - expected).max()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=MODEL_DIR, help="model folder to write (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the folder already has the model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.force and (args.out / "model.onnx").is_file() and (args.out / "model.yaml").is_file():
        print(f"cached: {args.out} (pass --force to rebuild)")
        return 0
    export(args.out, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
