"""problems/video/labels.py: shot cuts found in real (generated, encoded, decoded) videos, scored with scikit-learn
against their ground truth; labels per segment, shot and second on made-up scores; and a real classifier's shot
labels on classification videos."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import av  # PyAV decodes the generated videos
import numpy as np
import onnxruntime as ort
import pytest
import videos  # scripts/videos.py, on sys.path through tests/conftest.py
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score

from batchline.domain.predictions import SegmentLabel
from batchline.models.manifest import load_manifest
from batchline.problems.image.decode import Normalizer, decode_image
from batchline.problems.video.frames import histogram
from batchline.problems.video.labels import CUT_FLOOR, MIN_SHOT_S, histogram_distances, shot_starts, video_labels

REPO = Path(__file__).resolve().parents[2]
CLASSIFIER = REPO / "examples" / "models" / "shapes-classifier"
RATE = 5.0  # frames sampled per second, as the manifests' default video.frame_rate


def _spec(kind: str, codec: str, seed: int, **changes):
    fields = {"shots": 4, "seconds": 8, "width": 320, "height": 240, "fps": 30, "codec": codec, "seed": seed}
    return videos.VideoSpec(kind=kind, **(fields | changes))


SPECS = {  # small: 2 shared cores. Both codecs and containers, both kinds, one 24 fps (samples between frames)
    "cls-0.mp4": _spec("classification", "h264", 101),
    "cls-1.avi": _spec("classification", "mpeg4", 102),
    "cls-2.mp4": _spec("classification", "h264", 103, distractors=2),
    "cls-3.avi": _spec("classification", "mpeg4", 104, noise=5.0),
    "cls-4.mp4": _spec("classification", "h264", 105, fps=24),
    "cls-5.avi": _spec("classification", "mpeg4", 106, distractors=1),
    "trk-0.mp4": _spec("tracking", "h264", 201),
    "trk-1.avi": _spec("tracking", "mpeg4", 202),
    "trk-2.mp4": _spec("tracking", "h264", 203, objects=(4, 6)),
}


@dataclass
class Sampled:
    """A generated video sampled at RATE: per sample the frame shown then, its presentation time (what the
    preprocessor's FrameFacts.time holds), and its histogram (the preprocessor's own, FrameFacts.histogram)."""

    name: str
    truth: object  # videos.GroundTruth
    times: np.ndarray  # of the frames picked
    indices: list[int]  # the decoded frame shown at each sample time
    pixels: list[np.ndarray]  # RGB, HxWx3
    histograms: np.ndarray  # (samples, 3, 16)

    @property
    def true_starts(self) -> np.ndarray:
        """1 where a sample shows another shot than the sample before: the first sample at or after a true cut."""
        shots = np.array([self.truth.frames[i]["shot"] for i in self.indices])
        return np.concatenate([[1], (shots[1:] != shots[:-1]).astype(int)])


def sample(path: Path, truth, rate: float = RATE) -> Sampled:
    """Decode the video and keep, for each time k / rate inside it, the frame shown then: the last one whose
    presentation time is <= it (the preprocessor takes the nearest; at 30 fps they are the same frames)."""
    end = truth.duration_s
    times = np.arange(0.0, end - 1e-9, 1.0 / rate)
    picked: list[tuple[int, av.VideoFrame]] = []
    with av.open(str(path)) as container:
        previous = None
        for index, frame in enumerate(container.decode(video=0)):
            while previous is not None and len(picked) < len(times) and times[len(picked)] < frame.time - 1e-6:
                picked.append(previous)
            previous = (index, frame)
        picked += [previous] * (len(times) - len(picked))
    pixels = [frame.to_ndarray(format="rgb24") for _, frame in picked]
    frame_times = np.array([frame.time for _, frame in picked])
    histograms = np.stack([histogram(rgb) for rgb in pixels])
    return Sampled(path.name, truth, frame_times, [index for index, _ in picked], pixels, histograms)


@pytest.fixture(scope="module")
def sampled(tmp_path_factory) -> dict[str, Sampled]:
    folder = tmp_path_factory.mktemp("video-labels")
    return {name: sample(folder / name, videos.make_video(folder / name, spec)) for name, spec in SPECS.items()}


# -- shot cuts


def test_cuts_in_real_videos_match_the_ground_truth_f1_at_least_0_9(sampled: dict[str, Sampled]) -> None:
    """Per sample (the first, a shot start by definition, left out), "a shot starts here", found vs true."""
    found, true = [], []
    for video in sampled.values():
        predicted = np.zeros(len(video.times), dtype=int)
        predicted[shot_starts(video.times, video.histograms)] = 1
        found.append(predicted[1:])
        true.append(video.true_starts[1:])
    score = f1_score(np.concatenate(true), np.concatenate(found))
    print(f"\nshot cuts: F1 {score:.4f} over {len(sampled)} videos, {int(np.concatenate(true).sum())} true cuts")
    assert score >= 0.9


def test_a_cut_is_the_index_of_the_first_sample_after_it_and_zero_always_starts(sampled: dict[str, Sampled]) -> None:
    video = sampled["cls-0.mp4"]
    starts = shot_starts(video.times, video.histograms)
    assert starts.dtype.kind == "i" and starts[0] == 0 and np.all(np.diff(starts) > 0)
    assert starts.tolist() == np.flatnonzero(video.true_starts).tolist()
    for i in starts[1:]:  # the true cut lies within the sample interval before the sample's time
        cut = next(shot["start_s"] for shot in video.truth.shots if shot["start_frame"] == _shot_start(video, i))
        assert video.times[i - 1] < cut <= video.times[i] + 1e-9 and video.times[i] - video.times[i - 1] < 1.01 / RATE


def _shot_start(video: Sampled, i: int) -> int:
    return video.truth.shots[video.truth.frames[video.indices[i]]["shot"]]["start_frame"]


def _histograms(rng: np.random.Generator, colours: list[int], jitter: float = 0.002) -> np.ndarray:
    """One 3 x 16-bin histogram per entry: most of each channel's mass in bin `colour`, a little noise elsewhere."""
    rows = []
    for colour in colours:
        h = np.full((3, 16), 0.01) + rng.uniform(0, jitter, (3, 16))
        h[:, colour] += 0.8
        rows.append(h / h.sum(axis=1, keepdims=True))
    return np.array(rows, dtype=np.float32)  # (frames, 3, 16), as FrameFacts.histogram


