"""What the REST surfaces share: custom verbs in a path segment, JSON bodies, offset page tokens."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from batchline.errors import InvalidArgument, NotFound

DEFAULT_PAGE_SIZE = 50


def split_verb(segment: str, verbs: set[str]) -> tuple[str, str | None]:
    resource_id, sep, verb = segment.partition(":")
    if sep and verb not in verbs:
        raise NotFound(f"unknown method :{verb}; this resource supports {', '.join(sorted(':' + v for v in verbs))}")
    return resource_id, (verb if sep else None)


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    return body


def page(request: Request) -> tuple[int, int]:
    query = request.query_params
    try:
        size = int(query.get("pageSize") or query.get("page_size") or DEFAULT_PAGE_SIZE)
        offset = int(query.get("pageToken") or query.get("page_token") or 0)
    except ValueError:
        raise InvalidArgument("pageSize must be a number and pageToken one this API returned") from None
    if size < 1 or offset < 0:
        raise InvalidArgument("pageSize must be >= 1 and pageToken one this API returned")
    return offset, min(size, 1000)
