"""The Vertex AI batch inputs: instances in JSONL, CSV or file-list files, as executor `Input`s.

gcsSource.uris may be several and hold wildcards; each expands to its files, sorted. Every instance becomes one
input, in file and line order (duplicates too: each gets its own output line). An input's id is the JSON text of
its output line's head (see writers/vertex.py): `{"instance": <as given>}`, or `{"key": <value>}` with keyField.

Image instances are `{"content": "gs://..." or base64, "mimeType": "image/..."}`. The fields the model sees are
the instance without its keyField, then narrowed by includedFields or excludedFields; `content` must be among
them. An instance that is wrong on its own (not JSON, no content, bad base64, no keyField value) is an input that
carries its error: it fails alone and the job goes on. A file that cannot be read fails the job.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import mimetypes
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from batchline.errors import InvalidArgument
from batchline.executor.inputs import Input, read_input_file
from batchline.executor.segments import instance_segment
from batchline.problems.image.decode import MAX_IMAGE_BYTES
from batchline.storage import Storage

FORMATS = ("jsonl", "csv", "file-list")
INSTANCE_TYPES = ("", "object", "array")


def _no_args(fields: dict[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Media:
    """What a model's instances hold: their MIME family, the largest inline content, an example instance for
    messages, and which instance fields its preprocessor takes as args (INVALID_ARGUMENT if they are wrong)."""

    kind: str  # "image": mimeType image/...
    max_bytes: int
    example: str
    args: Callable[[dict[str, Any]], dict[str, Any]] = _no_args


VIDEO = Media(
    "video",
    50 * 2**30,
    '{"content": "gs://BUCKET/VIDEO.mp4", "mimeType": "video/mp4", "timeSegmentStart": "0s", "timeSegmentEnd": "inf"}',
    instance_segment,
)
IMAGE = Media(
    "image", MAX_IMAGE_BYTES, '{"content": "gs://BUCKET/IMAGE.jpg" or base64 bytes, "mimeType": "image/jpeg"}'
)


@dataclass(frozen=True)
class InstanceSource:
    """Where a job's instances are and how to read them: its inputConfig and instanceConfig."""

    instances_format: str
    uris: tuple[str, ...]
    instance_type: str = ""
    key_field: str = ""
    included_fields: tuple[str, ...] = ()
    excluded_fields: tuple[str, ...] = ()
    media: Media = IMAGE

    @classmethod
    def from_job(cls, job: dict[str, Any], media: Media = IMAGE) -> InstanceSource:
        """From a Vertex job body (camelCase, as the API stores it); `check` it before use."""
        inputs, instance = job.get("inputConfig") or {}, job.get("instanceConfig") or {}
        return cls(
            instances_format=inputs.get("instancesFormat", ""),
            uris=tuple((inputs.get("gcsSource") or {}).get("uris") or ()),
            instance_type=instance.get("instanceType", ""),
            key_field=instance.get("keyField", ""),
            included_fields=tuple(instance.get("includedFields") or ()),
            excluded_fields=tuple(instance.get("excludedFields") or ()),
            media=media,
        )

    def check(self) -> None:
        """What is wrong with the request as a whole; InvalidArgument says what to write instead."""
        if self.instances_format not in FORMATS:
            raise InvalidArgument(
                f"inputConfig.instancesFormat {self.instances_format!r} is not supported; use one of "
                f"{', '.join(FORMATS)}"
            )
        if not self.uris:
            raise InvalidArgument('inputConfig.gcsSource.uris must list at least one file, e.g. ["gs://b/in.jsonl"]')
        if self.instance_type not in INSTANCE_TYPES:
            raise InvalidArgument(
                f"instanceConfig.instanceType {self.instance_type!r} is not supported; use object or array"
            )
        if self.included_fields and self.excluded_fields:
            raise InvalidArgument("instanceConfig: set includedFields or excludedFields, not both")
        if self.instances_format == "file-list" and (self.key_field or self.included_fields or self.excluded_fields):
            raise InvalidArgument(
                "instanceConfig keyField, includedFields and excludedFields need named fields: "
                "use instancesFormat jsonl or csv, not file-list"
            )


