"""What a request may hold, in one place: the HTTP body, and the fields the wire schemas bound.

Why these numbers:
- A request is read whole into memory, and a job keeps its request (inputConfig is in every GET of its
  operation), so nothing a client sends may be unbounded. 1 MiB is far above any real request: 1,000 URIs of
  100 characters are 100 KB (the body limit is the tighter bound for long URIs: 500 of 2,000 characters fit).
- Predict is the exception: its body carries the image itself, base64 in JSON, and an image may be up to
  MAX_IMAGE_BYTES (30 MiB, as AutoML allows). Base64 makes 4 characters of 3 bytes; the ordinary body limit is
  the slack for the rest of the message (JSON, params of any usual size): about 41 MiB.
- AutoML documents "any string must be up to 25000 characters long" for params; 100 params is far more than
  any problem takes (unknown keys are refused at submit anyway).
- 1,000 input files a request (a file lists as many inputs as one likes, so more files are never needed), and
  2,000 characters a URI, as AutoML documents GcsSource.inputUris ("up to 2000 characters long"); the same for
  Vertex's gcsSource.uris and for both outputUriPrefix.
- Vertex labels as GCP documents them: at most 64 a resource, keys of 1-63 characters, values of at most 63.
"""

from __future__ import annotations

import math

from batchline.problems.image.decode import MAX_IMAGE_BYTES

MAX_BODY_BYTES = 1024 * 1024
MAX_PREDICT_BODY_BYTES = 4 * math.ceil(MAX_IMAGE_BYTES / 3) + MAX_BODY_BYTES

MAX_INPUT_URIS = 1000
MAX_URI_CHARS = 2000
MAX_PARAMS = 100
MAX_PARAM_CHARS = 25000

MAX_LABELS = 64
MAX_LABEL_CHARS = 63
MAX_DISPLAY_NAME_CHARS = 128
MAX_RESOURCE_NAME_CHARS = 1024  # a Vertex `model` name: projects/p/locations/l/models/m@version


def mebibytes(limit: int) -> str:
    """A byte limit as people read it: 1 MiB, 41 MiB."""
    return f"{limit / 2**20:.0f} MiB ({limit:,} bytes)"
