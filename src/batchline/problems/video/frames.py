"""Videos into model rows: probe a video and plan the frames a segment samples, then seek, decode and fit them.

`plan` opens the video with PyAV from its open file (never read whole: only the container's header and index, and
the frames of one seek), checks that it is a video that decodes, and lists the sampled timestamps: start,
start + 1/rate, ... while before the segment's end and the video's. `fill` gets consecutive timestamps of one
video, seeks once to the keyframe at or before the first and decodes forward; each timestamp takes the first
decoded frame whose time is at least the timestamp less half a source frame interval (the frame nearest to it),
which goes through the image path (problems/image/decode.fit_picture, Normalizer) into its row of the batch.

Times are seconds from the video's first frame (the stream's start time is subtracted). A frame's time is its
presentation time, except in AVI. AVI stores no presentation times: FFmpeg stamps each packet with its place in the
file, so an H.264 AVI with B-frames (stored I P B B, shown I B B P) decodes to frames whose `frame.time`s are
shuffled and shifted (measured: the frames shown 0, 1, 2, 3, 4 came stamped 1, 4, 3, 5, 2, in frame ticks). The
decoder does put frames out in presentation order, and the packets' dts (their places, in ticks) are the frames'
presentation ticks in increasing order; so in AVI the n-th frame put out after a seek takes the dts of the n-th
packet fed since: a first-in first-out match, exact for closed GOPs (x264's default) and dropped frames (an empty
chunk: a missing tick) alike, and the same as `frame.time` where there are no B-frames (MPEG-4 part 2 AVIs).
"""

from __future__ import annotations

import collections
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import av
import av.error
import numpy as np
from av.stream import Disposition
from av.video.reformatter import VideoReformatter

from batchline.errors import InvalidArgument
from batchline.models.manifest import Manifest
from batchline.problems.base import Params, Plan, Preprocessor, Source
from batchline.problems.image.decode import Geometry, Normalizer, fit_picture

MAX_VIDEO_BYTES = 50 * 1024**3  # a whole inline video past this is refused; opened files are never read whole
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mpeg4")
HISTOGRAM_BINS = 16  # per channel
_HISTOGRAM_PIXELS = 4096  # about this many pixels of a frame (every k-th row and column) make its histogram
_ALLOWED = "MP4, MOV or AVI"
_FALLBACK_FPS = 25.0  # a stream that states no frame rate at all
_EPSILON = 1e-6  # s: rounding slack in time comparisons
_IMAGE_FORMATS = {"image2": "an image", "gif": "a GIF image", "apng": "an APNG image", "webp": "a WebP image"}
# Threads: one per decoder process, for decoding and for the RGB conversion alike. There is a decoder process per
# core, so FFmpeg's own threads only take cores from the other decoders and the model. Measured on 2 (shared) cores
# with 2 decoder processes busy, 640x480 H.264 (libx264 veryfast): decoding took 0.23 ms of wall time per frame
# (0.46 ms CPU) on one slice thread, the same with FFmpeg's automatic slice threads (these streams have one slice
# a frame), and 0.29-0.31 ms (0.55-0.57 ms CPU) with frame threads (thread_type "AUTO" or "FRAME"): frame threads
# cost CPU and win nothing when every core is busy. The conversion to RGB took 0.07 ms a frame on one thread against
# 0.13 ms with swscale's default (a thread per core, its pool started anew for every new frame's context: 0.6 ms
# CPU a frame in one process); one reformatter for all frames keeps one context.
_THREAD_TYPE = "SLICE"
_THREAD_COUNT = 1
_SWSCALE_THREADS = 1


@dataclass(frozen=True)
class VideoFacts:
    """What a video problem's reducer needs to know about one input: the video, and the segment it sampled."""

    duration: float  # s, of the whole video
    fps: float  # the stream's average frame rate
    width: int
    height: int
    start: float  # s, the segment asked for: [start, end)
    end: float  # clamped to the duration (an open end is the video's end)
    frame_rate: float  # frames sampled per second


