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

import sys
from pathlib import Path

import modelexport
from modelexport import OUT, calibrate_batchnorm, check_parameter_count, export_onnx, labels_yaml

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


def manifest_text() -> str:
    return f"""id: {MODEL_ID}
display_name: mobilenetv3_small
problem: image_classification
format: onnx
artifact: model.onnx
labels:
{labels_yaml([f"class_{i:03d}" for i in range(NUM_CLASSES)])}
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
batch_size: 8  # best for one single-threaded run per core on CPU (model-only); a GPU wants BATCHLINE_BATCH_SIZE=32
"""


def export(folder: Path, seed: int = 0) -> None:
    import torch

    torch.manual_seed(seed)
    model = build_model()
    count = check_parameter_count(model, EXPECTED_PARAMETERS, "MobileNetV3-Small")
    # The model takes ImageNet-normalised pixels: roughly standard normal.
    calibrate_batchnorm(model, lambda batch: torch.randn(batch, 3, SIZE, SIZE))
    example = torch.randn(2, 3, SIZE, SIZE)
    export_onnx(model, folder, example, "input", "logits", manifest_text())
    print(f"exported MobileNetV3-Small ({count:,} parameters, random weights, seed {seed}) to {folder}")


def main(argv: list[str] | None = None) -> int:
    return modelexport.main(argv, __doc__, MODEL_DIR, export)


if __name__ == "__main__":
    sys.exit(main())
