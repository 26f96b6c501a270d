"""YOLOv8n (320x320, 80 COCO classes) in plain torch, exported with random weights to ONNX + model.yaml.

The architecture is Ultralytics' yolov8.yaml at scale n (depth 0.33, width 0.25), written out without the
ultralytics package: Conv = Conv2d + BatchNorm + SiLU; a backbone of strided convs and C2f blocks (split, a chain
of bottlenecks, concatenate every step) ending in SPPF; a PAN-FPN neck (upsample + concat top-down, strided conv +
concat bottom-up) giving P3/8, P4/16 and P5/32; and a decoupled anchor-free head per level (a box branch of 4 x 16
DFL bins, a class branch of 80 logits). It has 3,157,200 parameters, as Ultralytics' yolov8n.yaml model does (16 of
them the fixed DFL projection).

The export is what `yolo export format=onnx imgsz=320` gives: input `images` [batch, 3, 320, 320] float32 RGB in
0..1 (letterboxed), output `output0` [batch, 84, 2100]: rows 0-3 the box centre x, y, width, height in input
pixels (DFL expectation, anchor points and strides applied), rows 4-83 the sigmoid class scores, one column per
anchor (40x40 + 20x20 + 10x10).

Weights are random (speed does not depend on their values), initialised as a fresh Ultralytics model is, class
biases included; BatchNorm statistics are calibrated on random photo-like batches (see photo_like_batch) so that
activations stay finite. So the class scores stay near the prior those biases set (~1e-5 to ~2e-4), and no box
reaches batchline's default score_threshold of 0.5: bench/run.py passes a lower one (its MODELS table).

Needs torch (not installed beside batchline):

    python3 -m venv /tmp/benchenv && /tmp/benchenv/bin/pip install torch==2.13.0 onnx
    /tmp/benchenv/bin/python bench/yolov8n.py             # -> bench/out/yolov8n-320/{model.onnx,model.yaml}

The export is cached: a second run with the folder already there does nothing (pass --force to rebuild).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import modelexport
from modelexport import OUT, calibrate_batchnorm, check_parameter_count, export_onnx, labels_yaml

MODEL_ID = "yolov8n-320"
MODEL_DIR = OUT / MODEL_ID
SIZE = 320
EXPECTED_PARAMETERS = 3_157_200
DEPTH, WIDTH, MAX_CHANNELS = 0.33, 0.25, 1024  # the "n" row of yolov8.yaml's scales
REG_MAX = 16  # DFL bins per box side
STRIDES = (8, 16, 32)

# COCO's 80 classes in Ultralytics' order; spaces become underscores, as AutoML label names allow no spaces.
COCO = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign parking_meter "
    "bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag tie suitcase frisbee "
    "skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard tennis_racket bottle wine_glass "
    "cup fork knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake chair couch "
    "potted_plant bed dining_table toilet tv laptop mouse remote keyboard cell_phone microwave oven toaster sink "
    "refrigerator book clock vase scissors teddy_bear hair_drier toothbrush"
).split()


def channels(c: int) -> int:
    """yolov8.yaml's channel count at this width: scaled, capped, rounded up to a multiple of 8."""
    return math.ceil(min(c, MAX_CHANNELS) * WIDTH / 8) * 8


def depth(n: int) -> int:
    """yolov8.yaml's repeat count at this depth."""
    return max(round(n * DEPTH), 1)