def test_a_still_or_noisy_video_has_no_cuts_and_a_new_picture_does() -> None:
    rng = np.random.default_rng(0)
    times = np.arange(50) / RATE
    assert shot_starts(times, _histograms(rng, [3] * 50)).tolist() == [0]
    assert shot_starts(times, _histograms(rng, [3] * 50, jitter=0.05)).tolist() == [0]
    assert shot_starts(times, np.zeros((50, 3, 16), np.float32)).tolist() == [0]  # empty histograms
    flat = _histograms(rng, [3] * 20 + [9] * 30).reshape(50, 48)  # one channel of 48 bins works as well
    assert shot_starts(times, flat).tolist() == [0, 20]
    assert shot_starts(times, _histograms(rng, [3] * 20 + [9] * 30)).tolist() == [0, 20]


def test_a_flash_is_not_a_cut_and_cuts_closer_than_min_shot_keep_the_stronger() -> None:
    rng = np.random.default_rng(1)
    times = np.arange(30) / RATE
    flash = [3] * 15 + [12] + [3] * 14  # one odd frame, then the same picture again
    assert shot_starts(times, _histograms(rng, flash)).tolist() == [0]
    # Two cuts one sample (0.2 s < MIN_SHOT_S) apart: a half change, then the rest. The stronger one stays.
    half = _histograms(rng, [3] * 30)
    half[15:] = _histograms(rng, [9] * 15)
    half[15, 1:] = half[14, 1:]  # at sample 15 only the red channel has changed: a weaker jump than the next
    assert 1 / RATE < MIN_SHOT_S
    assert histogram_distances(half[14:16])[0] < histogram_distances(half[15:17])[0]
    assert shot_starts(times, half).tolist() == [0, 16]


def test_a_busy_stretch_raises_the_bar_there_only() -> None:
    """Where every frame differs from the last (fast motion), a jump must stand out of that, not of the calm."""
    rng = np.random.default_rng(2)
    times = np.arange(60) / RATE
    colours = [3] * 20 + [int(c) for c in rng.integers(0, 16, 20)] + [3] * 10 + [10] * 10
    busy = _histograms(rng, colours)
    busy[20:40] = 0.5 * busy[20:40] + 0.5 * busy[19]  # busy: each frame moves half its mass to a random bin
    d = histogram_distances(busy)
    assert np.median(d[20:39]) > CUT_FLOOR  # most busy pairs clear the floor...
    assert shot_starts(times, busy).tolist() == [0, 50]  # ...yet none stands out of its neighbours; the cut does


