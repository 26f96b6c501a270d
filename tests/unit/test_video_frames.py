"""problems/video/frames.py: a video's plan (the sampled timestamps of a segment) and its fill (each timestamp's
frame, fitted and normalised as an image is), against the frames found by decoding every frame; and every bad
input as INVALID_ARGUMENT with a message in the user's terms.

Videos come from scripts/videos.py (H.264 MP4 and MPEG-4 AVI at 24 and 30 fps), plus two it does not write: H.264
in AVI (B-frames, which AVI cannot time) and H.264 in MPEG-TS (seeks that land late; its first timestamp is not 0).
"""

from __future__ import annotations

import functools
import io
import math
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import fsspec
import numpy as np
import pytest
import videos  # scripts/videos.py, on sys.path through tests/conftest.py
from PIL import Image

from batchline.errors import InvalidArgument
from batchline.models.manifest import Manifest
from batchline.problems.base import Params
from batchline.problems.image.decode import Geometry, ImagePreprocessor, Normalizer, fit_picture
from batchline.problems.video.frames import (
    HISTOGRAM_BINS,
    MAX_VIDEO_BYTES,
    FrameFacts,
    VideoFacts,
    VideoPreprocessor,
    histogram,
)

REPO = Path(__file__).resolve().parents[2]


Spec = videos.VideoSpec
SMALL = {"width": 320, "height": 240, "objects": (1, 3)}  # 2 shared cores
MADE = {  # written by scripts/videos.py
    "h264-30.mp4": Spec(fps=30, codec="h264", seconds=2.5, seed=21, **SMALL),
    "h264-24.mp4": Spec(fps=24, codec="h264", seconds=2, seed=22, **SMALL),
    "mpeg4-24.avi": Spec(fps=24, codec="mpeg4", seconds=2, seed=23, **SMALL),
    "mpeg4-30.avi": Spec(fps=30, codec="mpeg4", seconds=2, seed=24, **SMALL),
}
ENCODED = {  # name: (spec, container format, x264 options): frames from scripts/videos.py, encoded here
    "h264-24.avi": (Spec(fps=24, codec="h264", seconds=2, seed=25, **SMALL), "avi", {}),
    "h264-25-ts.mp4": (Spec(fps=25, codec="h264", seconds=2, seed=26, **SMALL), "mpegts", {"g": "10"}),
}
CLIPS = [*MADE, *ENCODED]
MANIFEST = {
    "id": "v",
    "display_name": "v",
    "problem": "video_classification",
    "labels": ["a", "b"],
    "input": {"size": [96, 128], "resize": "letterbox", "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]},
    "video": {"frame_rate": 5},
}
CROPPED = {**MANIFEST, "input": {"size": [64, 64], "resize": "center_crop", "layout": "nhwc", "dtype": "uint8",
                                 "channel_order": "bgr"}}  # fmt: skip


class RateParams(Params):
    frame_rate: float | None = None


@dataclass(frozen=True)
class Clip:
    path: Path
    fps: Fraction
    frame_count: int

    @property
    def duration(self) -> float:
        return float(self.frame_count / self.fps)

    def time(self, index: int) -> float:
        """Frame `index`'s presentation time: index / fps, as the ground truth says."""
        return float(index / self.fps)


def _encode(path: Path, spec: Spec, container: str, options: dict[str, str]) -> None:
    """scripts/videos.py's frames of `spec`, encoded with libx264 into `container` (which the script does not)."""
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream("libx264", rate=spec.rate, options={"preset": "veryfast", "crf": "18", **options})
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.codec_context.time_base = 1 / spec.rate
        for pixels, truth in videos.render_frames(spec):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = truth["index"], 1 / spec.rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Clip]:
    folder = tmp_path_factory.mktemp("videos")
    found = {}
    for name, spec in MADE.items():
        truth = videos.make_video(folder / name, spec)
        assert [frame["time_s"] for frame in truth.frames] == [i / truth.fps for i in range(truth.frame_count)]
        found[name] = Clip(folder / name, spec.rate, truth.frame_count)
    for name, (spec, container, options) in ENCODED.items():
        _encode(folder / name, spec, container, options)
        found[name] = Clip(folder / name, spec.rate, spec.frame_count)
    return found