@dataclass(frozen=True, eq=False)
class FrameFacts:
    """One sampled frame: when it is shown, how it was fitted into the model's input, and its colours."""

    time: float  # s, the presentation time of the decoded frame used (from the video's first frame)
    geometry: Geometry  # so that a detector's boxes map back onto the frame
    histogram: np.ndarray  # float32 (3, HISTOGRAM_BINS): R, G, B, each scaled to sum 1 (for shot cuts)


class VideoPreprocessor(Preprocessor):
    """As many items per input as frames its segment samples; each frame fitted and normalised as an image is."""

    expands = True
    streams = True
    max_bytes = MAX_VIDEO_BYTES
    extensions = VIDEO_EXTENSIONS
    noun = "videos"
    # A task seeks back to a keyframe and decodes forward from it (x264 puts one every 250 frames): 32 sampled
    # frames a task gave 1.13x the frames/s end to end of 16 (4 videos of 60 s at 640x480, A/B), for ~80 MB more.
    items_per_task = 32

    def __init__(self, manifest: Manifest):
        super().__init__(manifest)
        self.normalize = Normalizer(manifest.input)
        self._reformatter: VideoReformatter | None = None  # made on first use, in the decoder process

    @property
    def layout(self) -> tuple[tuple[int, ...], np.dtype]:
        return self.normalize.shape, self.normalize.dtype

    def frame_rate(self, params: Params) -> float:
        """The params' frame_rate where they have one that is set, else the manifest's video.frame_rate."""
        rate = getattr(params, "frame_rate", None)
        return float(rate if rate is not None else self.manifest.video.frame_rate)

    def plan(self, source: Source, args: dict[str, Any], params: Params) -> Plan:
        start, end = _segment(args)
        rate = self.frame_rate(params)
        with _Video(source) as video:
            try:
                duration = video.duration()
                if start >= duration:
                    raise InvalidArgument(
                        f"TIME_SEGMENT_START {_seconds(start)} is past the video's end at {_seconds(duration)}"
                    )
                stop = min(end, duration)
                refs = timestamps(start, stop, rate)
                if not _holds_a_frame(start, stop, video.fps):
                    raise InvalidArgument(
                        f"the segment {_seconds(start)} to {_seconds(stop)} holds no frame of the video, which has "
                        f"{video.fps:g} frames a second"
                    )
                if not refs:
                    raise InvalidArgument(
                        f"the segment {_seconds(start)} to {_seconds(stop)} holds no frame sampled at {rate:g} a second"
                    )
                video.check_decodes(start, stop)
            except av.error.FFmpegError as exc:
                raise InvalidArgument(f"video cannot be decoded: {_reason(exc)}") from None
            facts = VideoFacts(duration, video.fps, video.width, video.height, start, stop, rate)
        return Plan(refs, facts)

    def fill(self, source: Source, refs: Sequence[Any], rows: Sequence[np.ndarray]) -> list[Any]:
        """Refs in any order (one task may hold two segments of a video, or two inputs of the same video): filled in
        time order, decoding forward from one seek, the facts returned in the refs' order."""
        order = sorted(range(len(refs)), key=lambda i: float(refs[i]))
        found = self._fill_in_order(source, [float(refs[i]) for i in order], [rows[i] for i in order])
        facts: list[Any] = [None] * len(refs)
        for position, fact in zip(order, found, strict=True):
            facts[position] = fact
        return facts

    def _fill_in_order(self, source: Source, times: list[float], rows: Sequence[np.ndarray]) -> list[Any]:
        found: list[Any] = []
        if not times:
            return found
        with _Video(source) as video:
            half = video.interval / 2
            last: tuple[float, av.VideoFrame] | None = None
            failure: InvalidArgument | None = None
            try:
                for time, frame in video.frames(times[0]):
                    last = time, frame
                    if time < times[len(found)] - half - _EPSILON:
                        continue
                    found += self._fill(video, frame, time, times[len(found) :], rows[len(found) :], half)
                    if len(found) == len(times):
                        break
            except av.error.FFmpegError as exc:  # a damaged stretch: the frames not yet filled fail
                failure = InvalidArgument(f"video cannot be decoded at {_seconds(times[len(found)])}: {_reason(exc)}")
            for ref, row in zip(times[len(found) :], rows[len(found) :], strict=True):
                if failure is None and last is not None and ref < last[0] + video.interval - _EPSILON:
                    found.append(self._fill_row(last[1], last[0], row))  # the last frame still shows at ref
                elif failure is not None:
                    found.append(failure)
                elif last is None:
                    found.append(InvalidArgument(f"video cannot be decoded at {_seconds(ref)}: no frame decodes there"))
                else:
                    found.append(InvalidArgument(f"the video has no frame at {_seconds(ref)}: {video.ends(last[0])}"))
        return found

    def _fill(
        self, video: _Video, frame: av.VideoFrame, time: float, refs: list[float], rows: Sequence[np.ndarray],
        half: float,
    ) -> list[FrameFacts]:  # fmt: skip
        """The rows of the leading refs that this frame is the nearest for (several, when sampling faster than the
        video's frame rate)."""
        count = 1
        while count < len(refs) and time >= refs[count] - half - _EPSILON:
            count += 1
        facts = self._fill_row(frame, time, rows[0])
        for row in rows[1:count]:
            row[...] = rows[0]
        return [facts] * count

    def _fill_row(self, frame: av.VideoFrame, time: float, row: np.ndarray) -> FrameFacts:
        rgb = self._rgb(frame)
        pixels, geometry = fit_picture(rgb, self.manifest.input)
        self.normalize(pixels, row)
        return FrameFacts(time, geometry, histogram(rgb))

    def _rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """The frame as HxWx3 uint8 RGB (frame.to_ndarray(format="rgb24"), through one kept swscale context)."""
        if self._reformatter is None:
            self._reformatter = VideoReformatter()
        return self._reformatter.reformat(frame, format="rgb24", threads=_SWSCALE_THREADS).to_ndarray()


