"""AutoML Video Intelligence classification: an image classifier run on frames sampled from a video segment; labels
of the whole segment, of each shot (cuts found in the decoded frames) and of each second, as the params ask."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

import numpy as np
from pydantic import Field

from batchline.domain.predictions import VideoLabels
from batchline.models.manifest import Manifest
from batchline.problems.base import Params, Problem, Reducer, WithFacts
from batchline.problems.image.scores import ScoresPostprocessor
from batchline.problems.video.frames import FrameFacts, VideoFacts, VideoPreprocessor
from batchline.problems.video.labels import shot_starts, video_labels


class VideoClassificationParams(Params):
    score_threshold: float = Field(0.5, ge=0, le=1)
    segment_classification: bool = True
    shot_classification: bool = False
    one_sec_interval_classification: bool = False
    max_predictions: int | None = Field(None, ge=1)  # labels per stretch (segment, shot, second), best first
    frame_rate: float | None = Field(None, gt=0, le=120)  # frames sampled per second; None: the manifest's

    def kinds(self) -> set[str]:
        wanted = {
            "segment": self.segment_classification,
            "shot": self.shot_classification,
            "1s_interval": self.one_sec_interval_classification,
        }
        return {kind for kind, on in wanted.items() if on}


class StretchLabels(Reducer):
    """Per-frame scores, averaged over the segment, its shots and its seconds."""

    def __init__(self, labels: Sequence[str]):
        self.labels = labels

    def reduce(
        self, facts: VideoFacts, items: Sequence[tuple[FrameFacts, np.ndarray]], params: VideoClassificationParams
    ) -> VideoLabels:
        times = np.array([frame.time for frame, _ in items])
        scores = np.stack([found for _, found in items])
        shots = shot_starts(times, np.stack([frame.histogram for frame, _ in items]))
        found = video_labels(
            times, scores, self.labels, facts.start, facts.end, shots, params.kinds(), params.score_threshold,
            params.max_predictions,
        )  # fmt: skip
        return VideoLabels(found)


class VideoClassification(Problem):
    name = "video_classification"
    Params = VideoClassificationParams
    batch_only = True

    def __init__(self, manifest: Manifest):
        super().__init__(manifest)
        self.preprocessor = VideoPreprocessor(manifest)
        self.postprocessor = WithFacts(ScoresPostprocessor(manifest), attrgetter("geometry"))
        self.reducer = StretchLabels(manifest.labels)