@functools.cache
def _every_frame(path: Path) -> list[np.ndarray]:
    """Every frame of the video, decoded from its start in presentation order: the brute force."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(container.streams.video[0])]


def _nearest(clip: Clip, ref: float) -> int:
    """The frame a timestamp samples: the first shown at or after it less half a frame interval (the nearest frame;
    the last where the video ends before the next)."""
    half = 0.5 / float(clip.fps)
    return next((i for i in range(clip.frame_count) if clip.time(i) >= ref - half - 1e-6), clip.frame_count - 1)


def _expected_row(manifest: Manifest, rgb: np.ndarray) -> np.ndarray:
    normalize = Normalizer(manifest.input)
    row = np.empty(normalize.shape, normalize.dtype)
    normalize(fit_picture(rgb, manifest.input)[0], row)
    return row


def _plan(preprocessor: VideoPreprocessor, path: Path, start: float = 0.0, end: float = math.inf, rate=None):
    with open(path, "rb") as file:
        return preprocessor.plan(file, {"start": start, "end": end}, RateParams(frame_rate=rate))


def _fill(preprocessor: VideoPreprocessor, source, refs, chunk: int = 16) -> tuple[np.ndarray, list]:
    """Fill refs in calls of `chunk` consecutive refs, as the executor sends them; the rows and the facts."""
    shape, dtype = preprocessor.layout
    rows = np.full((len(refs), *shape), 7, dtype)
    facts: list = []
    for i in range(0, len(refs), chunk):
        found = preprocessor.fill(source, refs[i : i + chunk], rows[i : i + chunk])
        assert len(found) == len(refs[i : i + chunk])
        facts += found
    return rows, facts


@pytest.fixture(scope="module")
def video() -> VideoPreprocessor:
    return VideoPreprocessor(Manifest.model_validate(MANIFEST))


def test_a_video_is_many_items_read_as_a_stream():
    preprocessor = VideoPreprocessor(Manifest.model_validate(MANIFEST))
    assert preprocessor.expands and preprocessor.streams
    assert preprocessor.extensions == (".mp4", ".mov", ".avi", ".mpeg4") and preprocessor.noun == "videos"
    assert preprocessor.max_bytes == MAX_VIDEO_BYTES == 50 * 1024**3
    assert preprocessor.layout == ImagePreprocessor(Manifest.model_validate(MANIFEST)).layout
    preprocessor.check_uri("gs://b/clip.MOV")
    with pytest.raises(InvalidArgument, match="videos must be .mp4, .mov, .avi, .mpeg4"):
        preprocessor.check_uri("gs://b/clip.mkv")


# -- plan
@pytest.mark.parametrize(
    ("start", "end", "rate", "first", "count"),
    [
        (0.0, math.inf, None, 0.0, 13),  # the manifest's 5 a second, to the video's end at 2.5 s
        (0.5, 1.7, 5, 0.5, 6),  # 0.5 .. 1.5
        (0.5, 1.7, None, 0.5, 6),
        (0.25, 1.0, 7, 0.25, 6),  # 0.25 + k/7
        (1 / 3, 2.0, 3, 1 / 3, 5),  # thirds: 1/3 .. 5/3
        (2.4, math.inf, 30, 2.4, 3),  # 2.4, 2.4333, 2.4667; not 2.5
        (0.1, 0.1001, 5, 0.1, 1),  # a sliver still holds its start
        (2.45, 9.0, 1, 2.45, 1),
    ],
)
def test_plan_samples_the_segment_at_the_rate(video, clips, start, end, rate, first, count):
    clip = clips["h264-30.mp4"]
    plan = _plan(video, clip.path, start, end, rate)
    step = 1 / (rate or 5)
    expected = [start + k * step for k in range(1000) if start + k * step < min(end, clip.duration) - 1e-9]
    assert len(plan.refs) == count == len(expected)
    assert plan.refs == pytest.approx(expected, abs=1e-6) and plan.refs[0] == pytest.approx(first)
    assert all(type(ref) is float for ref in plan.refs) and isinstance(plan.refs, tuple)
    assert plan.facts == VideoFacts(2.5, 30.0, 320, 240, start, min(end, 2.5), float(rate or 5))


def test_the_rate_is_the_params_where_set_else_the_manifests(video, clips):
    path = clips["mpeg4-24.avi"].path
    with open(path, "rb") as file:
        assert len(video.plan(file, {"start": 0.0, "end": math.inf}, Params()).refs) == 10  # no frame_rate: 5
    assert len(_plan(video, path, rate=None).refs) == 10
    assert _plan(video, path, rate=2).refs == (0.0, 0.5, 1.0, 1.5)
    assert _plan(video, path, rate=2).facts.frame_rate == 2.0


def test_plan_reads_avi_and_mpegts_durations_and_rates(video, clips):
    for name in CLIPS:
        clip = clips[name]
        facts = _plan(video, clip.path).facts
        assert (facts.duration, facts.fps, facts.width, facts.height) == (clip.duration, float(clip.fps), 320, 240)
        assert facts.end == clip.duration
    with av.open(str(clips["h264-25-ts.mp4"].path)) as container:  # times count from the first frame, not from 0
        assert container.streams.video[0].start_time > 0


# -- fill
FILLS = [(name, 7.0, 0.0, math.inf) for name in CLIPS] + [
    ("h264-24.mp4", 45.0, 0.0, math.inf),  # faster than the video: frames sampled twice
    ("mpeg4-30.avi", 30.0, 0.0, math.inf),  # every frame
    ("h264-30.mp4", 5.0, 0.5, 1.7),
    ("h264-25-ts.mp4", 3.0, 1 / 3, 1.9),
]


@pytest.mark.parametrize(("name", "rate", "start", "end"), FILLS)
def test_fill_gives_each_timestamp_its_frame(video, clips, name, rate, start, end):
    clip = clips[name]
    frames = _every_frame(clip.path)
    assert len(frames) == clip.frame_count
    plan = _plan(video, clip.path, start, end, rate)
    with open(clip.path, "rb") as file:
        rows, facts = _fill(video, file, plan.refs)
    geometry = Geometry.fit(320, 240, video.manifest.input)
    for ref, row, found in zip(plan.refs, rows, facts, strict=True):
        index = _nearest(clip, ref)
        assert isinstance(found, FrameFacts), found
        assert found.time == pytest.approx(clip.time(index), abs=1e-6), (ref, found.time)
        np.testing.assert_array_equal(row, _expected_row(video.manifest, frames[index]), err_msg=f"{name} at {ref}")
        assert found.geometry == geometry
        assert found.histogram.shape == (3, HISTOGRAM_BINS) and found.histogram.dtype == np.float32
        np.testing.assert_allclose(found.histogram.sum(axis=1), 1.0, rtol=1e-6)


def test_avi_times_frames_by_their_order_where_pyav_cannot(clips):
    """H.264 with B-frames in AVI: PyAV's own frame times come out shuffled (AVI stores no presentation times);
    fill's come from the order the decoder shows them in, which the test above checks against every frame."""
    with av.open(str(clips["h264-24.avi"].path)) as container:
        times = [frame.time for frame in container.decode(container.streams.video[0])]
    assert times != sorted(times)