def iter_instances(storage: Storage, source: InstanceSource) -> Iterator[Input]:
    """Every instance of the job, in order; InvalidArgument (the job fails) if a file cannot be read or no file
    holds any instance."""
    count = 0
    for uri in _files(storage, source.uris):
        text = read_input_file(storage, uri)
        if source.instances_format == "jsonl":
            inputs = _jsonl(text, uri, source)
        elif source.instances_format == "csv":
            inputs = _csv(text, uri, source)
        else:
            inputs = _file_list(text)
        for item in inputs:
            count += 1
            yield item
    if count == 0:
        raise InvalidArgument(
            f"the input files ({', '.join(source.uris)}) hold no instances; "
            f"expected one {source.instances_format} instance per line"
        )


def count_instances(storage: Storage, source: InstanceSource) -> int:
    """Read every input file once, so that an unreadable one fails the job before any work."""
    return sum(1 for _ in iter_instances(storage, source))


def _files(storage: Storage, uris: tuple[str, ...]) -> Iterator[str]:
    for uri in uris:
        matches = storage.expand(uri)
        if not matches:
            raise InvalidArgument(f"inputConfig.gcsSource.uris: {uri} matches no files")
        yield from matches


def _head_id(head: dict[str, Any]) -> str:
    return json.dumps(head, ensure_ascii=False, separators=(",", ":"))


def _failed(head: dict[str, Any], message: str) -> Input:
    return Input(_head_id(head), error=InvalidArgument(message).to_status())


def _jsonl(text: str, uri: str, source: InstanceSource) -> Iterator[Input]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            yield _failed(
                {"instance": line}, f"{uri} line {number} is not JSON ({exc}); write one {source.media.example}"
            )
            continue
        if not isinstance(record, dict):
            yield _failed(
                {"instance": record}, f"{uri} line {number} is not a JSON object; write {source.media.example}"
            )
            continue
        yield _instance(record, record, source)


def _csv(text: str, uri: str, source: InstanceSource) -> Iterator[Input]:
    rows = (row for row in csv.reader(io.StringIO(text, newline="")) if any(cell.strip() for cell in row))
    header = next(rows, None)
    for number, row in enumerate(rows, 2):
        given: Any = dict(zip(header, row, strict=False)) if source.instance_type == "object" else row
        if len(row) != len(header or ()):
            message = f"{uri} row {number} has {len(row)} values where the header names {len(header or ())}"
            yield _failed({"instance": given}, message)
            continue
        yield _instance(dict(zip(header, row, strict=True)), given, source)


def _file_list(text: str) -> Iterator[Input]:
    for line in text.splitlines():
        if line.strip():
            uri = line.strip()
            instance = {"content": uri}
            mime, _ = mimetypes.guess_type(uri.split("?")[0])
            if mime:
                instance["mimeType"] = mime
            yield Input(_head_id({"instance": instance}), uri=uri)


def _instance(record: dict[str, Any], given: Any, source: InstanceSource) -> Input:
    """One instance as an Input: `record` names its fields, `given` is how the output line shows it."""
    head: dict[str, Any] = {"instance": given}
    if source.key_field:
        if source.key_field not in record:
            return _failed(head, f"instanceConfig.keyField {source.key_field!r} is not a field of this instance")
        head = {"key": record[source.key_field]}
    fields = {k: v for k, v in record.items() if k != source.key_field}
    if source.included_fields:
        fields = {k: v for k, v in fields.items() if k in source.included_fields}
    fields = {k: v for k, v in fields.items() if k not in source.excluded_fields}
    try:
        uri, content = _content(fields, source.media)
        args = source.media.args(fields)
    except InvalidArgument as exc:
        return Input(_head_id(head), error=exc.to_status())
    return Input(_head_id(head), uri=uri, content=content, args=args)


def _content(fields: dict[str, Any], media: Media) -> tuple[str | None, bytes | None]:
    """(where to read the content, or its inline bytes) from an instance's fields."""
    content, mime = fields.get("content"), fields.get("mimeType")
    if not isinstance(content, str) or not content:
        narrowed = " (after instanceConfig includedFields / excludedFields)" if "content" not in fields else ""
        raise InvalidArgument(f'instance has no "content" string{narrowed}; write {media.example}')
    if mime is not None and not (isinstance(mime, str) and mime.startswith(media.kind + "/")):
        raise InvalidArgument(
            f"mimeType {mime!r} is not an {media.kind} type; {media.kind} models take {media.kind}/... types"
        )
    if "://" in content:  # base64 has no ':'; a URI always does
        return content, None
    try:
        data = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument('"content" is neither a gs:// URI nor valid base64') from None
    if len(data) > media.max_bytes:
        raise InvalidArgument(f'"content" is larger than the {media.max_bytes // 2**20} MB {media.kind} limit')
    return None, data
