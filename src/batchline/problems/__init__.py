"""Problems (ML scenarios): how inputs are read, preprocessed and turned into annotations."""

from __future__ import annotations

from batchline.models.manifest import Manifest
from batchline.plugins import Registry
from batchline.problems.base import Problem

PROBLEMS: Registry[type[Problem]] = Registry(
    "problem",
    {
        "image_classification": "batchline.problems.image_classification:ImageClassification",
        "image_object_detection": "batchline.problems.image_object_detection:ImageObjectDetection",
    },
)


def problem_for(manifest: Manifest) -> Problem:
    return PROBLEMS.get(manifest.problem)(manifest)
