"""What the end-to-end tests check in a batch output directory, and the inputs they build."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from PIL import Image

from tests.support import COLORS

RESULT_KEYS = {"ID", "annotations"}
# The scenario's own key in each annotation, by result file stem, and what it holds.
PAYLOAD_KEYS = {
    "image_classification": ("classification", {"score"}),
    "image_object_detection": ("image_object_detection", {"bounding_box", "score"}),
}
ERROR_KEYS = {"ID", "error"}


def bucket_path(data_dir: Path, uri: str) -> Path:
    """Where an embedded-bucket URI gs://BUCKET/KEY lives: DATA_DIR/buckets/BUCKET/KEY."""
    assert uri.startswith("gs://"), uri
    return data_dir / "buckets" / uri.removeprefix("gs://").rstrip("/")


def write_two_colour_png(path: Path, left: str, right: str, left_share: float) -> Path:
    """Left part one colour, the rest another: the model scores both, the larger share higher."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (100, 60), COLORS[right])
    image.paste(Image.new("RGB", (round(100 * left_share), 60), COLORS[left]), (0, 0))
    image.save(path, format="PNG")
    return path


def _numbered(names: list[str], stem: str) -> list[int]:
    numbers = []
    for name in names:
        match = re.fullmatch(rf"{stem}_(\d+)\.jsonl", name)
        if match:
            numbers.append(int(match.group(1)))
    return sorted(numbers)


def read_batch_output(out_dir: Path, stem: str = "image_classification") -> tuple[dict[str, list], dict[str, dict]]:
    """Check the AutoML v1 layout of a finished job's directory; (annotations by ID, error by ID).

    Asserts: only <stem>_N.jsonl and errors_N.jsonl files, each numbered 1..N without gaps; no staging folder or
    temporary files; every line has exactly the documented keys; every ID appears once across all files.
    """
    assert out_dir.is_dir(), f"output directory {out_dir} does not exist"
    names = sorted(os.listdir(out_dir))
    leftovers = [n for n in names if not re.fullmatch(rf"({stem}|errors)_\d+\.jsonl", n)]
    assert not leftovers, f"unexpected entries in {out_dir}: {leftovers}"
    tmp_files = [str(p) for p in out_dir.rglob("*") if p.name.endswith(".tmp") or p.name == ".staging"]
    assert not tmp_files, f"temporary files left behind: {tmp_files}"
    for kind in (stem, "errors"):
        numbers = _numbered(names, kind)
        assert numbers == list(range(1, len(numbers) + 1)), f"{kind} files are not numbered 1..N: {numbers}"

    seen: dict[str, str] = {}
    results: dict[str, list] = {}
    errors: dict[str, dict] = {}
    for name in names:
        for line_number, line in enumerate((out_dir / name).read_text().splitlines(), 1):
            where = f"{name}:{line_number}"
            row = json.loads(line)
            item = row.get("ID")
            assert item not in seen, f"{item} appears twice: {seen.get(item)} and {where}"
            seen[item] = where
            if name.startswith("errors_"):
                assert set(row) == ERROR_KEYS, f"{where}: error line keys {sorted(row)}"
                assert set(row["error"]) == {"code", "message"}, f"{where}: error keys {sorted(row['error'])}"
                assert isinstance(row["error"]["code"], int) and row["error"]["message"], where
                errors[item] = row["error"]
            else:
                assert set(row) == RESULT_KEYS, f"{where}: result line keys {sorted(row)}"
                payload, payload_keys = PAYLOAD_KEYS[stem]
                for annotation in row["annotations"]:
                    keys = {"annotation_spec_id", payload, "display_name"}
                    assert set(annotation) == keys, f"{where}: annotation keys {sorted(annotation)}"
                    assert set(annotation[payload]) == payload_keys, where
                scores = [a[payload]["score"] for a in row["annotations"]]
                assert scores == sorted(scores, reverse=True), f"{where}: annotations not highest score first"
                results[item] = row["annotations"]
    return results, errors


def top_label(annotations: list[dict]) -> str | None:
    return annotations[0]["display_name"] if annotations else None