def test_fill_fits_as_the_manifest_says(clips):
    cropped = VideoPreprocessor(Manifest.model_validate(CROPPED))
    clip = clips["mpeg4-24.avi"]
    plan = _plan(cropped, clip.path, 0.3, 1.3, 4)
    rows, facts = _fill(cropped, clip.path.read_bytes(), plan.refs)  # whole bytes work too
    assert rows.shape == (4, 64, 64, 3) and rows.dtype == np.uint8
    for ref, row in zip(plan.refs, rows, strict=True):
        np.testing.assert_array_equal(
            row, _expected_row(cropped.manifest, _every_frame(clip.path)[_nearest(clip, ref)])
        )
    assert facts[0].geometry == Geometry.fit(320, 240, cropped.manifest.input)


@pytest.mark.parametrize("chunk", [1, 3, 5])
def test_fills_in_pieces_give_what_one_fill_gives(video, clips, chunk):
    clip = clips["h264-24.mp4"]
    plan = _plan(video, clip.path, rate=10)
    with open(clip.path, "rb") as file:
        whole_rows, whole = _fill(video, file, plan.refs, chunk=len(plan.refs))
        rows, pieces = _fill(video, file, plan.refs, chunk=chunk)
    np.testing.assert_array_equal(rows, whole_rows)
    assert [f.time for f in pieces] == [f.time for f in whole]
    assert all(np.array_equal(a.histogram, b.histogram) for a, b in zip(pieces, whole, strict=True))