def timestamps(start: float, stop: float, rate: float) -> tuple[float, ...]:
    """start, start + 1/rate, ... while before stop (to the microsecond, so that 0.1 + 0.2 prints as 0.3)."""
    count = max(0, math.ceil((stop - start) * rate + _EPSILON))
    found = (round(start + i / rate, 6) for i in range(count))
    return tuple(t for t in found if t < stop - _EPSILON / 2)


def _holds_a_frame(start: float, stop: float, fps: float) -> bool:
    """Does [start, stop) hold the time of one of the video's own frames (k / fps)?"""
    return not fps or math.ceil(start * fps - _EPSILON) < stop * fps - _EPSILON


def histogram(rgb: np.ndarray) -> np.ndarray:
    """The colours of an HxWx3 uint8 picture, from about _HISTOGRAM_PIXELS of its pixels (every k-th row and
    column): float32 (3, HISTOGRAM_BINS), each channel's bins summing to 1."""
    height, width = rgb.shape[:2]
    step = max(1, int(math.sqrt(height * width / _HISTOGRAM_PIXELS)))
    sample = rgb[::step, ::step]
    bins = (sample >> (8 - int(math.log2(HISTOGRAM_BINS)))).astype(np.intp) + _CHANNEL_OFFSETS
    counts = np.bincount(bins.ravel(), minlength=3 * HISTOGRAM_BINS).reshape(3, HISTOGRAM_BINS)
    return (counts / (sample.shape[0] * sample.shape[1])).astype(np.float32)


_CHANNEL_OFFSETS = np.arange(3, dtype=np.intp) * HISTOGRAM_BINS


def _segment(args: dict[str, Any]) -> tuple[float, float]:
    start, end = args.get("start"), args.get("end")
    start, end = 0.0 if start is None else float(start), math.inf if end is None else float(end)
    if math.isnan(start) or math.isnan(end):
        raise InvalidArgument("TIME_SEGMENT_START and TIME_SEGMENT_END must be numbers of seconds")
    if start < 0:
        raise InvalidArgument(f"TIME_SEGMENT_START must be 0 or more seconds, got {_seconds(start)}")
    if math.isinf(start):
        raise InvalidArgument("TIME_SEGMENT_START must be a finite number of seconds")
    if end <= start:
        raise InvalidArgument(
            f"TIME_SEGMENT_END must be after TIME_SEGMENT_START (got {_seconds(start)} to {_seconds(end)})"
        )
    return start, end


