"""What the bench's model builders (mobilenet.py, yolov8n.py) share: the parameter check, BatchNorm calibration,
the ONNX export with its checks and reference output, model.yaml, and the cached command line.

Needs torch and onnx (the torch venv, see bench/README.md); ONNX Runtime is used when present.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"
OPSET = 17
MAX_IR_VERSION = 9  # IR 10 needs ONNX Runtime >= 1.16; the bench models should load wherever batchline's may


def check_parameter_count(model: Any, expected: int, name: str) -> int:
    """The count the architecture must have: a wrong layer shows up here, not as a plausible-looking speed."""
    count = sum(p.numel() for p in model.parameters())
    if count != expected:
        raise SystemExit(f"{name} should have {expected:,} parameters, this one has {count:,}")
    return count


def calibrate_batchnorm(model: Any, make_batch: Callable[[int], Any], batches: int = 4, batch_size: int = 16) -> None:
    """Set BatchNorm running statistics from a few random batches shaped like the model's real inputs.

    With random weights and default statistics activations grow layer by layer; calibrated, they stay near unit
    scale, so the outputs (softmax scores, box sizes) stay finite and the runtime does realistic arithmetic.
    """
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(make_batch(batch_size))
    model.eval()


def export_onnx(model: Any, folder: Path, example: Any, input_name: str, output_name: str, manifest: str) -> None:
    """model.onnx (opset 17, dynamic batch), model.yaml, and reference.npz: torch's output for `example`.

    bench/run.py checks ONNX Runtime against reference.npz, so a broken export cannot pass for a fast model.
    """
    import numpy as np
    import onnx
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / "model.onnx.tmp"
    warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
    torch.onnx.export(
        model, (example,), str(staging), input_names=[input_name], output_names=[output_name],
        dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}}, opset_version=OPSET, dynamo=False,
    )
    onnx.checker.check_model(str(staging))
    ir_version = onnx.load(str(staging), load_external_data=False).ir_version
    if ir_version > MAX_IR_VERSION:
        raise SystemExit(f"the export has ONNX IR version {ir_version}; the bench models must be <= {MAX_IR_VERSION}")
    with torch.no_grad():
        expected = model(example).numpy()
    _check_with_onnxruntime(staging, input_name, output_name, example.numpy(), expected)
    np.savez(folder / "reference.npz", input=example.numpy(), **{output_name: expected})
    staging.replace(folder / "model.onnx")
    (folder / "model.yaml").write_text(manifest, encoding="utf-8")


def _check_with_onnxruntime(path: Path, input_name: str, output_name: str, x: Any, expected: Any) -> None:
    import numpy as np

    try:
        import onnxruntime as ort
    except ImportError:
        return  # the torch venv need not have it; bench/run.py loads the model with ONNX Runtime anyway
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([output_name], {input_name: x})[0]
    if not np.allclose(got, expected, rtol=1e-3, atol=1e-4):
        raise SystemExit(f"ONNX Runtime disagrees with torch: max abs diff {np.abs(got - expected).max()}")


def labels_yaml(labels: list[str]) -> str:
    """model.yaml's labels as a block list, one per line (1,000 labels in a flow list would be one huge line)."""
    return "\n".join(f"  - {label}" for label in labels)


def main(argv: list[str] | None, doc: str, default_out: Path, export: Callable[[Path, int], None]) -> int:
    """The builders' command line: --out, --force, --seed; does nothing when the folder already holds the model."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=default_out, help="model folder to write (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the folder already has the model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.force and (args.out / "model.onnx").is_file() and (args.out / "model.yaml").is_file():
        print(f"cached: {args.out} (pass --force to rebuild)")
        return 0
    export(args.out, args.seed)
    return 0
