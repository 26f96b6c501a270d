"""Reading a Vertex job's instances (jsonl, csv, file-list; wildcards; instanceConfig) into executor Inputs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from batchline.config import Settings
from batchline.errors import InvalidArgument
from batchline.executor.inputs import Input
from batchline.executor.vertex_inputs import InstanceSource, count_instances, iter_instances
from batchline.storage import Storage
from tests.support import image_bytes

RED = '{"content": "gs://b/img/red.jpg", "mimeType": "image/jpeg"}'


@pytest.fixture
def storage(settings: Settings) -> Storage:
    return Storage(settings)


@pytest.fixture
def bucket(data_dir: Path) -> Path:
    return data_dir / "buckets" / "b"


def read(storage: Storage, fmt: str, *uris: str, **instance_config: object) -> list[Input]:
    job = {"inputConfig": {"instancesFormat": fmt, "gcsSource": {"uris": list(uris)}}}
    if instance_config:
        job["instanceConfig"] = instance_config
    source = InstanceSource.from_job(job)
    source.check()
    return list(iter_instances(storage, source))


def head(item: Input) -> dict:
    return json.loads(item.id)


def test_jsonl_instances_keep_their_order_and_are_echoed_as_given(storage: Storage, bucket: Path) -> None:
    inline = base64.b64encode(image_bytes("green")).decode()
    lines = [RED, "", json.dumps({"mimeType": "image/png", "content": inline, "extra": [1, 2.5]}), RED]
    (bucket / "in.jsonl").write_text("\n".join(lines) + "\n")

    items = read(storage, "jsonl", "gs://b/in.jsonl")

    assert [i.uri for i in items] == ["gs://b/img/red.jpg", None, "gs://b/img/red.jpg"]  # duplicates stay
    assert items[1].content == image_bytes("green")
    assert head(items[0]) == {"instance": json.loads(RED)}
    assert list(head(items[1])["instance"]) == ["mimeType", "content", "extra"]  # key order as written
    assert all(i.error is None for i in items)


def test_a_bad_jsonl_line_fails_that_instance_only(storage: Storage, bucket: Path) -> None:
    lines = [
        "{not json",
        '["gs://b/x.jpg"]',
        '{"mimeType": "image/jpeg"}',
        '{"content": "%%% not base64 %%%"}',
        '{"content": "gs://b/x.jpg", "mimeType": "text/plain"}',
        RED,
    ]
    (bucket / "in.jsonl").write_text("\n".join(lines))

    items = read(storage, "jsonl", "gs://b/in.jsonl")

    assert len(items) == 6
    errors = [i.error for i in items[:5]]
    assert all(e is not None and e["code"] == 3 for e in errors)
    assert head(items[0]) == {"instance": "{not json"}  # the line as it was, as a string
    assert "line 1 is not JSON" in errors[0]["message"]
    assert "not a JSON object" in errors[1]["message"]
    assert 'no "content"' in errors[2]["message"]
    assert "base64" in errors[3]["message"]
    assert "text/plain" in errors[4]["message"]
    assert items[5] == Input(items[5].id, uri="gs://b/img/red.jpg")


def test_key_field_replaces_the_instance_and_a_missing_key_fails_the_instance(storage: Storage, bucket: Path) -> None:
    (bucket / "in.jsonl").write_text('{"id": "k1", "content": "gs://b/a.jpg"}\n{"content": "gs://b/b.jpg"}\n')

    keyed, unkeyed = read(storage, "jsonl", "gs://b/in.jsonl", keyField="id")

    assert head(keyed) == {"key": "k1"} and keyed.uri == "gs://b/a.jpg"
    assert head(unkeyed) == {"instance": {"content": "gs://b/b.jpg"}}
    assert unkeyed.error is not None and "keyField 'id'" in unkeyed.error["message"]


def test_included_and_excluded_fields_narrow_what_the_model_sees(storage: Storage, bucket: Path) -> None:
    (bucket / "in.jsonl").write_text('{"content": "gs://b/a.jpg", "note": "x"}\n')

    (included,) = read(storage, "jsonl", "gs://b/in.jsonl", includedFields=["content"])
    (excluded,) = read(storage, "jsonl", "gs://b/in.jsonl", excludedFields=["content"])

    assert included.uri == "gs://b/a.jpg" and head(included)["instance"]["note"] == "x"  # the output echoes it all
    assert excluded.error is not None and "excludedFields" in excluded.error["message"]


def test_csv_rows_by_header_as_arrays_or_objects(storage: Storage, bucket: Path) -> None:
    (bucket / "in.csv").write_text('id,content\nk1,gs://b/a.jpg\n\nk2,"gs://b/with, comma.png"\nk3\n')

    arrays = read(storage, "csv", "gs://b/in.csv")
    objects = read(storage, "csv", "gs://b/in.csv", instanceType="object")
    keyed = read(storage, "csv", "gs://b/in.csv", keyField="id")

    assert [i.uri for i in arrays[:2]] == ["gs://b/a.jpg", "gs://b/with, comma.png"]
    assert head(arrays[0]) == {"instance": ["k1", "gs://b/a.jpg"]}
    assert head(objects[0]) == {"instance": {"id": "k1", "content": "gs://b/a.jpg"}}
    assert [head(i) for i in keyed[:2]] == [{"key": "k1"}, {"key": "k2"}]
    assert arrays[2].error is not None and "1 values where the header names 2" in arrays[2].error["message"]


def test_file_list_and_several_uris_with_wildcards_sorted(storage: Storage, bucket: Path) -> None:
    (bucket / "lists").mkdir()
    (bucket / "lists" / "b.txt").write_text("gs://b/img/2.png\n")
    (bucket / "lists" / "a.txt").write_text("gs://b/img/1.jpg\n\ngs://b/img/odd\n")
    (bucket / "more.txt").write_text("gs://b/img/3.gif\n")

    items = read(storage, "file-list", "gs://b/lists/*.txt", "gs://b/more.txt")

    assert [i.uri for i in items] == ["gs://b/img/1.jpg", "gs://b/img/odd", "gs://b/img/2.png", "gs://b/img/3.gif"]
    assert head(items[0]) == {"instance": {"content": "gs://b/img/1.jpg", "mimeType": "image/jpeg"}}
    assert head(items[1]) == {"instance": {"content": "gs://b/img/odd"}}


def test_what_fails_the_whole_job(storage: Storage, bucket: Path) -> None:
    (bucket / "empty.jsonl").write_text("\n\n")
    source = InstanceSource.from_job({"inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": []}}})

    with pytest.raises(InvalidArgument, match="matches no files"):
        read(storage, "jsonl", "gs://b/nothing-*.jsonl")
    with pytest.raises(InvalidArgument, match="cannot be read"):
        read(storage, "jsonl", "gs://b/missing.jsonl")
    with pytest.raises(InvalidArgument, match="hold no instances"):
        read(storage, "jsonl", "gs://b/empty.jsonl")
    with pytest.raises(InvalidArgument, match="at least one file"):
        source.check()
    with pytest.raises(InvalidArgument, match="not file-list"):
        read(storage, "file-list", "gs://b/empty.jsonl", keyField="id")


def test_count_matches_the_instances(storage: Storage, bucket: Path) -> None:
    (bucket / "in.jsonl").write_text(f"{RED}\nbroken\n{RED}\n")
    source = InstanceSource.from_job({"inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://b/*"]}}})
    assert count_instances(storage, source) == 3