class _Video:
    """`with _Video(source) as video`: one opened video (its video stream, its clock, its frames decoded forward from
    a seek), or InvalidArgument saying why the source is not one."""

    def __init__(self, source: Source):
        self.file: IO[bytes] = io.BytesIO(source) if isinstance(source, bytes | bytearray | memoryview) else source
        self.container: av.container.InputContainer | None = None
        self.index: int | None = None  # of the video stream in the container

    def __enter__(self) -> _Video:
        self.file.seek(0, io.SEEK_END)
        if self.file.tell() == 0:
            raise InvalidArgument("video cannot be decoded: the file is empty (0 bytes)")
        self.file.seek(0)
        head = self.file.read(16)
        try:
            self._open()
        except av.error.FFmpegError as exc:
            raise InvalidArgument(_unreadable(head, exc)) from None
        try:
            stream = self.stream = _video_stream(self.container)
            self.index = stream.index
        except BaseException:
            self.close()
            raise
        self.time_base = stream.time_base
        self.origin = float((stream.start_time or 0) * self.time_base)  # s: the stream's first timestamp
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else _FALLBACK_FPS
        self.interval = 1 / self.fps
        self.width, self.height = stream.codec_context.width, stream.codec_context.height
        self.counted = self.container.format.name == "avi"  # no presentation times: see the module's docstring
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None

    def _open(self) -> None:
        """(Re)open the container at the file's start: it then demuxes from the first packet, with no seek."""
        self.close()
        self.file.seek(0)
        self.container = av.open(self.file, "r", metadata_errors="ignore")
        if self.index is not None:  # reopened: the stream chosen the first time (the old one went with its container)
            self.stream = self.container.streams.get(self.index)[0]
            _open_stream(self.stream)
        self.fresh = True
        self.damage: str | None = None  # FFmpeg's reason, where a packet did not decode

    def duration(self) -> float:
        """Seconds: the stream's, else the container's, else frames / rate, else the last frame's end."""
        stream, container = self.stream, self.container
        if stream.duration:
            return float(stream.duration * self.time_base)
        if container.duration:
            return container.duration / av.time_base
        if stream.frames:
            return stream.frames / self.fps
        end = None
        for time, _ in self.frames(math.inf):  # the last keyframe onwards
            end = time + self.interval
        if end is None:
            raise self._undecodable()
        return end

    def check_decodes(self, start: float, stop: float) -> None:
        """That the frame for `start` decodes: InvalidArgument (what is wrong) if none does."""
        last = None
        for time, frame in self.frames(start):
            last = time
            if time >= start - self.interval / 2 - _EPSILON:
                frame.to_ndarray(format="rgb24", threads=_SWSCALE_THREADS)  # FFmpegError where it cannot
                return
        if last is None:
            raise self._undecodable()
        if start >= last + self.interval - _EPSILON:
            raise InvalidArgument(
                f"the segment {_seconds(start)} to {_seconds(stop)} holds no frame: {self.ends(last)}"
            )

    def ends(self, last: float) -> str:
        """Where the frames stop short of the stated duration, and the likely why."""
        if self.damage:
            return f"the last frame that decodes is at {_seconds(last)} (the file is damaged: {self.damage})"
        return f"the last frame is at {_seconds(last)} (the file is truncated, or says it lasts longer than it does)"

    def _undecodable(self) -> InvalidArgument:
        why = f": {self.damage}" if self.damage else ""
        return InvalidArgument(
            f"video cannot be decoded: no frame of it decodes (the file is corrupt or truncated{why})"
        )

    def frames(self, at: float) -> Iterator[tuple[float, av.VideoFrame]]:
        """(time, frame) in presentation order from the keyframe at or before `at` (math.inf: the last one)."""
        back = 0.0
        while True:
            target = 0.0 if math.isinf(back) else max(0.0, at - back)
            decoded = self._decoded_from(target)
            first = next(decoded, None)
            if target == 0.0 or (first is not None and first[0] <= at + self.interval / 2):
                if first is not None:
                    yield first
                    yield from decoded
                return
            # The seek landed past `at`, or at the end (MPEG-TS seeks by bisecting bytes; an index may be of decode
            # times; a file may end before its index does): the keyframe wanted lies further back. From the start
            # at worst.
            decoded.close()
            back = math.inf if math.isinf(at) else max(1.0, 2 * back)

    def _decoded_from(self, target: float) -> Iterator[tuple[float, av.VideoFrame]]:
        self._seek(target)
        pending: collections.deque[int | None] = collections.deque()  # AVI: the dts of each packet fed
        last: float | None = None
        for packet in self.container.demux(self.stream):
            if self.counted and packet.size:
                pending.append(packet.dts)
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as exc:  # a damaged or cut-off packet: go on with the next (as ffmpeg does)
                self.damage = _reason(exc)
                if self.counted and packet.size:
                    pending.pop()
                continue
            for frame in decoded:
                pts = (pending.popleft() if pending else None) if self.counted else frame.pts
                if pts is None:
                    pts = frame.pts if frame.pts is not None else frame.dts
                if pts is not None:
                    last = float(pts * self.time_base) - self.origin
                elif last is None:
                    continue  # no clock yet: nothing to time this frame by
                else:
                    last += self.interval
                yield last, frame

    def _seek(self, target: float) -> None:
        """To the keyframe at or before `target` (s; math.inf: the last keyframe)."""
        if target <= 0.0:
            if not self.fresh:
                self._open()  # the start, surely: a seek to 0 is not one everywhere (MPEG-TS)
        else:
            pts = 2**62 if math.isinf(target) else math.floor((target + self.origin + _EPSILON) / self.time_base)
            try:
                self.container.seek(pts, stream=self.stream, backward=True, any_frame=False)
            except av.error.FFmpegError:  # no seeking in this file: decode from its start
                self._open()
        self.fresh = False