def test_no_frames_or_one_frame() -> None:
    assert shot_starts(np.zeros(0), np.zeros((0, 3, 16))).tolist() == []
    assert shot_starts(np.zeros(1), np.ones((1, 3, 16))).tolist() == [0]
    with pytest.raises(ValueError, match="one histogram"):
        shot_starts(np.zeros(3), np.ones((2, 3, 16)))


# -- labels per stretch

LABELS = ("cat", "dog", "car")


def _labels(**changes) -> tuple[SegmentLabel, ...]:
    times = np.array([0.0, 0.4, 0.8, 1.2, 1.6, 3.2, 3.6])  # nothing in [2, 3)
    scores = np.array(
        [[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8],
         [0.3, 0.1, 0.6]]
    )  # fmt: skip
    args = {"times": times, "scores": scores, "labels": LABELS, "start": 0.0, "end": 3.75, "shots": np.array([0, 3, 5])}
    args |= {"kinds": {"segment", "shot", "1s_interval"}, "threshold": 0.0, "limit": None}
    return video_labels(**(args | changes))


def _rows(found) -> list[tuple]:
    return [(x.kind, x.start, x.end, x.label, round(x.score, 6)) for x in found]


def test_the_segment_is_the_mean_over_its_frames() -> None:
    found = _labels(kinds={"segment"})
    assert _rows(found) == [
        ("segment", 0.0, 3.75, "dog", round(2.6 / 7, 6)),
        ("segment", 0.0, 3.75, "cat", round(2.5 / 7, 6)),
        ("segment", 0.0, 3.75, "car", round(1.9 / 7, 6)),
    ]
    assert all(isinstance(x, SegmentLabel) and type(x.score) is float and type(x.start) is float for x in found)


def test_shots_run_from_their_first_frame_to_the_next_shots_and_the_last_to_end() -> None:
    assert _rows(_labels(kinds={"shot"}, limit=1)) == [
        ("shot", 0.0, 1.2, "cat", 0.6),
        ("shot", 1.2, 3.2, "dog", 0.75),
        ("shot", 3.2, 3.75, "car", 0.7),
    ]
    # Shot 0 need not be given; one shot is the whole segment's frames.
    assert _rows(_labels(kinds={"shot"}, limit=1, shots=np.array([], dtype=int))) == [
        ("shot", 0.0, 3.75, "dog", round(2.6 / 7, 6))
    ]


def test_seconds_with_frames_only_and_the_last_ends_at_a_fractional_end() -> None:
    assert _rows(_labels(kinds={"1s_interval"}, limit=1)) == [
        ("1s_interval", 0.0, 1.0, "cat", 0.6),
        ("1s_interval", 1.0, 2.0, "dog", 0.75),  # [2, 3) holds no frame: no labels for it
        ("1s_interval", 3.0, 3.75, "car", 0.7),
    ]
    # Seconds count from start; a frame at start + k (float noise or not) opens second k.
    times = 0.1 + np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    one_hot = np.eye(3)[[0, 0, 1, 1, 2]]  # cat, cat, dog, dog, car
    found = video_labels(times, one_hot, LABELS, 0.1, 2.3, [0], {"1s_interval"}, 0.5, None)
    assert [(x.start, x.end, x.label, x.score) for x in found] == [
        (pytest.approx(0.1), pytest.approx(1.1), "cat", 1.0),
        (pytest.approx(1.1), pytest.approx(2.1), "dog", 1.0),
        (pytest.approx(2.1), 2.3, "car", 1.0),
    ]


def test_threshold_and_limit_per_stretch() -> None:
    found = _labels(kinds={"segment", "shot"}, threshold=0.35)
    assert _rows(found) == [
        ("segment", 0.0, 3.75, "dog", round(2.6 / 7, 6)),
        ("segment", 0.0, 3.75, "cat", round(2.5 / 7, 6)),
        ("shot", 0.0, 1.2, "cat", 0.6),
        ("shot", 1.2, 3.2, "dog", 0.75),
        ("shot", 3.2, 3.75, "car", 0.7),
    ]
    assert _rows(_labels(kinds={"segment"}, threshold=0.36, limit=None)) == [
        ("segment", 0.0, 3.75, "dog", round(2.6 / 7, 6))
    ]
    assert len(_labels(kinds={"shot"}, limit=2)) == 6
    assert _labels(limit=0) == () and _labels(threshold=0.9) == ()
    assert _rows(_labels(kinds={"shot"}, threshold=0.75)) == [("shot", 1.2, 3.2, "dog", 0.75)]  # >=, not >


