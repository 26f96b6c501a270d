"""scripts/videos.py: its synthetic shape videos decode (PyAV) to what their ground truth says."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av  # PyAV encodes and decodes the videos
import numpy as np
import pytest
import videos  # scripts/videos.py, on sys.path through tests/conftest.py

REPO = Path(__file__).resolve().parents[2]


CASES = {  # small: 2 shared cores
    "h264.mp4": videos.VideoSpec(width=320, height=240, fps=30, codec="h264", seconds=2.5, seed=3, objects=(3, 5)),
    "mpeg4.avi": videos.VideoSpec(width=320, height=240, fps=24, codec="mpeg4", seconds=2, seed=4, objects=(3, 5)),
}


class Decoded:
    """A generated video, its ground truth, and what PyAV decodes from its file."""

    def __init__(self, path: Path, spec, truth):
        self.path, self.spec, self.truth = path, spec, truth
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            self.codec, self.rate, self.pix_fmt = stream.codec_context.name, stream.average_rate, stream.format.name
            self.size = (stream.width, stream.height)
            decoded = [(frame.time, frame.to_ndarray(format="rgb24")) for frame in container.decode(stream)]
        self.times = [time for time, _ in decoded]
        self.frames = np.stack([pixels for _, pixels in decoded])


@pytest.fixture(scope="module", params=sorted(CASES))
def video(request, tmp_path_factory) -> Decoded:
    spec = CASES[request.param]
    path = tmp_path_factory.mktemp("videos") / f"clip.{request.param.split('.')[1]}"
    return Decoded(path, spec, videos.make_video(path, spec))


def test_decoded_frame_count_fps_times_and_duration_match_the_ground_truth(video: Decoded) -> None:
    truth, fps = video.truth, Fraction(video.spec.fps)
    assert (truth.width, truth.height) == video.size == (320, 240)
    assert video.codec == video.spec.codec and video.pix_fmt == "yuv420p"
    assert len(video.times) == truth.frame_count == round(video.spec.seconds * fps) == len(truth.frames)
    assert video.rate == fps and truth.fps == float(fps) and Fraction(truth.fps_fraction) == fps
    for index, (time, frame) in enumerate(zip(video.times, truth.frames, strict=True)):
        assert frame["index"] == index
        assert time == pytest.approx(float(index / fps), abs=1e-9) == frame["time_s"]
    assert video.times[-1] + 1 / fps == pytest.approx(truth.duration_s) == pytest.approx(video.spec.seconds)
    # The JSON the CLI writes holds the same.
    assert videos.GroundTruth.load(truth.save(video.path.with_suffix(".json"))) == truth


def test_shots_tile_the_video_and_cut_where_consecutive_frames_jump(video: Decoded) -> None:
    truth, fps = video.truth, float(video.truth.fps)
    shots = truth.shots
    assert len(shots) == video.spec.shots and shots[0]["start_frame"] == 0
    assert shots[-1]["end_frame"] == truth.frame_count
    for shot, following in zip(shots, shots[1:], strict=False):
        assert shot["end_frame"] == following["start_frame"] and shot["end_s"] == following["start_s"]
    for shot in shots:
        assert shot["start_s"] == pytest.approx(shot["start_frame"] / fps)
        assert shot["end_s"] == pytest.approx(shot["end_frame"] / fps)
        assert shot["end_frame"] - shot["start_frame"] >= round(videos.MIN_SHOT_SECONDS * fps)
        assert all(frame["shot"] == shot["index"] for frame in truth.frames[shot["start_frame"] : shot["end_frame"]])
    # diffs[k]: mean absolute difference between decoded frames k and k + 1; a cut at frame c is diffs[c - 1].
    diffs = np.abs(np.diff(video.frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    cuts = sorted(shot["start_frame"] - 1 for shot in shots[1:])
    assert sorted(np.argsort(diffs)[-len(cuts) :]) == cuts
    within = np.delete(diffs, cuts)
    assert diffs[cuts].min() > 4 * within.max(), (diffs[cuts], within.max())


def test_boxes_lie_on_the_shapes(video: Decoded) -> None:
    """Inside a well-visible object's box the decoded frame differs from its shot's background; far from every
    object it does not. (Differences are averaged over 5x5 pixels first: a background may be fine noise, which
    the encoder smooths.)"""
    plan, truth = videos.plan_video(video.spec), video.truth
    backgrounds = [videos.background(truth.width, truth.height, shot.background_key)[0] for shot in plan]
    checked = 0
    for frame, pixels in zip(truth.frames, video.frames, strict=True):
        diff = np.abs(_local_mean(pixels.astype(np.float32) - backgrounds[frame["shot"]])).mean(axis=2)
        far = np.ones(diff.shape, bool)
        for obj in frame["objects"] + frame["hidden"]:
            x0, y0, x1, y1 = obj["full_box"]
            far[max(0, y0 - 4) : y1 + 4, max(0, x0 - 4) : x1 + 4] = False
        assert diff[far].mean() < 6
        for obj in frame["objects"]:
            x0, y0, x1, y1 = obj["box"]
            assert 0 <= x0 < x1 <= truth.width and 0 <= y0 < y1 <= truth.height
            if obj["visible"] >= 0.7:
                assert diff[y0:y1, x0:x1].mean() > max(12, 3 * diff[far].mean()), (frame["index"], obj)
                checked += 1
    assert checked >= truth.frame_count  # several objects a frame, nearly all of them well visible


def _local_mean(image: np.ndarray, k: int = 5) -> np.ndarray:
    """The mean over the k x k pixels around each pixel (edges: over those inside the image)."""
    pad = k // 2
    total = np.pad(image, ((pad + 1, pad), (pad + 1, pad), (0, 0))).cumsum(0).cumsum(1)
    ones = np.pad(np.ones(image.shape[:2]), ((pad + 1, pad), (pad + 1, pad))).cumsum(0).cumsum(1)
    h, w = image.shape[:2]

    def window(c):
        return c[k:, k:][:h, :w] - c[:-k, k:][:h, :w] - c[k:, :-k][:h, :w] + c[:-k, :-k][:h, :w]

    return window(total) / window(ones)[..., None]


def test_track_ids_visibility_and_tracks_are_consistent(video: Decoded) -> None:
    truth = video.truth
    shot_of: dict[int, int] = {}
    seen: dict[int, list[int]] = {}
    for frame in truth.frames:
        ids = [obj["id"] for obj in frame["objects"] + frame["hidden"]]
        assert len(ids) == len(set(ids))
        for obj in frame["objects"] + frame["hidden"]:
            assert shot_of.setdefault(obj["id"], frame["shot"]) == frame["shot"]  # a new shot, new ids
            assert obj["label"] in videos.LABELS and 0 < obj["visible"] <= obj["in_frame"] <= 1
            bx0, by0, bx1, by1 = obj["box"]
            fx0, fy0, fx1, fy1 = obj["full_box"]
            assert fx0 <= bx0 < bx1 <= fx1 and fy0 <= by0 < by1 <= fy1
        assert all(obj["visible"] >= videos.MIN_VISIBLE for obj in frame["objects"])
        assert all(obj["visible"] < videos.MIN_VISIBLE for obj in frame["hidden"])
        for obj in frame["objects"]:
            seen.setdefault(obj["id"], []).append(frame["index"])
    assert [track["id"] for track in truth.tracks] == sorted(seen)
    for track in truth.tracks:
        frames = seen[track["id"]]
        assert (track["first_frame"], track["last_frame"], track["frames"]) == (frames[0], frames[-1], len(frames))
        assert track["shot"] == shot_of[track["id"]]
    assert len({shot_of[i] for i in seen}) == video.spec.shots  # every shot shows objects


def test_the_same_seed_renders_the_same_video_and_another_seed_another() -> None:
    spec = videos.VideoSpec(width=320, height=240, seconds=1, seed=11)

    def first_frames(spec):
        frames = videos.render_frames(spec)  # a generator: frames come one at a time
        return [next(frames) for _ in range(3)]

    again, other = first_frames(spec), first_frames(videos.VideoSpec(width=320, height=240, seconds=1, seed=12))
    for (pixels, truth), (same_pixels, same_truth) in zip(first_frames(spec), again, strict=True):
        assert np.array_equal(pixels, same_pixels) and truth == same_truth
    assert not np.array_equal(again[0][0], other[0][0])
    assert videos.plan_video(spec) == videos.plan_video(spec)


def test_classification_shots_each_show_one_big_shape_of_their_label(tmp_path: Path) -> None:
    spec = videos.VideoSpec(width=320, height=240, fps=24, seconds=2, shots=3, seed=5, kind="classification")
    truth = videos.make_video(tmp_path / "clip.mov", spec)
    labels = [shot["label"] for shot in truth.shots]
    assert all(label in videos.LABELS for label in labels)
    assert all(a != b for a, b in zip(labels, labels[1:], strict=False))  # consecutive shots differ
    for frame in truth.frames:
        [obj] = frame["objects"]  # no distractors asked for
        x0, y0, x1, y1 = obj["box"]
        assert obj["label"] == labels[frame["shot"]] and obj["visible"] == 1.0
        assert max(x1 - x0, y1 - y0) >= 0.3 * min(spec.width, spec.height)


def test_cli_writes_videos_with_their_json_and_prints_a_line_for_each(tmp_path: Path, capsys) -> None:
    args = ["--n", "2", "--seed", "1", "--size", "320x240", "--fps", "30", "--seconds", "1", "--shots", "2"]
    videos.main([str(tmp_path), *args, "--codec", "mpeg4"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t") for line in lines] == [
        [str(tmp_path / f"0000{i}.avi"), "320x240", "30 fps", "30 frames", "2 shots"] for i in range(2)
    ]
    for i in range(2):
        truth = json.loads((tmp_path / f"0000{i}.json").read_text())
        assert (truth["name"], truth["codec"], truth["frame_count"]) == (f"0000{i}.avi", "mpeg4", 30)
        assert len(truth["shots"]) == 2 and truth["frames"][-1]["index"] == 29
        with av.open(str(tmp_path / f"0000{i}.avi")) as container:
            assert sum(1 for _ in container.decode(video=0)) == 30
    first, second = (json.loads((tmp_path / f"0000{i}.json").read_text())["seed"] for i in range(2))
    assert first != second  # each video has its own seed


@pytest.mark.parametrize(
    ("name", "changes", "message"),
    [
        ("clip.avi", {"codec": "h264"}, "h264 goes in .mp4 or .mov"),
        ("clip.mov", {"codec": "mpeg4"}, "mpeg4 goes in .avi or .mp4"),
        ("clip.mp4", {"width": 321}, "sides must be even"),
        ("clip.mp4", {"codec": "vp9"}, "codec must be one of"),
        ("clip.mp4", {"shots": 40, "seconds": 1}, "shots <= frames"),
    ],
)
def test_specs_it_cannot_render_are_refused(tmp_path: Path, name: str, changes: dict, message: str) -> None:
    spec = videos.VideoSpec(**{"width": 320, "height": 240, "seconds": 1, **changes})
    with pytest.raises(ValueError, match=message):
        videos.make_video(tmp_path / name, spec)
    assert not (tmp_path / name).exists()