def build_model():  # noqa: C901 - the nested module classes need torch, imported here
    import torch
    from torch import nn

    class Conv(nn.Module):
        def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
            self.bn = nn.BatchNorm2d(cout, eps=0.001, momentum=0.03)
            self.act = nn.SiLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.bn(self.conv(x)))

    class Bottleneck(nn.Module):
        def __init__(self, c: int, shortcut: bool):
            super().__init__()
            self.cv1, self.cv2 = Conv(c, c, 3), Conv(c, c, 3)
            self.add = shortcut

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.cv2(self.cv1(x))
            return x + y if self.add else y

    class C2f(nn.Module):
        """CSP bottleneck with two convs: half the channels go through n bottlenecks, every output is kept."""

        def __init__(self, cin: int, cout: int, n: int, shortcut: bool):
            super().__init__()
            self.c = cout // 2
            self.cv1 = Conv(cin, 2 * self.c)
            self.cv2 = Conv((2 + n) * self.c, cout)
            self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = list(self.cv1(x).chunk(2, 1))
            y.extend(m(y[-1]) for m in self.m)
            return self.cv2(torch.cat(y, 1))

    class SPPF(nn.Module):
        """Spatial pyramid pooling, fast: three chained 5x5 max-pools, concatenated."""

        def __init__(self, cin: int, cout: int):
            super().__init__()
            hidden = cin // 2
            self.cv1, self.cv2 = Conv(cin, hidden), Conv(hidden * 4, cout)
            self.m = nn.MaxPool2d(5, 1, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = [self.cv1(x)]
            y.extend(self.m(y[-1]) for _ in range(3))
            return self.cv2(torch.cat(y, 1))

    class Detect(nn.Module):
        """Decoupled anchor-free head, decoded as Ultralytics' export does: [batch, 4 + classes, anchors]."""

        def __init__(self, nc: int, ch: tuple[int, ...]):
            super().__init__()
            self.nc, self.no = nc, nc + 4 * REG_MAX
            c2, c3 = max(16, ch[0] // 4, 4 * REG_MAX), max(ch[0], min(nc, 100))
            self.cv2 = nn.ModuleList(
                nn.Sequential(Conv(c, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * REG_MAX, 1)) for c in ch
            )
            self.cv3 = nn.ModuleList(nn.Sequential(Conv(c, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for c in ch)
            # DFL: the expected distance is the softmax over the bins dotted with 0..15, a fixed 1x1 conv.
            self.dfl = nn.Conv2d(REG_MAX, 1, 1, bias=False).requires_grad_(False)
            self.dfl.weight.data[:] = torch.arange(REG_MAX, dtype=torch.float).view(1, REG_MAX, 1, 1)
            anchors, strides = [], []
            for stride in STRIDES:  # the centre of every grid cell of every level, in input pixels / stride
                side = SIZE // stride
                sy, sx = torch.meshgrid(torch.arange(side) + 0.5, torch.arange(side) + 0.5, indexing="ij")
                anchors.append(torch.stack((sx, sy), -1).view(-1, 2))
                strides.append(torch.full((side * side, 1), float(stride)))
            self.register_buffer("anchors", torch.cat(anchors).T.contiguous(), persistent=False)  # [2, 2100]
            self.register_buffer("strides", torch.cat(strides).T.contiguous(), persistent=False)  # [1, 2100]

        def bias_init(self) -> None:
            """Ultralytics' initial biases: box bins at 1, class logits at the prior of ~5 objects per 640 image."""
            for box, cls, stride in zip(self.cv2, self.cv3, STRIDES, strict=True):
                box[-1].bias.data[:] = 1.0
                cls[-1].bias.data[: self.nc] = math.log(5 / self.nc / (640 / stride) ** 2)

        def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
            batch = feats[0].shape[0]
            x = torch.cat([torch.cat((b(f), c(f)), 1).view(batch, self.no, -1)
                           for f, b, c in zip(feats, self.cv2, self.cv3, strict=True)], 2)
            box, cls = x.split((4 * REG_MAX, self.nc), 1)
            bins = box.view(batch, 4, REG_MAX, -1).transpose(2, 1).softmax(1)
            lt, rb = self.dfl(bins).view(batch, 4, -1).chunk(2, 1)  # distances left-top and right-bottom
            x1y1, x2y2 = self.anchors - lt, self.anchors + rb
            xywh = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * self.strides
            return torch.cat((xywh, cls.sigmoid()), 1)

    class YOLOv8(nn.Module):
        def __init__(self, nc: int = len(COCO)):
            super().__init__()
            c64, c128, c256, c512, c1024 = (channels(c) for c in (64, 128, 256, 512, 1024))
            self.stem = nn.Sequential(Conv(3, c64, 3, 2), Conv(c64, c128, 3, 2), C2f(c128, c128, depth(3), True))
            self.p3 = nn.Sequential(Conv(c128, c256, 3, 2), C2f(c256, c256, depth(6), True))
            self.p4 = nn.Sequential(Conv(c256, c512, 3, 2), C2f(c512, c512, depth(6), True))
            self.p5 = nn.Sequential(Conv(c512, c1024, 3, 2), C2f(c1024, c1024, depth(3), True), SPPF(c1024, c1024))
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.top_down4 = C2f(c1024 + c512, c512, depth(3), False)
            self.top_down3 = C2f(c512 + c256, c256, depth(3), False)
            self.down3, self.bottom_up4 = Conv(c256, c256, 3, 2), C2f(c256 + c512, c512, depth(3), False)
            self.down4, self.bottom_up5 = Conv(c512, c512, 3, 2), C2f(c512 + c1024, c1024, depth(3), False)
            self.detect = Detect(nc, (c256, c512, c1024))
            self.detect.bias_init()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            p3 = self.p3(self.stem(x))
            p4 = self.p4(p3)
            p5 = self.p5(p4)
            n4 = self.top_down4(torch.cat((self.up(p5), p4), 1))
            n3 = self.top_down3(torch.cat((self.up(n4), p3), 1))
            n4 = self.bottom_up4(torch.cat((self.down3(n3), n4), 1))
            n5 = self.bottom_up5(torch.cat((self.down4(n4), p5), 1))
            return self.detect([n3, n4, n5])

    return YOLOv8()


def manifest_text() -> str:
    return f"""id: {MODEL_ID}
display_name: yolov8n_320
problem: image_object_detection
format: onnx
artifact: model.onnx
labels:
{labels_yaml(COCO)}
input:
  name: images
  size: [{SIZE}, {SIZE}]
  resize: letterbox
  layout: nchw
  scale: 0.00392156862745098
output:
  format: yolo
  predictions: output0
  activation: none
  iou_threshold: 0.45
# Batch jobs on CPU run one single-threaded batch per core; at 320x320 a batch of 1 keeps this model's
# activations in cache (2x1 runs: b1 137-143, b8 125-130, b32 112-117 img/s on 2 cores); end to end, batch 1
# reached 0.80-0.82 of the limit where batch 2 reached 0.78.
batch_size: 1
"""


def photo_like_batch(batch: int):
    """Random letterboxed 4:3 "photos" in 0..1, like bench/run.py's JPEGs: a smooth colour field, flat rectangles,
    sensor noise, grey bands above and below.

    Calibrated on uniform noise instead, the statistics miss those images so far that on them every class score
    saturates at 1; calibrated on these, the scores stay near the class prior that bias_init sets.
    """
    import torch
    from torch.nn import functional

    height = SIZE * 3 // 4
    images = functional.interpolate(torch.rand(batch, 3, 6, 8), size=(height, SIZE), mode="bicubic")
    for image in images:
        for _ in range(int(torch.randint(8, 20, ()))):
            x0, y0 = int(torch.randint(0, SIZE, ())), int(torch.randint(0, height, ()))
            w, h = int(torch.randint(10, 150, ())), int(torch.randint(10, 150, ()))
            image[:, y0 : y0 + h, x0 : x0 + w] = torch.rand(3, 1, 1)
    images = (images + torch.randn_like(images) * 7 / 255).clamp(0, 1)
    band = (SIZE - height) // 2
    return functional.pad(images, (0, 0, band, SIZE - height - band), value=114 / 255)


def export(folder: Path, seed: int = 0) -> None:
    import torch

    torch.manual_seed(seed)
    model = build_model()
    count = check_parameter_count(model, EXPECTED_PARAMETERS, "YOLOv8n")
    calibrate_batchnorm(model, photo_like_batch)
    example = photo_like_batch(2)
    export_onnx(model, folder, example, "images", "output0", manifest_text())
    print(f"exported YOLOv8n ({count:,} parameters, random weights, seed {seed}) to {folder}")


def main(argv: list[str] | None = None) -> int:
    return modelexport.main(argv, __doc__, MODEL_DIR, export)


if __name__ == "__main__":
    sys.exit(main())