def test_order_is_kind_then_start_then_score_descending() -> None:
    found = _labels()
    kinds = ["segment", "shot", "1s_interval"]
    keys = [(kinds.index(x.kind), x.start, -x.score) for x in found]
    assert keys == sorted(keys) and len(found) == 3 + 3 * 3 + 3 * 3
    asked = _labels(kinds=["1s_interval", "segment"])  # the order kinds are asked in does not matter
    assert [x.kind for x in asked] == ["segment"] * 3 + ["1s_interval"] * 9
    tied = video_labels([0.0], [[0.4, 0.4, 0.2]], LABELS, 0.0, 1.0, [0], {"segment"}, 0.0, None)
    assert [x.label for x in tied] == ["cat", "dog", "car"]  # equal scores keep the labels' order


def test_no_frames_no_labels_and_frames_just_outside_are_clamped_in_shots_tile_the_segment() -> None:
    empty = video_labels(np.zeros(0), np.zeros((0, 3)), LABELS, 0.0, 2.0, np.zeros(0, int), {"segment", "shot"}, 0, 5)
    assert empty == ()
    # The frame shown at start = 0.5 began at 0.4667 (a 30 fps frame): it is the first shot's and second's.
    found = video_labels([0.4667, 0.9, 1.7], [[1, 0, 0], [0, 1, 0], [0, 1, 0]], LABELS, 0.5, 1.9, [0, 1],
                         {"shot", "1s_interval"}, 0.5, None)  # fmt: skip
    assert _rows(found) == [
        ("shot", 0.5, 0.9, "cat", 1.0),
        ("shot", 0.9, 1.9, "dog", 1.0),
        ("1s_interval", 0.5, 1.5, "cat", 0.5),
        ("1s_interval", 0.5, 1.5, "dog", 0.5),
        ("1s_interval", 1.5, 1.9, "dog", 1.0),
    ]
    # The first frame sampled may be shown a little after start (the frame nearest it): the shots still tile it.
    found = video_labels([0.5167, 0.9], [[1, 0, 0], [0, 1, 0]], LABELS, 0.5, 1.0, [0, 1], {"shot"}, 0.5, None)
    assert _rows(found) == [("shot", 0.5, 0.9, "cat", 1.0), ("shot", 0.9, 1.0, "dog", 1.0)]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown kinds"):
        _labels(kinds={"shots"})
    with pytest.raises(ValueError, match="limit"):
        _labels(limit=-1)
    with pytest.raises(ValueError, match="after start"):
        _labels(start=4.0, end=4.0)


# -- a real classifier


def _classify(video: Sampled) -> np.ndarray:
    """The shapes classifier's softmax scores for each sampled frame, preprocessed as its manifest says."""
    manifest = load_manifest(CLASSIFIER)
    normalize = Normalizer(manifest.input)
    batch = np.empty((len(video.pixels), *normalize.shape), normalize.dtype)
    for row, pixels in zip(batch, video.pixels, strict=True):
        png = io.BytesIO()
        Image.fromarray(pixels).save(png, format="PNG", compress_level=1)
        normalize(decode_image(png.getvalue(), manifest.input)[0], row)
    session = ort.InferenceSession(str(CLASSIFIER / manifest.artifact), providers=["CPUExecutionProvider"])
    logits = session.run(None, {manifest.input.name: batch})[0].astype(np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_shapes_classifier_labels_each_shot_with_its_shape_accuracy_at_least_0_9(
    sampled: dict[str, Sampled],
) -> None:
    """Each true shot gets the top label of the found shot that holds its middle (so a missed cut costs a shot)."""
    labels = load_manifest(CLASSIFIER).labels
    true, found = [], []
    for video in (v for name, v in sampled.items() if name.startswith("cls")):
        shots = shot_starts(video.times, video.histograms)
        end = video.truth.duration_s
        best = video_labels(video.times, _classify(video), labels, 0.0, end, shots, {"shot"}, 0.0, 1)
        assert len(best) == len(shots) and best[-1].end == end
        for shot in video.truth.shots:
            middle = (shot["start_s"] + shot["end_s"]) / 2
            true.append(shot["label"])
            found.append(next(x.label for x in best if x.start <= middle < x.end))
    score = accuracy_score(true, found)
    print(f"\nshot labels: accuracy {score:.4f} over {len(true)} shots of 6 videos")
    assert score >= 0.9
