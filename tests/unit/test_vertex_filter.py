"""ListBatchPredictionJobs filters as the aiplatform SDK and the Vertex AI docs write them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from batchline.api.vertex_filter import parse_filter
from batchline.domain.jobs import Condition
from batchline.errors import InvalidArgument

NEW_YEAR = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "conditions"),
    [
        ("", ()),
        ("   ", ()),
        ('display_name="my job"', (Condition("display_name", "=", "my job"),)),
        ('displayName = "say \\"hi\\""', (Condition("display_name", "=", 'say "hi"'),)),
        ("state=JOB_STATE_SUCCEEDED", (Condition("state", "=", "SUCCEEDED"),)),
        ('state="JOB_STATE_PENDING"', (Condition("state", "=", "QUEUED"),)),
        ("state != JOB_STATE_QUEUED", (Condition("state", "!=", "QUEUED"),)),
        ("state=JOB_STATE_EXPIRED", (Condition("state", "=", ""),)),
        ('labels.team="a"', (Condition("labels.team", "=", "a"),)),
        ("labels.team:*", (Condition("labels.team", ":", "*"),)),
        ("labels:team", (Condition("labels.team", ":", "*"),)),
        ('create_time>"2026-01-01T00:00:00Z"', (Condition("create_time", ">", NEW_YEAR),)),
        ('createTime<="2026-01-01T01:00:00.123456789+01:00"', (Condition("create_time", "<=", NEW_YEAR + 0.123456),)),
        (
            'state=JOB_STATE_RUNNING AND labels.env="prod" and display_name=x',
            (
                Condition("state", "=", "RUNNING"),
                Condition("labels.env", "=", "prod"),
                Condition("display_name", "=", "x"),
            ),
        ),
    ],
)
def test_filters_parse_into_engine_conditions(text: str, conditions: tuple[Condition, ...]) -> None:
    parsed = parse_filter(text)
    assert [(c.field, c.op) for c in parsed] == [(c.field, c.op) for c in conditions]
    for got, want in zip(parsed, conditions, strict=True):
        assert got.value == pytest.approx(want.value) if isinstance(want.value, float) else got.value == want.value


@pytest.mark.parametrize(
    "text",
    [
        "display_name",
        "state=JOB_STATE_NOPE",
        "display_name>a",
        "labels.team>a",
        'display_name="a" OR state=JOB_STATE_RUNNING',
        "NOT display_name=a",
        "(state=JOB_STATE_RUNNING)",
        "display_name=a state=JOB_STATE_RUNNING",
        'create_time>"soon"',
        "model=x",
    ],
)
def test_what_a_filter_cannot_say_is_invalid(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_filter(text)