def test_refs_of_two_segments_in_one_task_get_their_own_frames(video, clips):
    """A task may hold the end of one input's segment and the start of another's on the same video."""
    clip = clips["h264-24.mp4"]
    refs = _plan(video, clip.path, rate=10).refs
    late, early = list(refs[-6:]), list(refs[2:8])
    with open(clip.path, "rb") as file:
        rows, mixed = _fill(video, file, late + early, chunk=12)
        _, alone = _fill(video, file, late, chunk=6)
        _, first = _fill(video, file, early, chunk=6)
    assert [f.time for f in mixed] == [f.time for f in alone + first]


def test_a_seekable_file_that_is_not_local_works(video, clips):
    clip = clips["mpeg4-30.avi"]
    memory = fsspec.filesystem("memory")
    memory.pipe("/videos/clip.avi", clip.path.read_bytes())
    with open(clip.path, "rb") as file:
        local_plan = video.plan(file, {"start": 0.2, "end": 1.9}, RateParams(frame_rate=6))
        local_rows, local = _fill(video, file, local_plan.refs, chunk=4)
    for source in (memory.open("/videos/clip.avi", "rb"), io.BytesIO(clip.path.read_bytes())):
        with source:
            plan = video.plan(source, {"start": 0.2, "end": 1.9}, RateParams(frame_rate=6))
            rows, facts = _fill(video, source, plan.refs, chunk=4)
        assert plan == local_plan
        np.testing.assert_array_equal(rows, local_rows)
        assert [f.time for f in facts] == [f.time for f in local]


def test_histogram_is_each_channels_colours_and_cheap():
    red = np.zeros((480, 640, 3), np.uint8)
    red[..., 0] = 255
    found = histogram(red)
    assert found[0, HISTOGRAM_BINS - 1] == 1 and found[1, 0] == 1 and found[2, 0] == 1 and found.sum() == 3
    noise = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    assert histogram(noise).sum(axis=1) == pytest.approx([1, 1, 1])
    best = math.inf
    for _ in range(50):
        begun = time.perf_counter()
        histogram(noise)
        best = min(best, time.perf_counter() - begun)
    assert best < 0.001  # about 0.08 ms on a 2-core machine; the bound leaves room for a busy one


