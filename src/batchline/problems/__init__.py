"""Problems (ML scenarios): each wires a preprocessor, a postprocessor and a reducer, with its typed params."""

from __future__ import annotations

from batchline.models.manifest import Manifest
from batchline.plugins import Registry
from batchline.problems.base import Problem

PROBLEMS: Registry[type[Problem]] = Registry(
    "problem",
    {
        "image_classification": "batchline.problems.image.classification:ImageClassification",
        "image_object_detection": "batchline.problems.image.detection:ImageObjectDetection",
        "video_classification": "batchline.problems.video.classification:VideoClassification",
        "video_object_tracking": "batchline.problems.video.object_tracking:VideoObjectTracking",
    },
    hints={"video_classification": "batchline[video]", "video_object_tracking": "batchline[video]"},
)


def problem_for(manifest: Manifest) -> Problem:
    return PROBLEMS.get(manifest.problem)(manifest)