def _video_stream(container: av.container.InputContainer) -> av.VideoStream:
    name = container.format.name
    image = _IMAGE_FORMATS.get(name) or (
        f"a {name.removesuffix('_pipe').upper()} image" if name.endswith("_pipe") else None
    )
    if image:
        raise InvalidArgument(f"video cannot be decoded: the file is {image}, not a video; videos must be {_ALLOWED}")
    if (container.format.long_name or "").startswith("raw "):  # an elementary stream: no timestamps, no seeking
        raise InvalidArgument(
            f"video cannot be decoded: the file is a bare {container.format.long_name.removeprefix('raw ')} stream, "
            f"not in a container; videos must be {_ALLOWED}"
        )
    streams = [s for s in container.streams.video if not s.disposition & Disposition.attached_pic]
    if not streams:
        audio = sorted({_codec_name(s) for s in container.streams.audio})
        held = f"only audio: {', '.join(audio)}" if audio else "nor any audio"
        raise InvalidArgument(f"video cannot be decoded: the file has no video stream, {held}")
    best = container.streams.best("video")
    stream = best if best in streams else streams[0]
    if stream.codec_context is None:
        raise InvalidArgument("video cannot be decoded: its video codec is not one FFmpeg knows")
    _open_stream(stream)
    return stream


def _open_stream(stream: av.VideoStream) -> None:
    """Decode on one thread (see _THREAD_TYPE)."""
    context = stream.codec_context
    context.thread_type = _THREAD_TYPE
    context.thread_count = _THREAD_COUNT


def _codec_name(stream: av.stream.Stream) -> str:
    codec = stream.codec_context.codec if stream.codec_context is not None else None
    return (codec.long_name or codec.name) if codec is not None else "a codec FFmpeg does not know"


def _unreadable(head: bytes, exc: av.error.FFmpegError) -> str:
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide"):
        what = "an MP4/QuickTime file, but it is truncated or corrupt"
    elif head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        what = "an AVI file, but it is truncated or corrupt"
    else:
        what = "not a video format batchline recognises"
    return f"video cannot be decoded: the data is {what} ({_reason(exc)}); videos must be {_ALLOWED}"


def _reason(exc: BaseException) -> str:
    """FFmpeg's short reason, never its log: 'Invalid data found when processing input'."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text[:200]


def _seconds(t: float) -> str:
    return "infinity" if math.isinf(t) else f"{t:.3f}".rstrip("0").rstrip(".") + " s"