# -- bad inputs
def _bad_files(folder: Path, clips: dict[str, Clip]) -> dict[str, Path]:
    def write(name: str, data: bytes) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    def audio(name: str, codec: str, sample_format: str) -> Path:
        with av.open(str(folder / name), "w") as out:
            stream = out.add_stream(codec, rate=16000, layout="mono")
            size, pts = stream.codec_context.frame_size or 1024, 0
            for _ in range(10):
                wave = (np.sin(np.arange(size) * 0.05) * (3000 if sample_format == "s16" else 0.1))[None, :]
                frame = av.AudioFrame.from_ndarray(wave.astype(np.int16 if sample_format == "s16" else np.float32),
                                                   format=sample_format, layout="mono")  # fmt: skip
                frame.sample_rate, frame.pts = 16000, pts
                pts += size
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        return folder / name

    png, jpeg = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(png, "PNG")
    Image.new("RGB", (64, 48), (200, 30, 30)).save(jpeg, "JPEG")
    mp4, avi = clips["h264-30.mp4"].path.read_bytes(), clips["mpeg4-24.avi"].path.read_bytes()
    assert b"FMP4" in avi[:512]
    return {
        "empty": write("empty.mp4", b""),
        "png": write("picture.mp4", png.getvalue()),
        "jpeg": write("photo.mov", jpeg.getvalue()),
        "text": write("notes.mp4", b"these are my holiday notes, not a video\n" * 40),
        "cut_mp4": write("cut.mp4", mp4[: len(mp4) // 2]),  # its index (moov) was at the end
        "aac": audio("speech.mp4", "aac", "fltp"),
        "pcm": audio("speech.mov", "pcm_s16le", "s16"),
        "codec": write("odd.avi", avi.replace(b"FMP4", b"QQQQ")),
    }


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory, clips: dict[str, Clip]) -> dict[str, Path]:
    return _bad_files(tmp_path_factory.mktemp("bad"), clips)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty", r"^video cannot be decoded: the file is empty \(0 bytes\)$"),
        ("png", r"the file is a PNG image, not a video; videos must be MP4, MOV or AVI"),
        ("jpeg", r"the file is a JPEG image, not a video"),
        ("text", r"the data is not a video format batchline recognises \(Invalid data found when processing input\)"),
        ("cut_mp4", r"the data is an MP4/QuickTime file, but it is truncated or corrupt"),
        ("aac", r"the file has no video stream, only audio: AAC \(Advanced Audio Coding\)"),
        ("pcm", r"the file has no video stream, only audio: PCM signed 16-bit little-endian"),
        ("codec", r"its video codec is not one FFmpeg knows"),
    ],
)
def test_a_file_that_is_not_a_usable_video_is_invalid(video, bad, name, message):
    with pytest.raises(InvalidArgument, match=message) as raised:
        _plan(video, bad[name])
    assert str(bad[name].parent) not in raised.value.message and len(raised.value.message) < 200
    with open(bad[name], "rb") as file:  # fill raises the same: the executor fails the call's items with it
        with pytest.raises(InvalidArgument, match=message):
            video.fill(file, [0.0], [np.empty(video.layout[0], video.layout[1])])


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (1.0, 1.0, r"^TIME_SEGMENT_END must be after TIME_SEGMENT_START \(got 1 s to 1 s\)$"),
        (1.5, 0.5, r"^TIME_SEGMENT_END must be after TIME_SEGMENT_START"),
        (3.0, math.inf, r"^TIME_SEGMENT_START 3 s is past the video's end at 2.5 s$"),
        (2.5, 4.0, r"^TIME_SEGMENT_START 2.5 s is past the video's end at 2.5 s$"),
        (-0.5, 1.0, r"^TIME_SEGMENT_START must be 0 or more seconds, got -0.5 s$"),
        (math.nan, 1.0, r"must be numbers of seconds"),
    ],
)
def test_a_segment_outside_the_video_is_invalid(video, clips, start, end, message):
    with pytest.raises(InvalidArgument, match=message):
        _plan(video, clips["h264-30.mp4"].path, start, end)


@pytest.mark.parametrize("name", ["mpeg4-24.avi", "faststart"])
def test_a_truncated_video_fails_the_frames_it_lacks(video, clips, tmp_path, name):
    """An AVI (whose header says how long it is) or an MP4 with its index first, cut short: plan believes the
    header; the frames fill cannot find are those items' INVALID_ARGUMENT; and a segment wholly in the missing part
    holds no frame."""
    clip = clips["mpeg4-24.avi" if name != "faststart" else "h264-30.mp4"]
    source = clip.path
    if name == "faststart":
        source = tmp_path / "faststart.mp4"
        with av.open(str(clip.path)) as original, av.open(str(source), "w", options={"movflags": "faststart"}) as out:
            stream = out.add_stream_from_template(original.streams.video[0])
            for packet in original.demux(original.streams.video[0]):
                if packet.dts is not None:
                    packet.stream = stream
                    out.mux(packet)
    data = source.read_bytes()
    cut = tmp_path / f"cut-{name}"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    plan = _plan(video, cut, rate=10)
    with open(cut, "rb") as file:
        rows, facts = _fill(video, file, plan.refs, chunk=4)
    kept = [i for i, found in enumerate(facts) if isinstance(found, FrameFacts)]
    assert kept and kept == list(range(len(kept))) and len(kept) < len(facts), facts
    for i in kept:  # what is there is right
        np.testing.assert_array_equal(
            rows[i], _expected_row(video.manifest, _every_frame(clip.path)[_nearest(clip, plan.refs[i])])
        )
    lost = plan.refs[len(kept)]
    for found in facts[len(kept) :]:
        assert isinstance(found, InvalidArgument)
        assert found.message.startswith("the video has no frame at ") and "the last frame" in found.message
    with pytest.raises(InvalidArgument, match=r"^the segment .* holds no frame: the last frame"):
        _plan(video, cut, lost + 0.05)
